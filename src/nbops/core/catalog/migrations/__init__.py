"""Alembic migrations of the nbops catalog (run by ``nbops.core.catalog``)."""
