"""Event model, protocols, sequencer and errors shared by every eventkit package."""

from importlib.metadata import version as _version

__version__ = _version("eventkit-core")

__all__ = ["__version__"]
