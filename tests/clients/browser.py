"""Headless Chromium driven by Python playwright, and the test site its pages come from.

The browser is Debian's Chromium (:func:`tests.clients.chromium`), launched by playwright with
``executable_path``: playwright's own browser download is never used. :class:`Site` serves test
pages and the cached ``node_modules`` from its own port, so a page's origin differs from the
collector's and every request the SDKs make to the collector is cross-origin (CORS preflights
included, where the SDK's request is not a simple one).

:class:`Browser` records, for each page, every request the page made, the ones that failed
(a CORS refusal shows up there) and the console errors, so a test can assert that nothing went to
a vendor's host and that nothing failed.
"""

from __future__ import annotations

import contextlib
import mimetypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Page, sync_playwright

from tests.clients import CHROMIUM_ARGS, chromium, node_modules


class Site:
    """A static web site on 127.0.0.1: ``pages`` by path, and ``/node_modules/...`` from the cache."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.modules = node_modules() / "node_modules"
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = site.lookup(urlsplit(self.path).path)
                if found is None:
                    self.send_error(404)
                    return
                ctype, body = found
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path``; the page's full URL."""
        self.pages[path] = ("text/html; charset=utf-8", html.encode())
        return self.url + path

    def lookup(self, path: str) -> tuple[str, bytes] | None:
        if path in self.pages:
            return self.pages[path]
        prefix = "/node_modules/"
        if path.startswith(prefix):
            target = (self.modules / path[len(prefix) :]).resolve()
            if target.is_relative_to(self.modules.resolve()) and target.is_file():
                ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                return ctype, target.read_bytes()
        return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class PageLog:
    """What one page did on the network and in its console."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: ``(status, method, url)`` of every answer.
    responses: list[tuple[int, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to(self, base: str) -> list[tuple[str, str]]:
        """``(method, path)`` of the requests to ``base`` (an origin)."""
        return [(m, u[len(base) :]) for m, u in self.requests if u.startswith(base)]

    def foreign(self, *origins: str) -> list[str]:
        """Requests to anything but ``origins``: a vendor host the SDK should not reach."""
        return [u for _, u in self.requests if not u.startswith(origins)]


class Browser:
    """One headless Chromium; :meth:`page` opens a fresh context (no shared storage).

    Close it before any asyncio code runs in this thread: playwright's sync API keeps its event
    loop running here until :meth:`close` (so a pytest fixture holding one is module-scoped).
    """

    def __init__(self) -> None:
        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(
            executable_path=str(chromium()), args=list(CHROMIUM_ARGS), headless=True
        )

    @contextlib.contextmanager
    def page(self, user_agent: str | None = None) -> Iterator[tuple[Page, PageLog]]:
        """A fresh page and the log of what it does.

        Requests are not intercepted (playwright's routing changes how keepalive requests are
        sent); the machine's network is closed anyway, and :meth:`PageLog.foreign` tells a test
        whether an SDK tried a vendor's host.
        """
        context = self._browser.new_context(user_agent=user_agent)
        log = PageLog()
        page = context.new_page()
        page.on("request", lambda req: log.requests.append((req.method, req.url)))
        page.on("response", lambda r: log.responses.append((r.status, r.request.method, r.url)))
        page.on("requestfailed", lambda req: log.failed.append(f"{req.method} {req.url}"))
        page.on(
            "console",
            lambda msg: log.errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: log.errors.append(str(exc)))
        try:
            yield page, log
        finally:
            context.close()

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


def wait_for(page: Page, script: str, timeout_ms: float = 30_000) -> Any:
    """Poll the page until ``script`` (a JS expression) is truthy; its value."""
    return page.wait_for_function(script, timeout=timeout_ms).json_value()
