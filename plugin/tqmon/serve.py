"""`--listen HOST:PORT`: serve /metrics (one collection per scrape) and /healthz.

Safe to expose, on asyncio so that connections cost no thread: at most MAX_CONNECTIONS at once
(at the limit, the connection that has waited longest for its request head makes room, so half-
open clients cannot lock scrapers out) and a listen backlog that takes a burst; a request's head
must arrive within REQUEST_TIMEOUT (a client that sends half a request, an HTTP/0.9 line or a
TLS hello to a plain port is dropped); a client that hangs up costs nothing and prints nothing.
Scrapes that arrive while a collection runs share it, whatever format or encoding they ask for,
so Redis sees at most one collection at a time. GET and HEAD; gzip when asked; TLS and basic
auth from `--web-config-file` (webconfig.py): a client certificate outside
`client_allowed_sans` is dropped after the handshake, a known password is answered on the event
loop and a new one checked in a bounded set of slots (webauth.py), never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import webauth
from .exposition import CONTENT_TYPES
from .model import Samples
from .webauth import Attempt, BasicAuth
from .webconfig import WebConfig

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 512
BACKLOG = 1024
REQUEST_TIMEOUT = 5.0  # seconds for a request's head (and a TLS handshake) to arrive
WRITE_TIMEOUT = 30.0  # seconds for a scraper to take the whole answer
MAX_HEAD = 16 * 1024  # bytes of request line and headers
CHUNK = 256 * 1024  # bytes written before waiting for the scraper to take them
TEXT = "text/plain; charset=utf-8"
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout",
           429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class Flight:
    """One collection and the renderings scrapes asked of it (format, gzip), each made once."""

    def __init__(self, samples: asyncio.Future[Samples]) -> None:
        self.samples = samples
        self.bodies: dict[tuple[str, bool], asyncio.Future[bytes]] = {}


class MetricsServer:
    def __init__(self, collect: Callable[[], Samples], render: Callable[[Samples, str], bytes],
                 default_format: str, web: WebConfig | None = None) -> None:
        self._collect = collect
        self._render = render
        self._default = default_format
        self._web = web or WebConfig()
        self._flight: Flight | None = None
        self._open = 0
        self._idle: dict[asyncio.StreamWriter, None] = {}  # waiting for a head, oldest first
        # collections and renderings; bcrypt checks get one thread per slot (webauth.SLOTS), so
        # a check never waits in a queue and a slow collection never delays a 401
        self._work = ThreadPoolExecutor(4, thread_name_prefix="tqmon-collect")
        self._auth = ThreadPoolExecutor(webauth.SLOTS, thread_name_prefix="tqmon-auth")
        self._tokens = float(self._web.rate[1]) if self._web.rate else 0.0  # rate_limit bucket
        self._refilled = time.monotonic()

    # --- the shared collection ------------------------------------------------------------------
    async def body(self, fmt: str, compress: bool) -> bytes:
        loop = asyncio.get_running_loop()
        flight = self._flight
        if flight is None:
            flight = self._flight = Flight(
                asyncio.ensure_future(loop.run_in_executor(self._work, self._collect)))

            def done(_: object, flight: Flight = flight) -> None:
                if self._flight is flight:
                    self._flight = None  # the next scrape starts a new collection

            flight.samples.add_done_callback(done)
        samples = await asyncio.shield(flight.samples)
        key = (fmt, compress)
        if key not in flight.bodies:
            flight.bodies[key] = asyncio.ensure_future(loop.run_in_executor(
                self._work, self._rendered, samples, fmt, compress))
        return await asyncio.shield(flight.bodies[key])

    def _rendered(self, samples: Samples, fmt: str, compress: bool) -> bytes:
        text = self._render(samples, fmt)
        return gzip.compress(text, compresslevel=6, mtime=0) if compress else text

    # --- HTTP ---------------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            if not self._idle:
                writer.transport.abort()
                return
            oldest = next(iter(self._idle))
            del self._idle[oldest]
            oldest.transport.abort()  # its handler ends and gives its place back
        self._open += 1
        try:
            if self._web.allowed_sans and not self._web.peer_allowed(
                    writer.get_extra_info("peercert")):
                return  # client_allowed_sans: as a failed handshake, nothing is answered
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            pass  # the client left or stalled: nothing to report
        except Exception as exc:  # never a traceback, never the process
            log.warning("serving a request failed: %s: %s", type(exc).__name__, exc)
        finally:
            self._idle.pop(writer, None)
            self._open -= 1
            writer.transport.abort()

    async def _one_request(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection may carry another."""
        self._idle[writer] = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, b"request head too large\n", TEXT, close=True)
            return False
        except asyncio.TimeoutError:
            return False
        finally:
            self._idle.pop(writer, None)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._send(writer, 400, b"bad request\n", TEXT, close=True)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep = (headers.get("connection", "").lower() != "close" and version == "HTTP/1.1")
        if "content-length" in headers or "transfer-encoding" in headers:
            keep = False  # a GET with a body: not worth parsing; answer, then close
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await self._send(writer, 405, b"only GET and HEAD\n", TEXT, close=True,
                             extra={"Allow": "GET, HEAD"})
            return False
        if not self._rate_allows():
            await self._send(writer, 429, b"too many requests\n", TEXT, close=not keep,
                             head_only=head_only)
            return keep
        if self._web.basic is not None:
            verdict = await self._authenticate(self._web.basic, headers.get("authorization"))
            if verdict is None:
                await self._send(writer, 503, b"too many password checks at once; retry\n",
                                 TEXT, close=not keep, extra={"Retry-After": "1"},
                                 head_only=head_only)
                return keep
            if not verdict:
                await self._send(writer, 401, b"unauthorized\n", TEXT, close=not keep,
                                 extra={"WWW-Authenticate": 'Basic realm="tqmon"'},
                                 head_only=head_only)
                return keep
        path = target.split("?", 1)[0]
        if path == "/healthz":
            await self._send(writer, 200, b"ok\n", TEXT, close=not keep, head_only=head_only)
        elif path == "/metrics":
            accept = headers.get("accept", "")
            fmt = "openmetrics" if "application/openmetrics-text" in accept else self._default
            compress = _wants_gzip(headers.get("accept-encoding", ""))
            try:
                body = await self.body(fmt, compress)
            except Exception as exc:  # never a traceback to the scraper or the log
                log.warning("collection failed: %s: %s", type(exc).__name__, exc)
                await self._send(writer, 500, b"collection failed\n", TEXT, close=not keep,
                                 head_only=head_only)
                return keep
            extra = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if compress else {
                "Vary": "Accept-Encoding"}
            await self._send(writer, 200, body, CONTENT_TYPES[fmt], close=not keep,
                             extra=extra, head_only=head_only)
        else:
            await self._send(writer, 404, b"not found: try /metrics or /healthz\n", TEXT,
                             close=not keep, head_only=head_only)
        return keep

    async def _authenticate(self, basic: BasicAuth, header: str | None) -> bool | None:
        """Whether the credentials pass; None when no check slot is free (answer 503)."""
        verdict = basic.quick(header)
        if not isinstance(verdict, Attempt):
            return verdict  # known, or malformed: answered on the loop, no queue
        if not basic.reserve(verdict):
            return None
        try:
            job = self._auth.submit(basic.verify, verdict)
        except RuntimeError:  # shutting down
            basic.release(verdict)
            return None
        # the slot is free when bcrypt is done, not when this client leaves
        job.add_done_callback(lambda _, attempt=verdict: basic.release(attempt))
        return await asyncio.wrap_future(job)

    def _rate_allows(self) -> bool:
        """rate_limit: a token bucket of `burst` tokens, one more every `interval`."""
        if self._web.rate is None:
            return True
        interval, burst = self._web.rate
        now = time.monotonic()
        self._tokens = min(burst, self._tokens + (now - self._refilled) / interval)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes,
                    content_type: str, close: bool, extra: dict[str, str] | None = None,
                    head_only: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS[status]}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}", "Server: tqmon"]
        lines += [f"{k}: {v}" for k, v in {**self._web.headers, **(extra or {})}.items()]
        if close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await asyncio.wait_for(_write(writer, b"" if head_only else body), WRITE_TIMEOUT)

    def close(self) -> None:
        self._work.shutdown(wait=False, cancel_futures=True)
        self._auth.shutdown(wait=False, cancel_futures=True)


