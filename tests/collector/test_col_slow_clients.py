"""500 connections trickling bytes do not starve normal clients; the trickles are cut off.

Against a real collector with short timeouts (so the run stays a few seconds): half of the slow
connections trickle their headers (408 after ``EVENTKIT_HEADER_TIMEOUT``), half a body after
complete headers (408 after ``EVENTKIT_BODY_TIMEOUT``). Meanwhile normal clients send single
events: every one of them succeeds. Their latency is reported by
``benchmarks/bench_slow_clients.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.collector.hostile_support import start_server
from tests.collector.slow_clients import run_slow_clients


def test_trickling_connections_do_not_starve_normal_clients(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        EVENTKIT_WRITE_KEYS="",
        EVENTKIT_HEADER_TIMEOUT="1.5",
        EVENTKIT_BODY_TIMEOUT="1.5",
    )
    try:
        out = asyncio.run(run_slow_clients(server.port, slow=500, normal=4, seconds=6.0))
        assert out.slow_opened == 500, out.slow_answers
        # every normal request succeeded, and there were plenty of them
        assert set(out.statuses) == {200}, out.statuses
        assert out.statuses[200] >= 100, out.statuses
        # every trickling connection was answered 408 (with the JSON body) within the run
        assert out.slow_answers == {408: 500}, out.slow_answers
    finally:
        assert server.stop() == 0
