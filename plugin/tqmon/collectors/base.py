"""What every collector and queue system shares: the run's context, the client for the node that
owns a key, the server's clock, and accounting for entries skipped or sanitised."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from .. import connection
from ..config import Config
from ..failures import NODE_ERRORS, Failures, NodeDown
from ..labels import MAX_LABEL, cut
from ..model import Samples
from ..parallel import Deadline
from ..topology import Node, Topology

T = TypeVar("T")
BATCH = 1000  # commands of one kind per pipelined round trip
# tqmon_skipped_entries{collector="workers"} reasons, the same for every queue system so the
# series and the alert on them do not depend on the schema.
WORKER_REASONS = ("wrong_type", "missing_hash", "bad_value", "bad_latency_field",
                  "too_many_series", "long_label", "duplicate", "incomplete_window")
INF = math.inf


class Once:
    """What several collectors of one run need from one read (BullMQ's CLIENT LIST): the
    first to ask reads it, the others wait and share its answer, or its error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, tuple[bool, Any]] = {}

    def get(self, key: str, read: Callable[[], T]) -> T:
        with self._lock:  # reads are short and few: one lock for all keeps this simple
            if key not in self._done:
                try:
                    self._done[key] = (True, read())
                except Exception as exc:  # shared like a value; raised to every caller
                    self._done[key] = (False, exc)
            ok, value = self._done[key]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Context:
    config: Config
    topology: Topology
    deadline: Deadline
    failures: Failures = field(default_factory=Failures)
    once: Once = field(default_factory=Once)


Collect = Callable[[Context], Samples]


def no_node(ctx: Context, what: str) -> Exception:
    """What a collector raises when it has no node to read at all: it is down, never up with
    nothing. Under Sentinel the sentinels' lines have said why, once."""
    if ctx.topology.sentinel is not None:
        return NodeDown("no sentinel named a master")
    return ConnectionError(what)


def on_key_owner(ctx: Context, key: str, work: Callable[[redis.Redis], T]) -> T:
    """Run `work` on a bytes client for the node holding `key`, following one MOVED redirect
    (the seed's view of the cluster can trail a failover by a moment). Bytes, because keys
    built from names read in Redis must round-trip exactly, whatever their encoding."""
    node = ctx.topology.node_for(key)
    if node is None:
        raise no_node(ctx, f"no reachable master is known for {key}")
    for attempt in range(2):
        client = connection.client(ctx.config, node.host, node.port, ctx.deadline,
                                   tls=node.tls, decode=False)
        try:
            return work(client)
        except redis.exceptions.MovedError as moved:
            if attempt:
                raise
            node = Node(moved.host, moved.port, "master", tls=node.tls)
        except NODE_ERRORS as exc:  # reported once per node and run, whoever meets it
            raise ctx.failures.node(node.address, exc) from None
        finally:
            client.close()
    raise AssertionError("unreachable")


def pipelined(ctx: Context, client: redis.Redis, commands: Sequence[Sequence[Any]]
              ) -> list[Any]:
    """connection.pipelined, following ASK redirects: while a slot migrates, a key already
    moved answers ASK, and the command goes again to the importing node after ASKING. The
    redirected commands go in one round trip per node; their replies take their places."""
    replies = connection.pipelined(client, commands)
    by_node: dict[tuple[str, int], list[int]] = {}
    for index, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.AskError):
            by_node.setdefault((reply.host, reply.port), []).append(index)
    tls = ctx.config.tls
    for (host, port), indexes in by_node.items():
        target = connection.client(ctx.config, host, port, ctx.deadline, tls=tls, decode=False)
        try:
            asked = connection.pipelined(
                target, [c for i in indexes for c in ((b"ASKING",), commands[i])])
        finally:
            target.close()
        for index, reply in zip(indexes, asked[1::2], strict=True):
            replies[index] = reply
    return replies


def server_time(reply: Any) -> float:
    """Seconds from a TIME reply: the Redis server's clock, the same for every collector."""
    return float(reply[0]) + float(reply[1]) / 1e6


class Skips(Counter[str]):
    """What this run skipped or sanitised, by reason (exported as tqmon_skipped_entries)."""

    def label(self, raw: bytes | str | None) -> str:
        """Label text from whatever bytes Redis holds: invalid UTF-8 stays visible and
        unambiguous as \\xNN escapes (prometheus_client escapes quotes and newlines)."""
        if raw is None:
            return ""
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        if len(text) > MAX_LABEL:
            self["long_label"] += 1
            return cut(text)
        return text

    def number(self, raw: Any) -> float | None:
        """A finite, non-negative number, or None (counted unless absent)."""
        if raw is None:
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if 0.0 <= value < INF:  # False for NaN, negatives and infinities alike
            return value
        self["bad_value"] += 1
        return None
