"""Dashboard and alert definitions: the generators' part of catalog.yaml.

The top-level sections `settings`, `dashboard`, `alerts` and `unused` of catalog.yaml, which the
plugin never reads. parse_views() validates them against the metrics, applies a user's overrides
and renders every template, so dashboards/generate.py and alerts/generate.py only lay out what
it returns: a new panel or alert is a catalog edit, never a generator edit.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
from tqmon.catalog import SOURCE, Catalog, CatalogError, MetricSpec, parse

from .catalog_source import read_yaml

PANEL_TYPES = ("stat", "timeseries", "state-timeline", "heatmap")
PANEL_UNITS = ("short", "none", "bytes", "s", "ops", "cps", "percentunit")
GRAFANA_UNITS = {"": "short", "bytes": "bytes", "seconds": "s"}  # catalog unit -> Grafana unit
PANEL_SIZES = {"stat": (3, 4)}  # default (width, height) in grid units; others (8, 8)
SEVERITIES = ("critical", "warning", "info")
# Labels the scrape adds (Prometheus: job, instance; Telegraf: host): any selector may use them.
# They name the agent that reported a series, not the fact: several agents (Telegraf on every
# host, an HA pair) report the same fleet, so every query of a fleet fact drops them first.
AGENT_LABELS = frozenset({"job", "instance", "host"})
# `<< fleet >> (x)`: one series per fact whoever reported it. max: agents read the same Redis, so
# their copies agree; when one agent cannot reach a node, the one that can is believed.
FLEET = "max without (instance, job, host)"
# The dashboard's variables, as `sel` (every series) and `node_sel` (series with cluster_name)
# render there; in the alert rules both are the user's selector.
DASHBOARD_SELECTORS = {
    "sel": 'job=~"$job", instance=~"$instance"',
    "node_sel": 'job=~"$job", instance=~"$instance", cluster_name=~"$cluster_name"',
}
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_ANCHOR = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_OVERRIDE_KEYS = {"selector", "runbook_base_url", "params", "all_alerts", "alerts", "slos"}
_ALERT_OVERRIDE_KEYS = {"for", "severity", "enabled"}


@dataclass(frozen=True)
class PanelSpec:
    title: str
    type: str
    unit: str  # Grafana unit: the panel's own, else its first metric's catalog unit
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    width: int
    height: int
    description: str = ""
    thresholds: tuple[tuple[float, str], ...] = ()  # (from value, colour), ascending
    states: tuple[tuple[str, str, str], ...] = ()  # (value, text, colour) for state panels
    metrics: frozenset[str] = frozenset()
    alerts: tuple[str, ...] = ()  # the alerts that fire on what the panel shows
    no_data: str = ""  # what the panel says when it has no series (an unused feature)


@dataclass(frozen=True)
class AlertSpec:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    runbook_url: str
    metrics: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Views:
    """The dashboard and alert definitions, overrides applied and every template rendered."""

    uid: str
    title: str
    tags: tuple[str, ...]
    selector: str
    runbook_url: str
    rows: tuple[tuple[str, tuple[PanelSpec, ...]], ...]
    alerts: tuple[AlertSpec, ...]
    unused: dict[str, str]
    # What devtools/slos.py reads: the catalog document, the overrides, the selector's labels.
    source: Any = None
    overrides: Any = None
    free_labels: frozenset[str] = frozenset()

    @property
    def metrics(self) -> set[str]:
        """Catalog metrics some panel or alert reads."""
        used = {m for _, panels in self.rows for p in panels for m in p.metrics}
        return used | {m for a in self.alerts for m in a.metrics}


# Grafana's interval variables stand where PromQL wants a duration ([$__rate_interval]); any
# duration reads the same metrics and labels, so the parser is shown one in their place.
_GRAFANA_DURATION = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|"
                               r"__interval|__range)\}")


@dataclass(frozen=True)
class PromQLRefs:
    selectors: tuple[tuple[str, frozenset[str]], ...]  # (metric or "", labels it matches on)
    grouping: frozenset[str]  # labels in by/without/on/ignoring/group_left/group_right


def promql_refs(expr: str) -> PromQLRefs:
    """The metric names and label names a PromQL expression uses, read by promql-parser (the
    Rust port of Prometheus's own parser): selectors in the order they appear."""
    try:
        tree = promql_parser.parse(_GRAFANA_DURATION.sub("5m", expr))
    except ValueError as exc:
        raise CatalogError(f"not PromQL: {exc}") from None
    selectors: list[tuple[str, frozenset[str]]] = []
    grouping: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            alternatives = [node.matchers.matchers, *node.matchers.or_matchers]
            selectors.append((node.name or "",
                              frozenset(m.name for group in alternatives for m in group)))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                grouping.update(node.modifier.matching.labels)
            grouping.update(node.modifier.group_labels or ())

    promql_parser.walk(tree, visit)
    return PromQLRefs(tuple(selectors), frozenset(grouping))


# Aggregations that give the same answer for one copy of a series or several.
_IDEMPOTENT = {"max", "min", "avg", "group"}


def agent_copies(expr: str, cat: Catalog) -> list[str]:
    """The fleet metrics in `expr` that are not first reduced to one series per fact.

    Several agents report the same fleet; a fleet metric (anything not tqmon_*) must reach a
    sum, count or comparison only through an idempotent aggregation (max, min, avg) that drops
    every agent label. Returns the metric names read without one, in order.
    """
    tree = promql_parser.parse(_GRAFANA_DURATION.sub("5m", expr))
    found: list[str] = []
    enclosing: list[Any] = []

    def drops_agents(node: Any) -> bool:
        modifier = node.modifier
        if str(node.op) not in _IDEMPOTENT:
            return False
        if modifier is None:
            return True
        if modifier.type == promql_parser.AggModifierType.Without:
            return set(modifier.labels) >= AGENT_LABELS
        return not AGENT_LABELS & set(modifier.labels)

    def enter(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or ""
            spec = _resolve(name, cat)
            fleet = spec is not None and not spec[0].name.startswith("tqmon_")
            aggregations = [n for n in enclosing if isinstance(n, promql_parser.AggregateExpr)]
            if fleet and not (aggregations and drops_agents(aggregations[-1])):
                found.append(name)
        enclosing.append(node)

    def leave(node: Any) -> None:
        enclosing.pop()

    promql_parser.walk(tree, enter, leave)
    return found


def _resolve(name: str, cat: Catalog) -> tuple[MetricSpec, set[str]] | None:
    """The catalog entry behind a series name (histograms' _bucket/_sum/_count included)."""
    if name in cat:
        return cat[name], set()
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in cat and cat[base].type == "histogram":
            return cat[base], ({"le"} if suffix == "_bucket" else set())
    return None


def check_expr(expr: str, cat: Catalog,
               free_labels: frozenset[str] = frozenset()) -> frozenset[str]:
    """The catalog metrics a PromQL expression reads; CatalogError if it names anything else.

    A label is allowed on a metric when the catalog gives it that label, or Prometheus adds it
    (job, instance), or the user's selector names it (free_labels: target labels of their own).
    """
    refs = promql_refs(expr)
    if not refs.selectors:
        raise CatalogError("reads no metric")
    used: set[str] = set()
    known = set(AGENT_LABELS | free_labels)
    for name, labels in refs.selectors:
        found = _resolve(name, cat) if name else None
        if found is None:
            raise CatalogError(f"{name or 'a selector without a name'} is not in the catalog")
        spec, extra = found
        allowed = set(spec.labels) | extra | AGENT_LABELS | free_labels
        if bad := labels - allowed:
            raise CatalogError(f"{name} has no label {', '.join(sorted(bad))}")
        used.add(spec.name)
        known |= allowed
    if bad := refs.grouping - known:
        raise CatalogError(f"groups on {', '.join(sorted(bad))}, a label none of its metrics has")
    return frozenset(used)


def rise(series: str, window: str) -> str:
    """PromQL for how much a counter kept in Redis rose over `window`, ignoring drops.

    A failover that lost the last writes, or a restore from a backup, can lower such a counter;
    increase() reads a drop as a reset and adds the whole new value, a burst that never
    happened. The rise from the window's lowest sample counts real increments, also the ones
    after a drop, and every sample in the range takes part, so a failed scrape in between
    loses nothing.
    """
    return f"({series} - min_over_time({series}[{window}]))"


_FUNCTIONS = {"fleet": FLEET, "rise": rise}


@cache
def _template_env() -> Any:
    """Jinja2 with << >> delimiters: PromQL, Grafana legends and Prometheus's own alert
    templates ({{ $value }}) all use braces, and must come through untouched."""
    import jinja2

    env = jinja2.Environment(
        variable_start_string="<<", variable_end_string=">>", block_start_string="<%",
        block_end_string="%>", comment_start_string="<#", comment_end_string="#>",
        undefined=jinja2.StrictUndefined, autoescape=False,
    )
    env.filters["percent"] = lambda value: f"{value * 100:g}%"
    return env


def _render(text: str, context: dict[str, Any], where: str) -> str:
    import jinja2

    try:
        return _template_env().from_string(text).render(context).strip()
    except jinja2.TemplateError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _need(ok: bool, where: str, why: str) -> None:
    if not ok:
        raise CatalogError(f"{where}: {why}")


def _mapping(value: Any, where: str, keys: set[str] | None = None,
             required: frozenset[str] | set[str] = frozenset()) -> dict[Any, Any]:
    """value as a mapping with only `keys` (any keys when None) and all of `required`."""
    _need(isinstance(value, dict), where, "must be a mapping")
    if keys is not None:
        _need(not (set(value) - keys), where, f"unknown keys {sorted(set(value) - keys)}")
    _need(not (required - set(value)), where, f"missing keys {sorted(required - set(value))}")
    return value


def _text(value: Any, where: str) -> str:
    _need(isinstance(value, str) and bool(value.strip()), where, "must be a non-empty string")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _settings(raw: Any, overrides: Any) -> tuple[str, str, dict[str, Any], dict[str, dict]]:
    """Selector, runbook base URL, params and per-alert overrides, the user's file applied."""
    keys = {"selector", "runbook_base_url", "params"}
    settings = _mapping(raw, "settings", keys, keys)
    params = dict(_mapping(settings["params"], "settings.params"))
    for name, value in params.items():
        _need(_is_number(value) or (isinstance(value, str) and bool(_DURATION.match(value))),
              f"settings.params.{name}", "must be a number or a duration such as 5m")
    _need(not isinstance(overrides, dict) or "runbook_url" not in overrides, "overrides",
          "runbook_url is now runbook_base_url (the runbook's address, without #anchor)")
    over = _mapping({} if overrides is None else overrides, "overrides", _OVERRIDE_KEYS)
    for name, value in (over.get("params") or {}).items():
        where = f"overrides: params.{name}"
        _need(name in params, where, f"no such param; known: {', '.join(sorted(params))}")
        same = _is_number(value) if _is_number(params[name]) else \
            isinstance(value, str) and bool(_DURATION.match(value))
        _need(same, where, f"must be like the default {params[name]!r}")
        params[name] = value
    selector = _text(over.get("selector", settings["selector"]), "selector")
    runbook_url = _text(over.get("runbook_base_url", settings["runbook_base_url"]),
                        "runbook_base_url")
    _need("#" not in runbook_url, "runbook_base_url", "no #anchor: each alert adds its own")
    per_alert = {name: dict(_mapping(value, f"overrides: alerts.{name}", _ALERT_OVERRIDE_KEYS))
                 for name, value in (over.get("alerts") or {}).items()}
    everyone = _mapping(over.get("all_alerts") or {}, "overrides: all_alerts", _ALERT_OVERRIDE_KEYS)
    per_alert["*"] = dict(everyone)
    return selector, runbook_url, params, per_alert


def _alerts_line(names: list[str], alerts: dict[str, AlertSpec | None]) -> str:
    """The description's last line: the enabled alerts on the panel, linked to their runbook
    sections, so the person on call goes from the panel to what to do in one click."""
    links = [f"[{a.name}]({a.runbook_url}) ({a.severity})"
             for a in (alerts[n] for n in names) if a is not None]
    return "Alerts: " + ", ".join(links) + "." if links else "No alert fires on this panel."


def _panel(raw: Any, where: str, context: dict[str, Any], cat: Catalog,
           value_maps: dict[str, Any], free: frozenset[str],
           alerts: dict[str, AlertSpec | None]) -> PanelSpec:
    """One panel. `alerts` holds every catalog alert by name (None when an override disabled
    it): a panel names the alerts that fire on it, and must show a metric each of them reads."""
    keys = {"title", "type", "targets", "unit", "width", "height", "description", "thresholds",
            "states", "alerts", "no_data"}
    raw = _mapping(raw, where, keys, {"title", "type", "targets", "description"})
    where = f"{where} ({raw['title']})"
    _need(raw["type"] in PANEL_TYPES, where, f"type must be one of {PANEL_TYPES}")
    _need(isinstance(raw["targets"], list) and bool(raw["targets"]), where, "targets: a list")
    targets, metrics = [], set()
    for n, target in enumerate(raw["targets"]):
        target = _mapping(target, f"{where} target {n}", {"expr", "legend"}, {"expr"})
        expr = _render(_text(target["expr"], f"{where} expr"), context, where)
        try:
            metrics |= check_expr(expr, cat, free)
        except CatalogError as exc:
            raise CatalogError(f"{where}: {exc}") from None
        targets.append((expr, str(target.get("legend", ""))))
    first = _resolve(promql_refs(targets[0][0]).selectors[0][0], cat)
    unit = raw.get("unit", GRAFANA_UNITS[first[0].unit] if first else "short")
    _need(unit in PANEL_UNITS, where, f"unit must be one of {PANEL_UNITS}")
    width, height = PANEL_SIZES.get(raw["type"], (8, 8))
    width, height = raw.get("width", width), raw.get("height", height)
    _need(isinstance(width, int) and 1 <= width <= 24, where, "width: 1 to 24 grid columns")
    _need(isinstance(height, int) and height >= 1, where, "height: a positive integer")
    thresholds = []
    for colour, value in _mapping(raw.get("thresholds", {}), f"{where} thresholds").items():
        rendered = _render(str(value), context, where)
        try:
            thresholds.append((float(rendered), str(colour)))
        except ValueError:
            raise CatalogError(f"{where}: threshold {colour} is not a number: {rendered}") from None
    states = ()
    if "states" in raw:
        _need(raw["states"] in value_maps, where, f"states: one of {sorted(value_maps)}")
        states = value_maps[raw["states"]]
    names = raw.get("alerts", [])
    _need(isinstance(names, list) and all(n in alerts for n in names), where,
          f"alerts: a list of alert names, from {sorted(alerts)}")
    for name in names:
        alert = alerts[name]
        _need(alert is None or bool(alert.metrics & metrics), where,
              f"alerts: {name} reads none of the panel's metrics")
    description = " ".join(_render(_text(raw["description"], where), context, where).split())
    return PanelSpec(
        title=_text(raw["title"], where), type=raw["type"], unit=unit, targets=tuple(targets),
        width=width, height=height,
        description=f"{description}\n\n{_alerts_line(names, alerts)}",
        thresholds=tuple(sorted(thresholds)), states=states, metrics=frozenset(metrics),
        alerts=tuple(n for n in names if alerts[n] is not None),
        no_data=_text(raw["no_data"], where) if "no_data" in raw else "",
    )


def _alert(raw: Any, where: str, context: dict[str, Any], cat: Catalog, runbook_url: str,
           override: dict[str, Any], free: frozenset[str]) -> AlertSpec | None:
    keys = {"name", "expr", "for", "severity", "summary", "description", "runbook"}
    raw = {**_mapping(raw, where, keys, keys), **override}
    name = raw["name"]
    where = f"alert {name}"
    _need(isinstance(name, str) and bool(_ALERT_NAME.match(name)), where, "name: CamelCase")
    _need(raw["severity"] in SEVERITIES, where, f"severity must be one of {SEVERITIES}")
    _need(isinstance(raw["for"], str) and bool(_DURATION.match(raw["for"])), where,
          "for: a duration such as 5m")
    _need(isinstance(raw["runbook"], str) and bool(_ANCHOR.match(raw["runbook"])), where,
          "runbook: the anchor of its section in docs/runbook.md")
    _need(isinstance(raw.get("enabled", True), bool), where, "enabled: true or false")
    expr = _render(_text(raw["expr"], where), context, where)
    try:
        metrics = check_expr(expr, cat, free)
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    if not raw.get("enabled", True):
        return None
    return AlertSpec(
        name=name, expr=expr, for_=raw["for"], severity=raw["severity"],
        summary=" ".join(_render(_text(raw["summary"], where), context, where).split()),
        description=" ".join(_render(_text(raw["description"], where), context, where).split()),
        runbook_url=f"{runbook_url}#{raw['runbook']}", metrics=metrics,
    )


def parse_views(document: Any, overrides: Any = None) -> Views:
    """Validate the catalog's dashboard and alert sections, apply overrides, render them.

    `overrides` is the user's overrides document (alerts/overrides.example.yaml shows every key).
    """
    cat = parse(document)
    for section in ("settings", "dashboard", "alerts"):
        _need(section in document, "catalog", f"the {section} section is missing")
    selector, runbook_url, params, per_alert = _settings(document["settings"], overrides)
    try:  # under a name: on its own, {env=~".*"} is refused as matching everything
        matchers = promql_refs("selector{" + selector + "}").selectors
    except CatalogError:
        matchers = ()
    _need(len(matchers) == 1 and matchers[0][0] == "selector", "selector",
          'label matchers only, such as job="tqmon"')
    free = matchers[0][1]
    dash = _mapping(document["dashboard"], "dashboard",
                    {"uid", "title", "tags", "value_maps", "rows"}, {"uid", "title", "rows"})
    value_maps = {}
    for map_name, entries in _mapping(dash.get("value_maps", {}), "dashboard.value_maps").items():
        _need(isinstance(entries, list) and all(isinstance(e, list) and len(e) == 3
                                                for e in entries),
              f"dashboard.value_maps.{map_name}", "a list of [value, text, colour]")
        value_maps[map_name] = tuple((str(v), str(t), str(c)) for v, t, c in entries)
    alert_context = {"sel": selector, "node_sel": selector, **_FUNCTIONS, "p": params}
    _need(isinstance(document["alerts"], list), "alerts", "must be a list")
    names = [a.get("name") for a in document["alerts"] if isinstance(a, dict)]
    _need(len(names) == len(set(names)), "alerts", "an alert name is listed twice")
    for name in sorted(set(per_alert) - set(names) - {"*"}):
        raise CatalogError(f"overrides: alerts.{name}: no such alert")
    alerts = [_alert(a, f"alert {n}", alert_context, cat, runbook_url,
                     {**per_alert["*"], **per_alert.get(a.get("name"), {})}, free)
              for n, a in enumerate(document["alerts"])]
    by_name = {name: next((a for a in alerts if a and a.name == name), None) for name in names}
    context = {**DASHBOARD_SELECTORS, **_FUNCTIONS, "p": params}
    rows = []
    _need(isinstance(dash["rows"], list) and bool(dash["rows"]), "dashboard.rows", "a list")
    for r, row in enumerate(dash["rows"]):
        row = _mapping(row, f"dashboard row {r}", {"title", "panels"}, {"title", "panels"})
        _need(isinstance(row["panels"], list) and bool(row["panels"]), f"row {row['title']}",
              "panels: a non-empty list")
        rows.append((_text(row["title"], f"dashboard row {r}"), tuple(
            _panel(p, f"row {row['title']} panel {n}", context, cat, value_maps, free, by_name)
            for n, p in enumerate(row["panels"]))))
    unused = dict(_mapping(document.get("unused") or {}, "unused"))
    for name, reason in unused.items():
        _need(name in cat, f"unused.{name}", "not a catalog metric")
        _text(reason, f"unused.{name}")
    return Views(
        uid=_text(dash["uid"], "dashboard.uid"), title=_text(dash["title"], "dashboard.title"),
        tags=tuple(str(t) for t in dash.get("tags", [])), selector=selector,
        runbook_url=runbook_url, rows=tuple(rows), alerts=tuple(a for a in alerts if a),
        unused=unused, source=document, overrides=overrides, free_labels=free,
    )


def load_views(path: Path = SOURCE, overrides_path: Path | None = None) -> Views:
    """parse_views() for a catalog file and an optional overrides YAML file."""
    overrides = None
    if overrides_path is not None:
        import yaml

        try:
            overrides = yaml.safe_load(Path(overrides_path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogError(f"overrides file {overrides_path}: {exc}") from None
    return parse_views(read_yaml(path), overrides)


def generator_main(prog: str, render: Callable[[Views], str], default_output: Path,
                   argv: list[str] | None = None) -> int:
    """The command line both generators share: render from the catalog (and overrides) into
    --output, or with --check only compare. Exit 0 ok, 1 stale, 2 catalog or overrides error."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--catalog", type=Path, default=SOURCE)
    parser.add_argument("--overrides", type=Path, help="YAML of settings to override "
                        "(alerts/overrides.example.yaml)")
    parser.add_argument("--output", type=Path, default=default_output)
    parser.add_argument("--check", action="store_true", help="exit 1 if --output is stale")
    args = parser.parse_args(argv)
    try:
        text = render(load_views(args.catalog, args.overrides))
    except CatalogError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is stale: run `make dashboards`", file=sys.stderr)
            return 1
    elif current != text:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0
