"""Collectors: each turns one aspect of the topology into samples; none of them prints."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..config import Config
from ..parallel import Deadline
from ..topology import Topology


@dataclass(frozen=True)
class Histogram:
    """A cumulative histogram value: (upper bound, cumulative count) pairs ending in +Inf."""

    buckets: tuple[tuple[float, float], ...]
    sum: float


@dataclass(frozen=True)
class Sample:
    metric: str  # a catalog name
    labels: Mapping[str, str]
    value: float | Histogram


@dataclass(frozen=True)
class Context:
    config: Config
    topology: Topology
    deadline: Deadline


Collect = Callable[[Context], list[Sample]]


def registry() -> dict[str, Collect]:
    """Collector name -> function; the names are what --collectors accepts."""
    from . import nodes, workers

    return {"nodes": nodes.collect, "workers": workers.collect}
