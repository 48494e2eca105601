"""eventkit collector: the Litestar ingestion service."""

from importlib.metadata import version as _version

__version__ = _version("eventkit-collector")

__all__ = ["__version__"]
