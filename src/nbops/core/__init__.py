"""The core every other layer stands on: the catalog (schema, migrations, SQL), the object store,
content hashing, names, paths and settings, lineage edges and the audit trail that every write
records in its own transaction, and the process-wide session state.

Nothing in ``nbops.core`` imports IPython or any package of nbops above it (the import-linter
contract in ``pyproject.toml`` checks this in CI).
"""
