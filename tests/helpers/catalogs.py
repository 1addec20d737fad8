"""Catalog databases as an older nbops left them: the schema upgraded only up to a chosen revision."""

from __future__ import annotations

from pathlib import Path


def upgrade_catalog_to(url: str, revision: str) -> None:
    """Run the catalog's migrations on the database at SQLAlchemy ``url`` up to ``revision``, and no further."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from nbops.core import catalog as cat

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(Path(cat.__file__).parent / "migrations"))
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()
