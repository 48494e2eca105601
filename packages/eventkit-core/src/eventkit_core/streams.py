"""Stream names: validated once, here, for every package."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from eventkit_core.errors import InvalidStreamError

STREAM_RULE: Final = "use 1-64 of A-Z, a-z, 0-9, _ and -"
_STREAM_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Stream of ``POST /collect`` and of any event that names none.
DEFAULT_STREAM: Final = "default"

#: Segment call type -> stream it is routed to unless configured otherwise.
DEFAULT_TYPE_STREAMS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "identify": "users",
        "track": "events",
        "page": "pages",
        "screen": "screens",
        "group": "groups",
        "alias": "aliases",
    }
)


def is_valid_stream(name: object) -> bool:
    """True when ``name`` may be used as a stream name (and hence as a path segment)."""
    return isinstance(name, str) and _STREAM_RE.fullmatch(name) is not None


def validate_stream(name: object) -> str:
    """Return ``name`` unchanged when valid; raise :class:`InvalidStreamError` otherwise.

    Names are never lower-cased or trimmed silently: what is stored is what was sent.
    """
    if is_valid_stream(name):
        return name  # type: ignore[return-value]
    shown = repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:80] + "...")
    raise InvalidStreamError(f"stream name {shown} is invalid: {STREAM_RULE}")
