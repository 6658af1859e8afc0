"""Celery's workers keep no key: they PUBLISH events. A run PSUBSCRIBEs (not a write) to
`P/<db>.celeryev/worker.*` and listens a little longer than one heartbeat interval, inside the
run's deadline: `worker-heartbeat` every `freq` s (2 by default), `worker-online`, and
`worker-offline` on a clean stop. Events are kombu envelopes (JSON, body base64-encoded), parsed
bounded (boundedjson) and never unpickled.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from ... import boundedjson
from ..base import Context, Skips, server_time

log = logging.getLogger(__name__)

EXPIRE_WINDOW = 2.0  # celery.events.state: a heartbeat expires after 2 x freq
MEMORY_MAX = 10_000  # workers remembered and reported, at most


@dataclass
class Heard:
    """A worker's latest heartbeat: when (server seconds) and what it said."""

    last: float
    freq: float
    processed: float | None = None
    active: float | None = None
    pid: int | None = None  # with the node name, one life of a worker (pool counters)

    @property
    def expiry(self) -> float:
        return self.last + EXPIRE_WINDOW * self.freq

    def to_json(self) -> str:
        return json.dumps({"last": self.last, "freq": self.freq, "processed": self.processed,
                           "active": self.active, "pid": self.pid})

    @classmethod
    def from_json(cls, raw: bytes, skips: Skips) -> Heard:
        data = boundedjson.loads(raw)
        return cls(float(data["last"]), float(data["freq"]),
                   skips.number(data.get("processed")), skips.number(data.get("active")),
                   _pid(data.get("pid")))


@dataclass
class Window:
    """What one listening window heard: heartbeats by nodename, and clean shutdowns."""

    heard: dict[str, Heard] = field(default_factory=dict)
    offline: set[str] = field(default_factory=set)
    complete: bool = True  # False: Redis dropped the subscription before the window ended


def _channel(ctx: Context) -> bytes:
    return f"{ctx.config.celery_key_prefix}/{ctx.config.db}.celeryev/worker.*".encode()


def _event(data: bytes, skips: Skips) -> dict[str, Any] | None:
    """The event inside kombu's envelope; None (a bad_value) for anything else."""
    try:
        envelope = boundedjson.loads(data)
        body = envelope["body"]
        if envelope.get("content-type") != "application/json":
            raise ValueError("not JSON")
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True)
        event = boundedjson.loads(body)
        if not isinstance(event, dict) or not isinstance(event.get("hostname"), str):
            raise ValueError("no hostname")
        return event
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        skips["bad_value"] += 1  # BadJSON is a ValueError
        return None


def listen(ctx: Context, client: redis.Redis, skips: Skips) -> tuple[float, Window]:
    """Server time at the window's end, and every worker event heard in the window.

    The window is a little over one heartbeat interval, so every live worker beats in it, and
    ends before the run's deadline leaves too little for the rest of the collection."""
    interval = ctx.config.celery_heartbeat_interval
    clock = server_time(client.execute_command("TIME"))
    started = time.monotonic()
    end = min(started + interval + max(0.25, 0.2 * interval),
              started + ctx.deadline.remaining() - 0.2)
    if end - started < interval:
        log.warning("celery: listening %.1f s, less than the heartbeat interval (%.1f s): "
                    "live workers may go unheard; raise --timeout", end - started, interval)
    window = Window()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.psubscribe(_channel(ctx))
        while (left := end - time.monotonic()) > 0:
            try:
                message = pubsub.get_message(timeout=left)
            except redis.ConnectionError:
                _subscription_dropped(window, skips)
                break
            if message is None or message.get("type") != "pmessage":
                continue
            heard_at = clock + (time.monotonic() - started)
            event = _event(message["data"], skips)
            if event is not None:
                _note(window, event, heard_at, interval, skips)
        else:
            _DROPPED.clear()  # a whole window again: the next drop is news
    finally:
        pubsub.close()
    return clock + (time.monotonic() - started), window


_DROPPED = threading.Event()  # the drop was said on stderr: once until a window completes


def _subscription_dropped(window: Window, skips: Skips) -> None:
    """Redis closed the subscription mid-window: a flood on the events channel filled its
    pub/sub output buffer (client-output-buffer-limit pubsub) and Redis disconnected tqmon.
    The window is incomplete: what was heard is reported, and no worker is judged dead by it
    (a silent worker may just be unheard). Said once on stderr, not once per run of a flood;
    docs/adapters.md says what the operator can do."""
    window.complete = False
    skips["incomplete_window"] += 1
    if not _DROPPED.is_set():
        _DROPPED.set()
        log.warning("celery: Redis dropped the event subscription (a flood on the events "
                    "channel: client-output-buffer-limit pubsub); the listening window is "
                    "incomplete and no worker is judged dead by it")


def _note(window: Window, event: dict[str, Any], heard_at: float, interval: float,
          skips: Skips) -> None:
    name = event["hostname"]
    kind = event.get("type")
    if kind == "worker-offline":
        window.offline.add(name)
        window.heard.pop(name, None)
    elif kind in ("worker-heartbeat", "worker-online"):
        if name not in window.heard and len(window.heard) >= MEMORY_MAX:
            skips["too_many_series"] += 1
            return
        freq = skips.number(event.get("freq")) or interval
        window.heard[name] = Heard(heard_at, freq, skips.number(event.get("processed")),
                                   skips.number(event.get("active")), _pid(event.get("pid")))
        window.offline.discard(name)


def _pid(raw: Any) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else None
