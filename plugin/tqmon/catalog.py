"""The metric catalog: every metric's name, type, help, labels and unit, validated.

catalog.yaml beside this file is what people edit and the single source of truth; it also holds
the dashboard and alert definitions, which the plugin never reads. Every run of the plugin reads
catalog.json instead, compiled from it by devtools/catalog_source.py (`make catalog`, a test
fails on drift): json is already imported by redis-py, and skipping PyYAML's import and parse
saves ~13 ms of each run (make bench).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("catalog.yaml")  # not shipped in the wheel
COMPILED = Path(__file__).with_name("catalog.json")
TYPES = ("gauge", "counter", "histogram", "info")
UNITS = ("", "bytes", "seconds")
ORIGINS = ("seed", "tqmon")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_KEYS = {"name", "type", "unit", "help", "labels", "collector", "origin", "buckets"}


class CatalogError(ValueError):
    """The catalog breaks one of its rules; the message names the entry."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    collector: str
    origin: str
    unit: str = ""
    buckets: tuple[float, ...] = ()

    @property
    def family_name(self) -> str:
        """Name as prometheus_client's metric families expect it (suffix added on output)."""
        suffix = {"counter": "_total", "info": "_info"}.get(self.type)
        return self.name.removesuffix(suffix) if suffix else self.name


@dataclass(frozen=True)
class Catalog:
    metrics: dict[str, MetricSpec]
    labels: dict[str, str]

    def __getitem__(self, name: str) -> MetricSpec:
        return self.metrics[name]

    def __contains__(self, name: object) -> bool:
        return name in self.metrics


def _check_entry(raw: Any, declared_labels: dict[str, str]) -> MetricSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise CatalogError(f"entry without a name: {raw!r}")
    name = raw["name"]

    def fail(why: str) -> CatalogError:
        return CatalogError(f"metric {name}: {why}")

    if unknown := set(raw) - _KEYS:
        raise fail(f"unknown keys {sorted(unknown)}")
    if not _NAME.match(name):
        raise fail("not a valid Prometheus metric name")
    mtype = raw.get("type")
    if mtype not in TYPES:
        raise fail(f"type must be one of {TYPES}, not {mtype!r}")
    if (mtype == "counter") != name.endswith("_total"):
        raise fail("counters, and only counters, end in _total")
    if mtype == "info" and not name.endswith("_info"):
        raise fail("info metrics end in _info")
    help_text = raw.get("help")
    if not isinstance(help_text, str) or not help_text.strip():
        raise fail("help text is missing")
    labels = raw.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise fail("labels must be a list of names")
    if len(set(labels)) != len(labels):
        raise fail("duplicate label")
    for label in labels:
        if not _LABEL.match(label) or label.startswith("__"):
            raise fail(f"invalid label name {label!r}")
        if label not in declared_labels:
            raise fail(f"label {label!r} is not declared in the catalog's labels section")
        if mtype == "histogram" and label == "le":
            raise fail("a histogram cannot carry an 'le' label")
    unit = raw.get("unit", "")
    if unit not in UNITS:
        raise fail(f"unit must be one of {UNITS}, not {unit!r}")
    base = name.removesuffix("_total")
    if unit and not base.endswith("_" + unit):
        raise fail(f"the name must end in _{unit} (before _total) for unit {unit}")
    for candidate in UNITS[1:]:
        if not unit and base.endswith("_" + candidate):
            raise fail(f"the name ends in _{candidate} but declares no unit")
    collector = raw.get("collector")
    if not isinstance(collector, str) or not collector:
        raise fail("collector is missing")
    origin = raw.get("origin")
    if origin not in ORIGINS:
        raise fail(f"origin must be one of {ORIGINS}")
    buckets = raw.get("buckets", [])
    if (mtype == "histogram") != bool(buckets):
        raise fail("histograms, and only histograms, list their bucket bounds")
    numeric = all(isinstance(b, int | float) for b in buckets)
    if buckets and (not numeric or list(buckets) != sorted(set(buckets))):
        raise fail("buckets must be strictly increasing numbers")
    return MetricSpec(
        name=name, type=mtype, help=help_text.strip(), labels=tuple(labels), collector=collector,
        origin=origin, unit=unit, buckets=tuple(float(b) for b in buckets),
    )


def parse(document: Any) -> Catalog:
    """Validate a parsed catalog document and return it as a Catalog."""
    if not isinstance(document, dict) or document.get("version") != 1:
        raise CatalogError("the catalog must be a mapping with version: 1")
    labels = document.get("labels")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in labels.items()
    ):
        raise CatalogError("labels must map each label name to its cardinality note")
    entries = document.get("metrics")
    if not isinstance(entries, list) or not entries:
        raise CatalogError("metrics must be a non-empty list")
    metrics: dict[str, MetricSpec] = {}
    for raw in entries:
        spec = _check_entry(raw, labels)
        if spec.name in metrics:
            raise CatalogError(f"metric {spec.name}: listed twice")
        metrics[spec.name] = spec
    return Catalog(metrics=metrics, labels=dict(labels))


@cache
def default() -> Catalog:
    return parse(json.loads(COMPILED.read_text(encoding="utf-8")))
