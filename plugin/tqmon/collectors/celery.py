"""Celery (5.x) on kombu's Redis transport (5.x), read as it is: Celery's keys are never written.

Keys (kombu.transport.redis; every key and channel after kombu's global_keyprefix, P below):
  P<queue>                        LIST of waiting messages, priority step 0 (served first);
  P<queue>\\x06\\x16<3|6|9>          the other priority steps' lists (LPUSH, taken from the tail)
  P_kombu.binding.<exchange>      SET of `routing_key\\x06\\x16pattern\\x06\\x16queue`
  Punacked                        HASH delivery tag -> JSON [message, exchange, routing_key]
  Punacked_index                  ZSET delivery tag -> Unix time a worker took it
  channel P/<db>.celeryev/worker.heartbeat   a worker PUBLISHes `worker-heartbeat` every
                                  `freq` s (2 by default); `worker-offline` on a clean stop

Workers keep no key: a run PSUBSCRIBEs (not a write) and listens a little longer than one
heartbeat interval, inside the run's deadline. A worker heard before and silent for 2 x its
`freq` (Celery's own rule) is dead; remembering it needs memory: in --listen / --interval the
process keeps it, in exec mode an atomic script keeps it under tqmon's own {P}:celery:* keys
(lua/celery_memory.lua: each death counted once by N collectors). --read-only exec mode has
no memory: it reports the workers heard in the window, never a dead one.

Queues: depth sums the priority lists (LLEN); unacked messages (ZRANGE of the index in
windows, HMGET of the hash in batches, attributed to their queue through the bindings) give
in-flight counts, the oldest one's age and the orphans (taken longer ago than the visibility
timeout: their worker died, kombu restores them only then). Celery's messages carry no send
time, so the oldest waiting age exists only for a message sent with an eta (its age past it).
Queue discovery SCANs for binding sets, bounded (DISCOVERY_SCAN_CALLS); --celery-queues skips it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis

from .. import boundedjson, connection, contract
from ..model import Samples, describe_error
from .base import BATCH, WORKER_REASONS, Context, Skips, cut, on_key_owner, server_time

log = logging.getLogger(__name__)

SEP = b"\x06\x16"  # kombu's separator in binding members and priority list names
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's default priority_steps; 0 is the bare queue name
BINDING = b"_kombu.binding."
INTERNAL_EXCHANGES = (b"celeryev",)  # events: pub/sub, no lists; *.pidbox: remote control
DEFAULT_QUEUE = b"celery"
DISCOVERY_SCAN_CALLS = 100  # SCAN ... COUNT 1000 calls: at most 100,000 keys looked at
UNACKED_WINDOW = 5000  # unacked_index members per ZRANGE
UNACKED_MAX = 200_000  # unacked messages read per run, at most
EXPIRE_WINDOW = 2.0  # celery.events.state: a heartbeat expires after 2 x freq
MEMORY_MAX = 10_000  # workers remembered and reported, at most
DETECT_LIMIT = 1000  # deaths counted or pruned per script run
WORKER = ("worker_id", "worker_name")
GROUP = "celery"  # the `group` label of the in-flight and orphaned series
QUEUE_REASONS = ("bad_value", "wrong_type", "unknown_queue", "not_scanned")
MEMORY_SCRIPT = (Path(__file__).parent.parent / "lua" / "celery_memory.lua").read_text("utf-8")


# --- workers: listening to heartbeats -------------------------------------------------------

@dataclass
class Heard:
    """A worker's latest heartbeat: when (server seconds) and what it said."""

    last: float
    freq: float
    processed: float | None = None
    active: float | None = None

    @property
    def expiry(self) -> float:
        return self.last + EXPIRE_WINDOW * self.freq

    def to_json(self) -> str:
        return json.dumps({"last": self.last, "freq": self.freq, "processed": self.processed,
                           "active": self.active})

    @classmethod
    def from_json(cls, raw: bytes, skips: Skips) -> Heard:
        data = boundedjson.loads(raw)
        return cls(float(data["last"]), float(data["freq"]),
                   skips.number(data.get("processed")), skips.number(data.get("active")))


@dataclass
class Window:
    """What one listening window heard: heartbeats by nodename, and clean shutdowns."""

    heard: dict[str, Heard] = field(default_factory=dict)
    offline: set[str] = field(default_factory=set)
    complete: bool = True  # False: Redis dropped the subscription before the window ended


def _channel(ctx: Context) -> bytes:
    return f"{ctx.config.celery_key_prefix}/{ctx.config.db}.celeryev/worker.*".encode()


def _event(data: bytes, skips: Skips) -> dict[str, Any] | None:
    """The event inside kombu's envelope (JSON, body base64-encoded); never unpickled."""
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
        skips["bad_value"] += 1
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
                                   skips.number(event.get("active")))
        window.offline.discard(name)


