"""``eventkit-loader once --wait``: wait for the collector's next file before the pass.

The collector buffers events and writes them to a file when a flush limit is reached (by
default within ``EVENTKIT_FLUSH_MAX_AGE``, 5 s, of the first buffered event). A pass straight
after sending an event therefore often finds nothing to load. With ``--wait`` the loader says
what it waits for and polls the store until a file it has not loaded appears, or the deadline
passes (then it says so, and the pass loads nothing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

from eventkit_core import WarehouseMissingError

from eventkit_loader.service import LoaderService
from eventkit_loader.settings import LoaderSettings

#: Seconds ``--wait`` waits when given without a value.
DEFAULT_WAIT: Final = 30.0
#: Seconds between two looks at the store.
POLL_INTERVAL: Final = 0.5


async def pending_files(settings: LoaderSettings, service: LoaderService) -> int:
    """Stored event files not loaded yet (every stored file while there is no warehouse)."""
    if settings.warehouse_kind == "duckdb" and not settings.duckdb_path.exists():
        return len(await service.list_files())
    try:
        return len((await service.backlog()).pending)
    except WarehouseMissingError:  # no dataset / ledger yet: nothing is loaded
        return len(await service.list_files())


async def wait_for_file(
    count: Callable[[], Awaitable[int]],
    seconds: float,
    say: Callable[[str], None],
    where: str,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll ``count`` until it is above 0; False (said) when ``seconds`` passed first."""
    if await count() > 0:
        return True
    say(
        f"no new file in {where} yet: waiting up to {seconds:g} s for the collector to write "
        "one (it writes buffered events within EVENTKIT_FLUSH_MAX_AGE, 5 s by default)"
    )
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline and not should_stop():
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        if await count() > 0:
            say(f"a new file appeared after {time.monotonic() - start:.1f} s")
            return True
    say(
        f"no new file in {where} after {seconds:g} s: is the collector running, with the same "
        "data directory (EVENTKIT_DATA_DIR)? Nothing to load."
    )
    return False