async def _write(writer: asyncio.StreamWriter, body: bytes) -> None:
    """The body in chunks: a slow reader makes the server buffer one chunk, not a copy of it
    all (the whole answer has WRITE_TIMEOUT, however slowly it reads)."""
    view = memoryview(body)
    for start in range(0, len(view), CHUNK):
        writer.write(view[start:start + CHUNK])
        await writer.drain()
    await writer.drain()


def _wants_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
            with contextlib.suppress(ValueError):
                return float(q) > 0
            return True
    return False


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's default handler logs failed TLS handshakes and resets with a traceback."""
    exc = context.get("exception")
    if exc is not None and not isinstance(exc, (OSError, ConnectionError, EOFError)):
        log.debug("asyncio: %s", context.get("message"))


async def _serve(server: MetricsServer, host: str, port: int, web: WebConfig,
                 started: Callable[[list[socket.socket]], None]) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    listener = await asyncio.start_server(
        server.handle, host or None, port, backlog=BACKLOG, limit=MAX_HEAD,
        ssl=web.tls, ssl_handshake_timeout=REQUEST_TIMEOUT if web.tls else None,
        reuse_address=True)
    started(list(listener.sockets))
    await stop.wait()
    listener.close()  # open connections are cancelled with the loop; nothing waits for them


def serve_forever(server: MetricsServer, host: str, port: int, web: WebConfig,
                  started: Callable[[list[socket.socket]], None] = lambda _: None) -> None:
    """Serve until SIGTERM or SIGINT. A bind failure raises OSError before anything is served."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # see _quiet
    try:
        asyncio.run(_serve(server, host, port, web, started))
    finally:
        server.close()