# --- workers: memory of what was heard -------------------------------------------------------

class Memory(Protocol):
    def update(self, now: float, window: Window) -> tuple[dict[str, Heard], float | None]:
        """Every worker remembered (heard now or before), and deaths counted so far (None
        without memory)."""


class NoMemory:
    """--read-only exec mode: only what this window heard."""

    def update(self, now: float, window: Window) -> tuple[dict[str, Heard], float | None]:
        return dict(window.heard), None


class ProcessMemory:
    """--listen and --interval: the process outlives a run, so it remembers."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self.workers: dict[str, Heard] = {}
        self.dead: dict[str, float] = {}  # nodename -> when its death was counted
        self.detected = 0.0
        self.lock = threading.Lock()

    def update(self, now: float, window: Window) -> tuple[dict[str, Heard], float | None]:
        with self.lock:
            for name, heard in window.heard.items():
                known = self.workers.get(name)
                if known is None or heard.expiry > known.expiry:
                    self.workers[name] = heard
                self.dead.pop(name, None)
            for name in window.offline:
                self.workers.pop(name, None)
                self.dead.pop(name, None)
            for name, heard in self.workers.items():
                if heard.expiry < now and name not in self.dead:
                    self.dead[name] = now
                    self.detected += 1
            for name, since in list(self.dead.items()):
                if since < now - self.retention:
                    del self.dead[name]
                    self.workers.pop(name, None)
            return dict(self.workers), self.detected


_PROCESS_MEMORIES: dict[tuple[Any, ...], ProcessMemory] = {}


class RedisMemory:
    """Exec mode: under tqmon's own {P}:celery:* keys, changed only by one atomic script."""

    def __init__(self, ctx: Context, client: redis.Redis, skips: Skips) -> None:
        tag = contract.Keys(ctx.config.prefix).tag
        self.keys = [f"{tag}:celery:{name}" for name in ("workers", "info", "dead", "stats")]
        self.client, self.retention, self.skips = client, ctx.config.dead_retention, skips

    def update(self, now: float, window: Window) -> tuple[dict[str, Heard], float | None]:
        args: list[Any] = [self.retention, DETECT_LIMIT, len(window.heard)]
        for name, heard in window.heard.items():
            args += [name, repr(heard.expiry), heard.to_json()]
        args += sorted(window.offline)
        workers_key, info_key, _, stats_key = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("EVAL", MEMORY_SCRIPT, len(self.keys), *self.keys, *args)
        pipe.execute_command("ZRANGE", workers_key, 0, MEMORY_MAX - 1)
        pipe.execute_command("HGET", stats_key, "dead_workers_detected")
        script, names, detected = pipe.execute(raise_on_error=False)
        if isinstance(script, Exception):  # e.g. NOPERM: report what this window heard
            log.warning("celery: worker memory not recorded: %s", describe_error(script))
            return dict(window.heard), None
        for reply in (names, detected):
            if isinstance(reply, Exception):
                raise reply
        batches = [(b"HMGET", info_key, *names[start:start + BATCH])
                   for start in range(0, len(names), BATCH)]
        infos = [info for reply in (connection.pipelined(self.client, batches) if batches
                                    else []) for info in reply]
        workers = {}
        for raw_name, info in zip(names, infos, strict=True):
            if info is None:
                continue
            try:
                workers[raw_name.decode("utf-8", "backslashreplace")] = Heard.from_json(
                    info, self.skips)
            except (ValueError, KeyError, TypeError):
                self.skips["bad_value"] += 1  # not written by tqmon
        return workers, float(detected or 0)


def _memory(ctx: Context, client: redis.Redis, skips: Skips) -> Memory:
    cfg = ctx.config
    if cfg.listen is not None or cfg.interval is not None:
        key = (cfg.targets, cfg.db, cfg.celery_key_prefix, cfg.dead_retention)
        return _PROCESS_MEMORIES.setdefault(key, ProcessMemory(cfg.dead_retention))
    if cfg.read_only:
        return NoMemory()
    return RedisMemory(ctx, client, skips)


def collect_workers(ctx: Context) -> Samples:
    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Skips()
        now, window = listen(ctx, client, skips)
        if window.complete:
            workers, detected = _memory(ctx, client, skips).update(now, window)
        else:  # a partial window proves no death: report what it heard, decide nothing
            workers, detected = dict(window.heard), None
        _add_workers(out, now, workers, skips)
        if detected is not None:
            out.add("dead_workers_detected_total", {}, detected)
        out.add_skipped("workers", WORKER_REASONS, skips)
        return out

    return on_key_owner(ctx, contract.Keys(ctx.config.prefix).tag + ":celery:workers", work)


