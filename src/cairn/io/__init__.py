"""Serializers that store a step's return value by its type, and load it back verified."""

from cairn.io.files import Files
from cairn.io.serializers import IO_NAMES, dump, load

__all__ = ["IO_NAMES", "Files", "dump", "load"]
