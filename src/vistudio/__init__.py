"""vistudio: a local-first Vision Studio."""

__version__ = "0.1.0"