def _add_workers(out: Samples, now: float, workers: dict[str, Heard], skips: Skips) -> None:
    rows = {metric: out.series(metric, WORKER) for metric in (
        "worker_up", "worker_heartbeat_age_seconds", "worker_tasks_processed_total",
        "worker_current_status")}
    info_rows = out.series("worker_info", (*WORKER, "hostname"))
    for name in sorted(workers)[:MEMORY_MAX]:
        heard, label = workers[name], skips.label(name)
        labels = (label, label)
        up = heard.expiry >= now
        rows["worker_up"].append((labels, 1.0 if up else 0.0))
        rows["worker_heartbeat_age_seconds"].append((labels, max(0.0, now - heard.last)))
        info_rows.append(((label, label, label.partition("@")[2] or label), 1.0))
        if heard.processed is not None:
            rows["worker_tasks_processed_total"].append((labels, heard.processed))
        if up and heard.active is not None:
            rows["worker_current_status"].append((labels, 1.0 if heard.active else 0.0))


# --- queues ------------------------------------------------------------------------------------

@dataclass
class Queue:
    """What one queue's keys say."""

    depth: int = 0
    in_flight: int = 0
    orphaned: int = 0
    oldest_taken: float | None = None
    oldest_eta: float | None = None


def _discover(client: redis.Redis, prefix: bytes) -> tuple[list[bytes], bool]:
    """Binding set keys, by a SCAN bounded to DISCOVERY_SCAN_CALLS; and whether it finished."""
    found, cursor = [], 0
    for _ in range(DISCOVERY_SCAN_CALLS):
        cursor, keys = client.execute_command("SCAN", cursor, "MATCH",
                                              _glob(prefix + BINDING) + b"*", "COUNT", BATCH)
        found += keys
        if int(cursor) == 0:
            return sorted(set(found)), True
    return sorted(set(found)), False


def _glob(text: bytes) -> bytes:
    """`text` as a literal in a SCAN MATCH pattern."""
    return b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c]) for c in text)


def _internal(exchange: bytes) -> bool:
    return exchange in INTERNAL_EXCHANGES or exchange.endswith(b".pidbox")


def _bindings(ctx: Context, client: redis.Redis, skips: Counter[str]
              ) -> tuple[list[bytes], dict[tuple[bytes, bytes], bytes]]:
    """The queues to report and the (exchange, routing key) -> queue routes to attribute
    unacked messages with."""
    prefix = ctx.config.celery_key_prefix.encode()
    configured = [q.encode() for q in ctx.config.celery_queues]
    if configured:
        keys = [prefix + BINDING + name for name in dict.fromkeys([*configured, DEFAULT_QUEUE])]
    else:
        keys, complete = _discover(client, prefix)
        if not complete:
            log.warning("celery: queue discovery stopped after %d SCAN calls; name the queues "
                        "with --celery-queues", DISCOVERY_SCAN_CALLS)
    exchanges = [key[len(prefix + BINDING):] for key in keys]
    keep = [(key, ex) for key, ex in zip(keys, exchanges, strict=True) if not _internal(ex)]
    replies = connection.pipelined(client, [(b"SMEMBERS", key) for key, _ in keep])
    routes: dict[tuple[bytes, bytes], bytes] = {}
    bound: list[bytes] = []
    for (_, exchange), members in zip(keep, replies, strict=True):
        if isinstance(members, Exception):
            skips["wrong_type"] += 1
            continue
        for member in members:
            parts = member.split(SEP)
            if len(parts) != 3 or not parts[2]:
                skips["bad_value"] += 1
                continue
            routing_key, _, queue = parts
            routes.setdefault((exchange, routing_key), queue)
            bound.append(queue)
    queues = configured or sorted(set(bound)) or [DEFAULT_QUEUE]
    return queues, routes


