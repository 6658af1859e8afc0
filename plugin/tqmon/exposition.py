"""Samples -> Prometheus text or OpenMetrics, with HELP/TYPE/UNIT from the catalog.

The classic text format, what every run prints for Telegraf and node_exporter, is written here
directly: prometheus_client's formatter costs ~5 us a series, most of a small run's time above
the import floor and seconds for a 100,000-worker fleet. prometheus_client stays the reference:
tests render random samples (every label byte, NaN, infinities, histograms) both ways and
require identical bytes. OpenMetrics goes through prometheus_client (a fresh registry per run
holding one custom collector, so no process-wide state and no `_created` series).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_format
from prometheus_client.utils import floatToGoString

from .catalog import Catalog, MetricSpec
from .model import Histogram, Samples

SLICE = 10_000  # series formatted at a time: bounds memory for a 100,000-worker fleet
CONTENT_TYPES = {
    "prometheus": "text/plain; version=0.0.4; charset=utf-8",
    "openmetrics": "application/openmetrics-text; version=1.0.0; charset=utf-8",
}


def _family(spec: MetricSpec, rows: list) -> Metric:
    """One catalog metric's rows (label values in catalog order, value) as a metric family."""
    if spec.type == "info":
        info = InfoMetricFamily(spec.family_name, spec.help, labels=())
        for values, _ in rows:
            info.add_metric((), dict(zip(spec.labels, values, strict=True)))
        return info
    kind = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily,
            "histogram": HistogramMetricFamily}[spec.type]
    family = kind(spec.family_name, spec.help, labels=spec.labels, unit=spec.unit)
    for values, value in rows:
        if isinstance(value, Histogram):
            buckets = [(floatToGoString(bound), count) for bound, count in value.buckets]
            family.add_metric(values, buckets=buckets, sum_value=value.sum)
        else:
            family.add_metric(values, value)
    return family


