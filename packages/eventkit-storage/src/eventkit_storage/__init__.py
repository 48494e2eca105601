"""Batching, Parquet, event/error stores and warehouse loaders for eventkit."""

from importlib.metadata import version as _version

__version__ = _version("eventkit-storage")

__all__ = ["__version__"]
