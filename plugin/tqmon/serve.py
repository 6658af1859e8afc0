"""`--listen HOST:PORT`: serve /metrics (one collection per scrape) and /healthz.

Scrapes that arrive while a collection runs share its result instead of starting their own, so
however many scrapers (an HA Prometheus pair, a curious human) hit the endpoint, Redis sees at
most one collection at a time. No web framework: the standard library's threading HTTP server.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .exposition import CONTENT_TYPES

log = logging.getLogger(__name__)


class SingleFlight:
    """Calls `produce` for the first caller; callers arriving meanwhile wait for that result."""

    def __init__(self, produce: Callable[[], bytes]) -> None:
        self._produce = produce
        self._lock = threading.Lock()
        self._current: Future[bytes] | None = None

    def get(self) -> bytes:
        with self._lock:
            future, leader = self._current, False
            if future is None:
                future = self._current = Future()
                leader = True
        if leader:
            try:
                future.set_result(self._produce())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                with self._lock:
                    self._current = None
        return future.result()


def make_server(host: str, port: int, produce: dict[str, Callable[[], bytes]]
                ) -> ThreadingHTTPServer:
    """`produce` maps a format ("prometheus", "openmetrics") to its collection."""
    flights = {fmt: SingleFlight(fn) for fmt, fn in produce.items()}
    default = next(iter(produce))

    class Handler(BaseHTTPRequestHandler):
        server_version = "tqmon"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/metrics":
                accept = self.headers.get("Accept", "")
                fmt = ("openmetrics" if "application/openmetrics-text" in accept
                       and "openmetrics" in flights else default)
                try:
                    body = flights[fmt].get()
                except Exception as exc:  # never a traceback to the scraper or the log
                    log.warning("collection failed: %s: %s", type(exc).__name__, exc)
                    self._send(500, b"collection failed\n", "text/plain; charset=utf-8")
                    return
                self._send(200, body, CONTENT_TYPES[fmt])
            else:
                self._send(404, b"not found: try /metrics or /healthz\n",
                           "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # no access log on stderr: Prometheus scrapes every few seconds

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_forever(server: ThreadingHTTPServer) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    def stop(*_: object) -> None:
        # shutdown() waits for serve_forever to return, so it must run on another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
