"""The collector's adapter: eventkit-validators' endpoint table, under the collector's names.

Kept so that the collector's modules (and anyone importing them) keep working: the class and
the constant live in :mod:`eventkit_validators.endpoints`, shared with the loader's replay.
"""

from __future__ import annotations

from eventkit_validators.endpoints import INVALID_BATCH, EndpointAdapter

#: The collector's adapter is the shared one: each event adapted by its endpoint's adapter.
CollectorAdapter = EndpointAdapter

__all__ = ["INVALID_BATCH", "CollectorAdapter"]
