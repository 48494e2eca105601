from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("eventkit-queues")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0.0.0"
