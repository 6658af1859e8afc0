"""Memory of the Celery workers heard: a worker heard before and silent for 2 x its `freq`
(Celery's own rule) stopped or died, and only memory can tell it was there.

Died or stopped (checked with Celery 5.x, prefork and threads pools): a clean stop (SIGTERM,
exit 0) publishes `worker-offline` (heard only inside a listening window) and closes the
worker's remote-control mailbox, which removes `<sep><sep><node>.celery.pidbox` from kombu's
`_kombu.binding.celery.pidbox`; a SIGKILL leaves the member there. So a silent worker whose
member is still bound died and is counted once; one whose member is gone is forgotten, never
counted: it stopped, or it never had a mailbox (remote control off), when tqmon cannot tell
and does not count it either (docs/adapters.md).

- --listen / --interval: the process outlives a run and remembers (ProcessMemory);
- exec mode: lua/celery_memory.lua keeps it under tqmon's own {P}:celery:* keys, atomically,
  so N collectors count each death once, however many dead are retained (RedisMemory);
- --read-only exec mode: no memory, the workers heard in the window only (NoMemory).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import redis

from ... import connection, contract
from ...model import describe_error
from ..base import BATCH, Context, Skips
from .layout import UNREADABLE, Layout, configured_sep, detect_sep, layout
from .listening import MEMORY_MAX, Heard, Window

log = logging.getLogger(__name__)

DETECT_LIMIT = 1000  # workers judged or pruned per script run
SEP_SAMPLE = 16  # pidbox members read to detect the separator


class Memory(Protocol):
    def update(self, now: float, window: Window) -> tuple[dict[str, Heard], float | None]:
        """Every worker remembered (heard now or before), and deaths counted so far (None
        without memory)."""


class NoMemory:
    """--read-only exec mode: only what this window heard."""

    def update(self, now: float, window: Window) -> tuple[dict[str, Heard], float | None]:
        return dict(window.heard), None


def mailboxes(ctx: Context, client: redis.Redis) -> Layout:
    """The layout the pidbox members are read with: the separator configured, or detected from
    a few members (SRANDMEMBER: bounded)."""
    sep = configured_sep(ctx.config)
    if sep is None:
        key = layout(ctx.config, None).pidbox_key
        try:
            sample = client.execute_command("SRANDMEMBER", key, SEP_SAMPLE)
        except redis.ResponseError:  # WRONGTYPE, NOPERM: kombu's separator, still_bound says
            sample = None
        sep = detect_sep(sample) if isinstance(sample, list) else None
    return layout(ctx.config, sep)


def still_bound(client: redis.Redis, boxes: Layout, names: list[str]) -> set[str]:
    """The nodenames whose pidbox member is still in kombu's binding set (SMISMEMBER)."""
    head, tail = boxes.pidbox_member()
    bound: set[str] = set()
    for start in range(0, len(names), BATCH):
        batch = names[start:start + BATCH]
        try:
            reply = client.execute_command("SMISMEMBER", boxes.pidbox_key,
                                           *(head + n.encode() + tail for n in batch))
        except redis.ResponseError as exc:  # cannot tell a stop: a death is never missed
            log.warning("%s the pidbox binding %s (%s): silent workers are counted as dead; "
                        "grant read access to it", UNREADABLE, boxes.pidbox_key.decode(
                            "utf-8", "backslashreplace"), describe_error(exc))
            return set(names)
        bound.update(name for name, there in zip(batch, reply, strict=True) if there)
    return bound


class ProcessMemory:
    """--listen and --interval: the process outlives a run, so it remembers."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self.workers: dict[str, Heard] = {}
        self.dead: dict[str, float] = {}  # nodename -> when its death was counted
        self.detected = 0.0
        self.lock = threading.Lock()

    def update(self, now: float, window: Window, bound: Callable[[list[str]], set[str]]
               ) -> tuple[dict[str, Heard], float | None]:
        """`bound`: which of these nodenames still have their pidbox member."""
        with self.lock:
            for name, heard in window.heard.items():
                known = self.workers.get(name)
                if known is None or heard.expiry > known.expiry:
                    self.workers[name] = heard
                self.dead.pop(name, None)
            for name in window.offline:
                self.workers.pop(name, None)
                self.dead.pop(name, None)
            silent = [name for name, heard in self.workers.items()
                      if heard.expiry < now and name not in self.dead]
            died = bound(silent) if silent else set()
            for name in silent:
                if name in died:
                    self.dead[name] = now
                    self.detected += 1
                else:  # stopped cleanly (or no mailbox: cannot tell): forgotten
                    del self.workers[name]
            for name, since in list(self.dead.items()):
                if since < now - self.retention:
                    del self.dead[name]
                    self.workers.pop(name, None)
            return dict(self.workers), self.detected


_PROCESS_MEMORIES: dict[tuple[Any, ...], ProcessMemory] = {}


class _InProcess:
    """The process's memory, with this run's client to read the pidbox members."""

    def __init__(self, kept: ProcessMemory, client: redis.Redis, boxes: Layout) -> None:
        self.kept, self.client, self.boxes = kept, client, boxes

    def update(self, now: float, window: Window) -> tuple[dict[str, Heard], float | None]:
        return self.kept.update(now, window,
                                lambda names: still_bound(self.client, self.boxes, names))


class RedisMemory:
    """Exec mode: under tqmon's own {P}:celery:* keys, changed only by one atomic script."""

    def __init__(self, ctx: Context, client: redis.Redis, skips: Skips, boxes: Layout) -> None:
        tag = contract.Keys(ctx.config.prefix).tag
        self.keys = [f"{tag}:celery:{name}" for name in ("workers", "info", "dead", "stats")]
        self.client, self.retention, self.skips = client, ctx.config.dead_retention, skips
        self.boxes = boxes

    def update(self, now: float, window: Window) -> tuple[dict[str, Heard], float | None]:
        head, tail = self.boxes.pidbox_member()
        args: list[Any] = [self.retention, DETECT_LIMIT, head, tail, len(window.heard)]
        for name, heard in window.heard.items():
            args += [name, repr(heard.expiry), heard.to_json()]
        args += sorted(window.offline)
        workers_key, info_key, _, stats_key = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("EVAL", contract.CELERY_MEMORY, len(self.keys) + 1, *self.keys,
                             self.boxes.pidbox_key, *args)
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
            except (ValueError, KeyError, TypeError):  # BadJSON too: not written by tqmon
                self.skips["bad_value"] += 1
        return workers, float(detected or 0)


def memory(ctx: Context, client: redis.Redis, skips: Skips) -> Memory:
    cfg = ctx.config
    if cfg.listen is not None or cfg.interval is not None:
        key = (cfg.targets, cfg.db, cfg.celery_key_prefix, cfg.dead_retention)
        kept = _PROCESS_MEMORIES.setdefault(key, ProcessMemory(cfg.dead_retention))
        return _InProcess(kept, client, mailboxes(ctx, client))
    if cfg.read_only:
        return NoMemory()
    return RedisMemory(ctx, client, skips, mailboxes(ctx, client))

