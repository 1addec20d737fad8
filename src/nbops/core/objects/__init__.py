"""Immutable, content-addressed object files: one interface, a local and a pyarrow-filesystem implementation."""
