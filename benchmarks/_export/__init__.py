"""The parts of benchmarks/export.py: the notebook it builds, the import children, timers, profiles, its run."""

from pathlib import Path

#: The benchmarks folder (its parent is the repository root).
HERE = Path(__file__).resolve().parent.parent
