"""The package version, defined once: setup.cfg and the resource attributes read it."""

__version__ = "0.1.0"
