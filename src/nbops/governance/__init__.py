"""Governance: the audit trail (who wrote or read which version of what, and when) and read-only mode."""