class _One:
    """A prometheus_client collector holding a single family."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


def ordered(catalog: Catalog) -> list[tuple[str, MetricSpec]]:
    """Catalog order, but by size: the families of a few series each (nodes, queues, the
    fleet's counters, tqmon's own) first, then the per-pool ones (at most 100 pools), the
    latency histogram (22 series per task type and priority), and the per-worker families
    last: an agent that stops at a number of series (Datadog's max_returned_metrics) drops
    the bulk of a big fleet first, never what the alerts and the overview need."""
    return sorted(catalog.metrics.items(), key=lambda item: (
        item[1].labels[:1] == ("worker_id",), item[1].type == "histogram",
        item[1].labels == ("pool",)))


def render_chunks(catalog: Catalog, samples: Samples, fmt: str = "prometheus"
                  ) -> Iterator[bytes]:
    """The exposition in `fmt`, in catalog order (per-worker families last), a chunk at a
    time."""
    if fmt == "prometheus":
        return text_chunks(catalog, samples)
    return library_chunks(catalog, samples, fmt)


def text_chunks(catalog: Catalog, samples: Samples) -> Iterator[bytes]:
    """The classic text format (0.0.4), byte for byte what prometheus_client writes, SLICE
    series a chunk. Metrics without rows are left out, as there."""
    if unknown := set(samples.rows) - set(catalog.metrics):
        raise ValueError(f"not in the metric catalog: {sorted(unknown)}")
    for name, spec in ordered(catalog):
        rows = samples.rows.get(name)
        if not rows:
            continue
        kind = "gauge" if spec.type == "info" else spec.type
        header = f"# HELP {name} {_help(spec.help)}\n# TYPE {name} {kind}\n"
        order = sorted(range(len(spec.labels)), key=spec.labels.__getitem__)
        names = [spec.labels[i] for i in order]
        for start in range(0, len(rows), SLICE):
            lines = [header] if start == 0 else []
            chunk = rows[start:start + SLICE]
            if spec.type == "histogram":
                for values, value in chunk:
                    pairs = [f'{label}="{_label(values[i])}"'
                             for label, i in zip(names, order, strict=True)]
                    _histogram_lines(lines, name, pairs, value)  # type: ignore[arg-type]
            else:
                _sample_lines(lines, name, names, order, chunk, spec.type == "info")
            yield "".join(lines).encode("utf-8")


def _sample_lines(lines: list[str], name: str, names: list[str], order: list[int],
                  chunk: list, info: bool) -> None:
    """One line a row, through one %-format: the hot loop of a 100,000-worker fleet."""
    labels = ",".join(f'{label}="%s"' for label in names)
    line = f"{name}{{{labels}}} %s\n" if names else f"{name} %s\n"
    reorder = itemgetter(*order) if order != sorted(order) else None
    special, escape, go, append = _SPECIAL.search, _label, floatToGoString, lines.append
    for values, value in chunk:
        if reorder is not None:
            values = reorder(values)
        if special("\0".join(values)):
            values = tuple(map(escape, values))
        if info:
            number = "1.0"  # an info sample is always 1
        elif value.__class__ is float and -1e6 < value < 1e6:
            number = repr(value)  # what floatToGoString gives in this range
        else:
            number = go(value)
        append(line % (*values, number))


def _histogram_lines(lines: list[str], name: str, pairs: list[str], value: Histogram) -> None:
    """Buckets with `le` in sorted label order, then _count (the +Inf bucket) and _sum."""
    for bound, count in value.buckets:
        bucket = sorted([*pairs, f'le="{floatToGoString(bound)}"'],
                        key=lambda pair: pair[:pair.index("=")])
        lines.append(f"{name}_bucket{{{','.join(bucket)}}} {_number(count)}\n")
    labels = "{" + ",".join(pairs) + "}" if pairs else ""
    lines.append(f"{name}_count{labels} {_number(value.buckets[-1][1])}\n")
    lines.append(f"{name}_sum{labels} {_number(value.sum)}\n")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label(text: str) -> str:
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return text


_SPECIAL = re.compile(r'[\\"\n]')  # what a label value must escape


def _number(value: float) -> str:
    """floatToGoString, without its call overhead for the common finite, small case."""
    if value.__class__ is float and -1e6 < value < 1e6:
        return repr(value)
    return floatToGoString(value)


def library_chunks(catalog: Catalog, samples: Samples, fmt: str = "prometheus"
                   ) -> Iterator[bytes]:
    """The exposition through prometheus_client, one metric family per chunk, in catalog order.

    Each family is built, formatted and dropped in turn, a slice of SLICE series at a time, so
    memory holds one slice's text however many workers a fleet has. prometheus_client does
    all formatting and escaping; OpenMetrics' single closing `# EOF` is written once, at the
    end.
    """
    if unknown := set(samples.rows) - set(catalog.metrics):
        raise ValueError(f"not in the metric catalog: {sorted(unknown)}")
    for name, spec in ordered(catalog):
        rows = samples.rows.get(name, [])
        for start in range(0, len(rows), SLICE):
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_One(_family(spec, rows[start:start + SLICE])))
            text = (openmetrics_format(registry).removesuffix(b"# EOF\n")  # once, at the end
                    if fmt == "openmetrics" else text_format(registry))
            yield text if start == 0 else _without_header(text)
    if fmt == "openmetrics":
        yield b"# EOF\n"


def _without_header(text: bytes) -> bytes:
    """A later slice of a family: its # HELP / # TYPE / # UNIT lines were already written."""
    while text.startswith(b"# "):
        text = text[text.index(b"\n") + 1:]
    return text


def render(catalog: Catalog, samples: Samples, fmt: str = "prometheus") -> bytes:
    return b"".join(render_chunks(catalog, samples, fmt))


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write a file so that readers see the old or the new content, never a part of it.

    The temporary file sits in the same directory (rename is atomic only within a filesystem)
    and starts with a dot without ending in .prom, so node_exporter's textfile collector
    ignores it.
    """
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in [data] if isinstance(data, bytes) else data:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # node_exporter usually runs as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
