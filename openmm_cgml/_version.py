"""The package's version: the one place it is set (pyproject.toml reads it; every output file's metadata reports it)."""

__version__ = "0.2.0.dev0"
