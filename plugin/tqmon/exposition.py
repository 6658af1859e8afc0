"""Samples -> Prometheus text or OpenMetrics, with HELP/TYPE/UNIT from the catalog.

prometheus_client does the formatting and the escaping of label values (whatever bytes a worker
wrote into Redis); a fresh registry per run holds one custom collector, so no process-wide
state and no `_created` series.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
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

from .catalog import Catalog, MetricSpec
from .collectors import Histogram, Sample

CONTENT_TYPES = {
    "prometheus": "text/plain; version=0.0.4; charset=utf-8",
    "openmetrics": "application/openmetrics-text; version=1.0.0; charset=utf-8",
}


def _family(spec: MetricSpec, samples: list[Sample]) -> Metric:
    for sample in samples:
        if set(sample.labels) != set(spec.labels):
            raise ValueError(f"{spec.name}: labels {sorted(sample.labels)} differ from the "
                             f"catalog's {sorted(spec.labels)}")
    if spec.type == "info":
        info = InfoMetricFamily(spec.family_name, spec.help, labels=())
        for sample in samples:
            info.add_metric((), {k: sample.labels[k] for k in spec.labels})
        return info
    kind = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily,
            "histogram": HistogramMetricFamily}[spec.type]
    family = kind(spec.family_name, spec.help, labels=spec.labels, unit=spec.unit)
    for sample in samples:
        values = [sample.labels[k] for k in spec.labels]
        if isinstance(sample.value, Histogram):
            buckets = [(_le(bound), count) for bound, count in sample.value.buckets]
            family.add_metric(values, buckets=buckets, sum_value=sample.value.sum)
        else:
            family.add_metric(values, sample.value)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _SampleCollector:
    """A prometheus_client custom collector over one run's samples, in catalog order."""

    def __init__(self, catalog: Catalog, samples: Iterable[Sample]) -> None:
        self._catalog = catalog
        self._by_metric: dict[str, list[Sample]] = defaultdict(list)
        for sample in samples:
            if sample.metric not in catalog:
                raise ValueError(f"{sample.metric} is not in the metric catalog")
            self._by_metric[sample.metric].append(sample)

    def collect(self) -> Iterator[Metric]:
        for name, spec in self._catalog.metrics.items():
            if samples := self._by_metric.get(name):
                yield _family(spec, samples)


def render(catalog: Catalog, samples: Iterable[Sample], fmt: str = "prometheus") -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SampleCollector(catalog, samples))
    return openmetrics_format(registry) if fmt == "openmetrics" else text_format(registry)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part of it.

    The temporary file sits in the same directory (rename is atomic only within a filesystem)
    and starts with a dot without ending in .prom, so node_exporter's textfile collector
    ignores it.
    """
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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
