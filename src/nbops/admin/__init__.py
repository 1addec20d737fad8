"""Workflows that move a store: its catalog onto PostgreSQL (``nbops migrate --to``) and its
MLflow runs onto a tracking server (``nbops migrate --runs-to``)."""
