"""The data a run produces, shared by the collectors that make it and the exposition that prints
it: samples grouped by catalog metric, histogram values, and one-line error descriptions."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from . import catalog


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
        # For collectors.fleet, from an adapter that reports every worker: each worker's pool
        # where the adapter names it (worker id -> pool; others are named from worker_name),
        # and pool task totals that never fall (pool -> count), None when it keeps none.
        self.pools: dict[str, str] = {}
        self.pool_totals: tuple[dict[str, float], dict[str, float] | None] | None = None

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
        self.pools.update(other.pools)
        if other.pool_totals is not None:
            self.pool_totals = other.pool_totals

    def __len__(self) -> int:
        return sum(map(len, self.rows.values()))

    def exposed(self) -> int:
        """Samples the exposition will hold: a histogram is a sample per bucket, a sum and a
        count, which is also how agents with a series limit (Datadog) count them."""
        total = 0
        for metric, rows in self.rows.items():
            if catalog.default()[metric].type == "histogram":
                total += sum(len(value.buckets) + 2 for _, value in rows)  # type: ignore[union-attr]
            else:
                total += len(rows)
        return total


def describe_error(exc: BaseException) -> str:
    """One line about a failed call, naming its kind; never contains credentials."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind
