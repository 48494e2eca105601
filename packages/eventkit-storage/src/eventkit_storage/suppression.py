"""The suppression list: people whose events are never stored again, kept as salted hashes.

It lives beside the data, in the event store's place (a local directory or a GCS bucket), under
``suppression/``, through any :class:`~eventkit_storage.filestore.FileBackend`:

- ``suppression/salt``: 32 random bytes, created once (create-only: when two writers race, the
  one whose file landed wins and both use it);
- ``suppression/<name>.list``: one HMAC-SHA256 (key: the salt) of ``id_type:value`` per line, in
  hex. Lists are only ever added (create-only stores); readers take the union of every list.

The ids themselves are never written: a list tells whether an id is suppressed, not who is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from eventkit_core import ConfigurationError

from eventkit_storage.filestore import FileBackend
from eventkit_storage.identity import IdentityConfig

__all__ = ["SUPPRESSION_DIR", "Suppressed", "SuppressionList", "candidate_ids", "digest"]

SUPPRESSION_DIR: Final = "suppression"
SALT_PATH: Final = f"{SUPPRESSION_DIR}/salt"
LIST_SUFFIX: Final = ".list"
_SALT_BYTES: Final = 32
_CONFIG: Final = IdentityConfig()

Identity = tuple[str, str]


def digest(salt: bytes, id_type: str, value: str) -> str:
    """The hex HMAC-SHA256 of ``id_type:value`` keyed by ``salt`` (what a list stores)."""
    return hmac.new(salt, f"{id_type}:{value}".encode(), hashlib.sha256).hexdigest()


def _decode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def candidate_ids(
    *,
    user_id: Any = None,
    anonymous_id: Any = None,
    previous_id: Any = None,
    traits: Any = None,
    context: Any = None,
    config: IdentityConfig = _CONFIG,
) -> list[Identity]:
    """Every id an event may belong to a person by, in the identity tables' stored form.

    ``previousId`` counts as both a user id and an anonymous id; the configured trait
    identifiers (default ``email``) of ``traits`` and ``context.traits``, and
    ``context.externalIds``, count too. ``traits`` / ``context``: JSON text or decoded.
    Blocked values (empty, ``null``, ``anonymous`` ...) are no ids.
    """
    raw: list[tuple[str, Any]] = [("user_id", user_id), ("anonymous_id", anonymous_id)]
    if previous_id is not None:
        raw += [("user_id", previous_id), ("anonymous_id", previous_id)]
    ctx = _decode(context)
    trait_sets = [_decode(traits)]
    if isinstance(ctx, dict):
        trait_sets.append(ctx.get("traits"))
        externals = ctx.get("externalIds")
        if isinstance(externals, list):
            for item in externals:
                if isinstance(item, dict) and isinstance(item.get("type"), str):
                    raw.append((item["type"].strip().lower(), item.get("id")))
    for found in trait_sets:
        if isinstance(found, dict):
            raw += [(name, found.get(name)) for name in config.trait_identifiers]
    out: list[Identity] = []
    for id_type, value in raw:
        if value is None:
            continue
        clean = config.clean(id_type, value)
        if clean is not None and (id_type, clean) not in out:
            out.append((id_type, clean))
    return out


def payload_ids(payload: str | bytes) -> list[Identity]:
    """The ids of a raw event payload (a dead letter's text): nothing when it is no object."""
    body = _decode(payload)
    if not isinstance(body, dict):
        return []
    return candidate_ids(
        user_id=body.get("userId"),
        anonymous_id=body.get("anonymousId"),
        previous_id=body.get("previousId"),
        traits=body.get("traits"),
        context=body.get("context"),
    )


@dataclass(frozen=True)
class Suppressed:
    """One snapshot of the list: the salt and every suppressed digest."""

    salt: bytes = b""
    digests: frozenset[str] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.digests)

    def __len__(self) -> int:
        return len(self.digests)

    def matches(self, ids: Iterable[Identity]) -> bool:
        """True when any of ``ids`` is suppressed (no hashing at all when the list is empty)."""
        if not self.digests:
            return False
        return any(digest(self.salt, t, v) in self.digests for t, v in ids)


class SuppressionList:
    """Reads and adds to the list under ``suppression/`` of ``backend``.

    :meth:`load` reads only the list files it has not read before (lists never change once
    written), so reloading every minute costs one listing.
    """

    def __init__(self, backend: FileBackend) -> None:
        self.backend = backend
        self._salt: bytes | None = None
        self._seen: dict[str, frozenset[str]] = {}

    async def salt(self, *, create: bool = False) -> bytes | None:
        """The salt; made (create-only) when ``create`` and there is none yet."""
        if self._salt is not None:
            return self._salt
        if not any(f.path == SALT_PATH for f in await self.backend.scan(f"{SUPPRESSION_DIR}/")):
            if not create:
                return None
            # Create-only: when another writer got there first, its salt is the one.
            await self.backend.create(SALT_PATH, secrets.token_bytes(_SALT_BYTES))
        salt = await self.backend.read(SALT_PATH)
        if len(salt) != _SALT_BYTES:
            raise ConfigurationError(
                f"{self.backend.uri(SALT_PATH)} holds {len(salt)} bytes, not {_SALT_BYTES}: "
                "restore it from a backup (without it the list matches nobody)"
            )
        self._salt = salt
        return salt

    async def add(self, ids: Iterable[Identity], name: str) -> str:
        """Suppress ``ids`` in a new list file ``suppression/<name>.list``; its path.

        ``name``: e.g. a request id (letters, digits, ``-``, ``_``). Writing the same name again
        leaves the first file as it was (create-only): use one name per set of ids.
        """
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigurationError(f"list name {name!r} is invalid: use a-z, 0-9, - and _")
        salt = await self.salt(create=True)
        assert salt is not None
        lines = sorted({digest(salt, t, v) for t, v in ids})
        path = f"{SUPPRESSION_DIR}/{name}{LIST_SUFFIX}"
        await self.backend.create(path, ("\n".join(lines) + "\n").encode())
        return path

    async def load(self) -> Suppressed:
        """The union of every list file (empty, without a salt, when nothing is suppressed)."""
        files = await self.backend.scan(f"{SUPPRESSION_DIR}/")
        lists = sorted(f.path for f in files if f.path.endswith(LIST_SUFFIX))
        if not lists:
            return Suppressed()
        salt = await self.salt()
        if salt is None:
            raise ConfigurationError(
                f"{self.backend.uri(SALT_PATH)} is missing but suppression lists exist: "
                "restore it from a backup"
            )
        for path in lists:
            if path not in self._seen:
                text = (await self.backend.read(path)).decode("ascii", "replace")
                self._seen[path] = frozenset(line for line in text.split() if line)
        return Suppressed(salt, frozenset().union(*self._seen.values()))
