"""Collectors: each turns one aspect of the topology into samples; none of them prints."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from .. import catalog, connection
from ..config import Config
from ..parallel import Deadline
from ..topology import Node, Topology

T = TypeVar("T")


@dataclass(frozen=True)
class Histogram:
    """A cumulative histogram value: (upper bound, cumulative count) pairs ending in +Inf."""

    buckets: tuple[tuple[float, float], ...]
    sum: float


class Samples:
    """A run's values, grouped by catalog metric as rows of (label values, value).

    Label values are a tuple in the catalog's label order, so a fleet of 100,000 workers costs
    a few small tuples per worker rather than a dict per series.
    """

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[tuple[str, ...], float | Histogram]]] = defaultdict(list)

    def add(self, metric: str, labels: Mapping[str, str], value: float | Histogram) -> None:
        names = catalog.default()[metric].labels
        if set(labels) != set(names):
            raise ValueError(f"{metric}: labels {sorted(labels)} differ from {sorted(names)}")
        self.rows[metric].append((tuple(labels[name] for name in names), value))

    def series(self, metric: str, labels: tuple[str, ...]
               ) -> list[tuple[tuple[str, ...], float | Histogram]]:
        """The row list of `metric`, to append to directly in a hot loop; `labels` names the
        order the caller's tuples use and must be the catalog's."""
        if catalog.default()[metric].labels != labels:
            raise ValueError(f"{metric}: label order {labels} is not the catalog's")
        return self.rows[metric]

    def add_skipped(self, collector: str, reasons: tuple[str, ...], counts: Counter[str]) -> None:
        """tqmon_skipped_entries for a collector's fixed reasons, zeros included, so the series
        exist before anything goes wrong."""
        for reason in reasons:
            self.add("tqmon_skipped_entries", {"collector": collector, "reason": reason},
                     float(counts[reason]))

    def extend(self, other: Samples) -> None:
        for metric, rows in other.rows.items():
            self.rows[metric].extend(rows)

    def __len__(self) -> int:
        return sum(map(len, self.rows.values()))


@dataclass(frozen=True)
class Context:
    config: Config
    topology: Topology
    deadline: Deadline


Collect = Callable[[Context], Samples]


def on_key_owner(ctx: Context, key: str, work: Callable[[redis.Redis], T]) -> T:
    """Run `work` on a bytes client for the node holding `key`, following one MOVED redirect
    (the seed's view of the cluster can trail a failover by a moment). Bytes, because keys
    built from names read in Redis must round-trip exactly, whatever their encoding."""
    node = ctx.topology.node_for(key)
    if node is None:
        raise ConnectionError(f"no reachable master is known for {key}")
    for attempt in range(2):
        client = connection.client(ctx.config, node.host, node.port, ctx.deadline,
                                   tls=node.tls, decode=False)
        try:
            return work(client)
        except redis.exceptions.MovedError as moved:
            if attempt:
                raise
            node = Node(moved.host, moved.port, "master", tls=node.tls)
        finally:
            client.close()
    raise AssertionError("unreachable")


def server_time(reply: Any) -> float:
    """Seconds from a TIME reply: the Redis server's clock, the same for every collector."""
    return float(reply[0]) + float(reply[1]) / 1e6


def registry() -> dict[str, Collect]:
    """Collector name -> function; the names are what --collectors accepts."""
    from . import nodes, queues, workers

    return {"nodes": nodes.collect, "workers": workers.collect, "queues": queues.collect}
