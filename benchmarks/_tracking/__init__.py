"""The parts of benchmarks/tracking.py: its measuring and reporting helpers, the %%track breakdown, its run."""