def _eta(message: Any) -> float | None:
    """Unix time of a waiting message's eta header, if it was sent with one."""
    try:
        eta = boundedjson.loads(message)["headers"]["eta"]
        if not isinstance(eta, str):
            return None
        parsed = datetime.datetime.fromisoformat(eta.replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def _lists(queue: bytes) -> list[bytes]:
    return [queue if step == 0 else queue + SEP + str(step).encode() for step in PRIORITY_STEPS]


def _waiting(client: redis.Redis, prefix: bytes, queues: list[bytes],
             found: dict[bytes, Queue], skips: Counter[str]) -> tuple[float, int]:
    """Depth and the tails' etas of every queue (LLEN and LINDEX -1 of each priority list),
    with the server time and the size of the unacked index, in pipelined batches."""
    per_queue = 2 * len(PRIORITY_STEPS)
    head = connection.pipelined(client, [(b"TIME",), (b"ZCARD", prefix + b"unacked_index")])
    if isinstance(head[0], Exception):
        raise head[0]
    unacked = 0 if isinstance(head[1], Exception) else int(head[1])
    if isinstance(head[1], Exception):
        skips["wrong_type"] += 1
    step = max(1, BATCH // per_queue)
    for start in range(0, len(queues), step):
        batch = queues[start:start + step]
        commands: list[tuple] = []
        for queue in batch:
            for key in _lists(prefix + queue):
                commands += [(b"LLEN", key), (b"LINDEX", key, -1)]
        replies = connection.pipelined(client, commands)
        for index, queue in enumerate(batch):
            state = found[queue]
            mine = replies[index * per_queue:(index + 1) * per_queue]
            for length, tail in zip(mine[::2], mine[1::2], strict=True):
                if isinstance(length, Exception) or isinstance(tail, Exception):
                    skips["wrong_type"] += 1
                    continue
                state.depth += int(length)
                if tail is not None and (eta := _eta(tail)) is not None:
                    state.oldest_eta = eta if state.oldest_eta is None else min(
                        eta, state.oldest_eta)
    return server_time(head[0]), unacked


def _unacked(client: redis.Redis, prefix: bytes, size: int, now: float, visibility: float,
             routes: dict[tuple[bytes, bytes], bytes], found: dict[bytes, Queue],
             skips: Counter[str]) -> None:
    """Attribute each unacked message to its queue from its exchange and routing key."""
    if size > UNACKED_MAX:
        skips["not_scanned"] += size - UNACKED_MAX
        size = UNACKED_MAX
    windows = [(b"ZRANGE", prefix + b"unacked_index", start,
                min(size, start + UNACKED_WINDOW) - 1, b"WITHSCORES")
               for start in range(0, size, UNACKED_WINDOW)]
    taken: list[tuple[bytes, float]] = []
    for reply in connection.pipelined(client, windows) if windows else []:
        if isinstance(reply, Exception):
            skips["wrong_type"] += 1
            return
        taken += [(tag, float(score)) for tag, score in zip(reply[::2], reply[1::2],
                                                            strict=True)]
    for start in range(0, len(taken), BATCH):
        batch = taken[start:start + BATCH]
        [messages] = connection.pipelined(
            client, [(b"HMGET", prefix + b"unacked", *(tag for tag, _ in batch))])
        if isinstance(messages, Exception):
            skips["wrong_type"] += 1
            return
        for (_, taken_at), raw in zip(batch, messages, strict=True):
            if raw is None:  # acked between the two reads
                continue
            queue = _route(raw, routes, found, skips)
            if queue is None:
                continue
            state = found[queue]
            state.in_flight += 1
            if taken_at < now - visibility:
                state.orphaned += 1
            if state.oldest_taken is None or taken_at < state.oldest_taken:
                state.oldest_taken = taken_at


def _route(raw: bytes, routes: dict[tuple[bytes, bytes], bytes], found: dict[bytes, Queue],
           skips: Counter[str]) -> bytes | None:
    try:
        _, exchange, routing_key = boundedjson.loads(raw)
        exchange, routing_key = exchange.encode(), routing_key.encode()
    except (ValueError, TypeError, AttributeError):
        skips["bad_value"] += 1
        return None
    queue = routes.get((exchange, routing_key), routing_key)
    if queue not in found:
        skips["unknown_queue"] += 1
        return None
    return queue


def collect_queues(ctx: Context) -> Samples:
    prefix = ctx.config.celery_key_prefix.encode()

    def work(client: redis.Redis) -> Samples:
        out, skips = Samples(), Counter[str]()
        queues, routes = _bindings(ctx, client, skips)
        found = {queue: Queue() for queue in queues}
        now, unacked = _waiting(client, prefix, queues, found, skips)
        _unacked(client, prefix, unacked, now, ctx.config.celery_visibility_timeout, routes,
                 found, skips)
        _add_queues(out, now, found)
        out.add_skipped("queues", QUEUE_REASONS, skips)
        return out

    return on_key_owner(ctx, ctx.config.celery_key_prefix + "unacked", work)


def _add_queues(out: Samples, now: float, found: dict[bytes, Queue]) -> None:
    for queue, state in found.items():
        priority = cut(queue.decode("utf-8", "backslashreplace"))
        group = {"priority": priority, "group": GROUP}
        out.add("task_queue_depth", {"priority": priority}, float(state.depth))
        out.add("task_queue_pending", group, float(state.in_flight))
        out.add("task_queue_orphaned", group, float(state.orphaned))
        out.add("task_queue_oldest_pending_idle_seconds", group,
                0.0 if state.oldest_taken is None else max(0.0, now - state.oldest_taken))
        if state.oldest_eta is not None:
            out.add("task_queue_oldest_waiting_age_seconds", group,
                    max(0.0, now - state.oldest_eta))
