"""Datasets: versioned, deduplicated snapshots of data frames, their diffs and their references."""
