"""The installed version of cairn."""

__version__ = "0.1.0"
