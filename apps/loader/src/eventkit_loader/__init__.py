"""eventkit loader: stored Parquet files -> warehouse (BigQuery or embedded DuckDB)."""

from importlib.metadata import version as _version

__version__ = _version("eventkit-loader")

__all__ = ["__version__"]
