"""The parts of benchmarks/features.py: data, the joins compared, measuring, the memory child, online lookups, its run."""
