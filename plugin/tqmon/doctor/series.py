"""One collection as the plugin runs it: does each collector work, and how many series."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from ..run import collect_once
from .base import Checkup, Finding, ok, problem, warning
from .celery_layout import check_celery_layout

DATADOG_LIMIT = 2000  # the Datadog OpenMetrics check's default max_returned_metrics


def check_collection(c: Checkup) -> Iterator[Finding]:
    """One collection as the plugin would run it, read-only (doctor writes nothing)."""
    config, captured = c.config, c.captured
    quiet = dataclasses.replace(config, read_only=True, requeue_orphans=False)
    captured.take()
    samples = collect_once(quiet)
    errors = captured.take()
    for labels, value in samples.rows.get("tqmon_collector_up", []):
        name = labels[0]
        if value == 1.0:
            yield ok("collect", f"collector {name} ok")
        else:
            why = next((e for e in errors if name in e), errors[0] if errors else "")
            text = why if why.startswith(f"collector {name}") else \
                f"collector {name} failed" + (f": {why}" if why else "")
            yield problem("collect", text)
    yield from check_celery_layout(errors)
    series = samples.exposed()
    omitted = sum(v for _, v in samples.rows.get("tqmon_worker_series_omitted", []))
    cap = config.max_worker_series
    text = f"a collection emits {series:,} series (Datadog's default limit: {DATADOG_LIMIT:,})"
    if omitted:
        text += f"; --max-worker-series {cap} leaves {omitted:,.0f} workers to their pools"
    if series > DATADOG_LIMIT:
        yield warning("series", text, "Datadog: raise max_returned_metrics in the openmetrics "
                      "check, or lower --max-worker-series")
    else:
        yield ok("series", text + (f"; --max-worker-series {'all' if cap is None else cap}"
                                   if not omitted else ""))
