"""The parts of benchmarks/snapshot.py: its frame, its measuring and reporting helpers, its run."""
