"""The nbops version, read by the build and by ``nbops.__version__``."""

__version__ = "0.1.0"
