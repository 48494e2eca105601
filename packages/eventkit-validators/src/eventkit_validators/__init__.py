"""Composable validators, ValidationPipeline and Segment schema adapters for eventkit."""

from importlib.metadata import version as _version

__version__ = _version("eventkit-validators")

__all__ = ["__version__"]
