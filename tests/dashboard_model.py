"""Is a dashboard Grafana's current model, laid out as Grafana lays it out?

Two kinds of check, each returning its problems as lines (empty: none):
- schema_problems: Grafana's published dashboard schema (tests/grafana-schema/, JSON Schema
  derived from @grafana/schema's types), which knows keys and types but not the grid;
- our own: layout_problems (every panel inside the 24-column grid, none overlapping another,
  ids unique), variable_problems (every $variable a query, legend, title or datasource uses is
  a dashboard variable or one of Grafana's own), deprecated_panels (panel types current Grafana
  no longer draws: the Angular plugins removed in Grafana 11).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = Path(__file__).resolve().parent / "grafana-schema" / "dashboard.schema.json"
SCHEMA_VERSION = 42  # @grafana/schema 13.2.3's defaultDashboard.schemaVersion
GRID_COLUMNS = 24
LEGACY_KEYS = ("rows", "hideControls", "sharedCrosshair", "style", "__inputs", "gnetId")
# Angular panels, removed in Grafana 11 (shown as "panel plugin not found"), and the old
# heatmap/graph ids Grafana migrates away from.
DEPRECATED_TYPES = frozenset({
    "graph", "singlestat", "table-old", "grafana-singlestat-panel", "grafana-piechart-panel",
    "grafana-worldmap-panel", "grafana-clock-panel-angular", "natel-discrete-panel",
    "flant-statusmap-panel", "heatmap-old", "graph-old", "vonage-status-panel",
})
# Variables Grafana defines itself (global variables and the "All" value).
BUILTIN_VARIABLES = frozenset({
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
    "__from", "__to", "__now", "__dashboard", "__org", "__user", "__name", "__all", "timeFilter",
    "__timeFilter", "__auto", "__auto_interval",
})
# $name, ${name}, ${name:format}, [[name]] (Grafana's three syntaxes).
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]")


@cache
def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def all_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", []) if panel.get("type") == "row" else ()


def schema_problems(dashboard: dict) -> list[str]:
    """Grafana's schema, the legacy top-level keys and the schemaVersion."""
    problems = []
    for error in _validator().iter_errors(dashboard):
        # a panel is Panel or RowPanel: name the branch that fits the panel's type
        errors = error.context or [error]
        path = "/".join(str(p) for p in error.absolute_path)
        detail = sorted({e.message[:160] for e in errors if "'row' was expected" not in e.message
                         and "is a required property" not in e.message}) or [error.message[:160]]
        problems.append(f"schema: {path or '(top)'}: {'; '.join(detail)}")
    problems += [f"legacy key {key}" for key in LEGACY_KEYS if key in dashboard]
    if dashboard.get("schemaVersion") != SCHEMA_VERSION:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')}, not {SCHEMA_VERSION}")
    return problems


def layout_problems(dashboard: dict) -> list[str]:
    """Inside the grid, no two panels on one cell, unique ids."""
    problems: list[str] = []
    taken: dict[tuple[int, int], str] = {}
    ids: dict[Any, str] = {}
    for panel in all_panels(dashboard):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            problems.append(f"panel {title!r}: id {panel.get('id')} is also {ids[panel['id']]!r}")
        ids.setdefault(panel.get("id"), title)
        pos = panel.get("gridPos") or {}
        x, y, w, h = (pos.get(k) for k in "xywh")
        if not all(isinstance(v, int) for v in (x, y, w, h)):
            problems.append(f"panel {title!r}: gridPos {pos} is not four integers")
            continue
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > GRID_COLUMNS:
            problems.append(f"panel {title!r}: gridPos x={x} w={w} y={y} h={h} is outside the "
                            f"{GRID_COLUMNS}-column grid")
            continue
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            if cell in taken:
                problems.append(f"panel {title!r} overlaps {taken[cell]!r} at column {cell[0]}, "
                                f"row {cell[1]}")
                break
            taken[cell] = title
    return problems


def _interpolated(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, text) for every text Grafana interpolates variables into."""
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, str):
            yield f"variable {variable.get('name')!r}", query
        yield f"variable {variable.get('name')!r}", str((variable.get("datasource") or {})
                                                        .get("uid", ""))
    for panel in all_panels(dashboard):
        where = f"panel {panel.get('title', '?')!r}"
        yield where, panel.get("title", "")
        yield where, str((panel.get("datasource") or {}).get("uid", ""))
        for target in panel.get("targets", []):
            for key in ("expr", "legendFormat"):
                yield f"{where} target {target.get('refId')}", str(target.get(key, ""))
            yield where, str((target.get("datasource") or {}).get("uid", ""))


def variable_problems(dashboard: dict) -> list[str]:
    """Every variable used is defined (by the dashboard, or by Grafana itself)."""
    defined = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    problems = []
    for where, text in _interpolated(dashboard):
        for match in _VARIABLE.finditer(text):
            name = next(g for g in match.groups() if g)
            if name.isdigit():  # a regex group in label_replace's replacement ("$1")
                continue
            if name not in defined and name not in BUILTIN_VARIABLES:
                problems.append(f"{where}: ${name} is not a dashboard variable")
    return problems


def deprecated_panels(dashboard: dict) -> list[str]:
    return [f"panel {p.get('title', '?')!r}: type {p['type']} is deprecated"
            for p in all_panels(dashboard) if p.get("type") in DEPRECATED_TYPES]


def problems(dashboard: dict) -> list[str]:
    """Everything wrong with a dashboard, by every check above."""
    return (schema_problems(dashboard) + layout_problems(dashboard)
            + variable_problems(dashboard) + deprecated_panels(dashboard))
