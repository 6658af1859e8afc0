"""grafana/dashboard-linter's rules, re-implemented over promql-parser.

The linter (used in CI by the monitoring mixins) is a Go binary that cannot be installed here;
its rules are public and small. Each function below checks what the linter's documentation says
its rule checks, written from that description, not from the linter's code. Where the linter
restricts a rule to some panel types (graph, stat, timeseries...), every panel is held to it:
a heatmap or a state timeline needs a description and a unit as much as a graph does.

Exceptions live in a `.lint` file beside the dashboards, in the linter's own format:

    exclusions:
      panel-units-rule:
        reason: why the rule does not apply
        entries:            # optional: without entries, the rule is off for every dashboard
          - dashboard: tqmon - task queue and Redis
            panel: Some panel
            targetIdx: 0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser
import yaml

# Grafana's interval variables stand where PromQL wants a duration. Each becomes a duration no
# dashboard writes by hand, so target-rate-interval-rule can tell $__rate_interval from [5m].
TIME_VARIABLES = {"__rate_interval": 7919, "__interval": 7907, "__interval_ms": 7901,
                  "__range": 7883, "__range_s": 7879, "__range_ms": 7877}
RATE_INTERVAL = timedelta(seconds=TIME_VARIABLES["__rate_interval"])
# $var, ${var} and [[var]]; a variable right after a quote is a matcher value ("$job") and is
# left alone, so the job and instance rules see it.
_VARIABLE = re.compile(r'"?\$(\w+)|"?\$\{([^}]+)\}|\[\[([^\[\]]+)\]\]')
# The functions of Grafana's Prometheus query variables.
_VARIABLE_QUERY = re.compile(r"^\s*(label_names|label_values|metrics|query_result)\((.*)\)\s*$",
                             re.S)
_COUNTER_FUNCTIONS = {"rate", "irate", "increase"}
_RATE_FUNCTIONS = {"rate", "irate"}
# Grafana's unit ids (packages/grafana-data valueFormats) that a Prometheus dashboard may use;
# a unit outside this list is a typo Grafana would show as a bare number.
VALID_UNITS = frozenset({
    "none", "string", "short", "percent", "percentunit", "sci", "locale", "hex", "hex0x",
    "bytes", "decbytes", "bits", "decbits", "kbytes", "deckbytes", "mbytes", "decmbytes",
    "gbytes", "decgbytes",
    "Bps", "binBps", "bps", "binbps", "KBs", "KiBs", "MBs", "MiBs", "GBs", "GiBs", "pps",
    "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "dthms", "dtdhms",
    "clockms", "clocks", "timeticks", "hertz",
    "dateTimeAsIso", "dateTimeAsUS", "dateTimeFromNow", "dateTimeAsLocal", "dateTimeAsSystem",
    "ops", "reqps", "rps", "wps", "iops", "cps", "opm", "rpm", "wpm", "cpm",
    "bool", "bool_yes_no", "bool_on_off",
})


@dataclass(frozen=True)
class Problem:
    rule: str
    dashboard: str
    message: str
    panel: str | None = None
    target: int | None = None

    def __str__(self) -> str:
        where = f"panel {self.panel!r}" if self.panel is not None else "dashboard"
        if self.target is not None:
            where += f" target {self.target}"
        return f"{self.rule}: {where}: {self.message}"


def expand(expr: str) -> str:
    """The query as the PromQL parser must see it: variables replaced by placeholders."""
    def placeholder(match: re.Match[str]) -> str:
        text = match[0]
        if text.startswith('"'):
            return text
        name = match[1] or match[2] or match[3]
        if name in TIME_VARIABLES:
            return f"{TIME_VARIABLES[name]}s"
        return "grafana_var_" + re.sub(r"\W", "_", name)

    return _VARIABLE.sub(placeholder, expr)


def parse(expr: str) -> Any:
    """The expanded query's syntax tree; ValueError when it is not PromQL."""
    return promql_parser.parse(expand(expr))


def walk(tree: Any) -> Iterator[tuple[Any, list[Any]]]:
    """Every node with the nodes enclosing it, outermost first."""
    found: list[tuple[Any, list[Any]]] = []
    enclosing: list[Any] = []

    def enter(node: Any) -> None:
        found.append((node, list(enclosing)))
        enclosing.append(node)

    def leave(node: Any) -> None:
        enclosing.pop()

    promql_parser.walk(tree, enter, leave)
    return iter(found)


def _query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else str(query or "")


def _uid(datasource: Any) -> str:
    return datasource.get("uid", "") if isinstance(datasource, dict) else str(datasource or "")


def _datasource_variables(dashboard: dict) -> list[dict]:
    return [v for v in dashboard.get("templating", {}).get("list", [])
            if v.get("type") == "datasource"]


def _prometheus(dashboard: dict) -> bool:
    """The target and template rules apply to Prometheus dashboards: the linter's test is a
    datasource variable of type prometheus."""
    return any(_query(v) == "prometheus" for v in _datasource_variables(dashboard))


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel but rows, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


# --- dashboard rules: yield (message) -------------------------------------------------------

def template_datasource(d: dict) -> Iterator[str]:
    """One datasource variable, named `datasource` and labelled "Data source" (with several:
    `<type>_datasource`, "<Type> data source")."""
    found = _datasource_variables(d)
    if not found:
        yield "no datasource variable"
    for v in found:
        kind = _query(v)
        names = {f"{kind.lower()}_datasource"} | ({"datasource"} if len(found) == 1 else set())
        labels = {f"{kind.title()} data source"} | ({"Data source"} if len(found) == 1 else set())
        if v.get("name") not in names:
            yield f"datasource variable named {v.get('name')!r}, not one of {sorted(names)}"
        if v.get("label") not in labels:
            yield f"datasource variable labelled {v.get('label')!r}, not one of {sorted(labels)}"


def _template_for(label: str) -> Callable[[dict], Iterator[str]]:
    def rule(d: dict) -> Iterator[str]:
        if not _prometheus(d):
            return
        v = next((v for v in d.get("templating", {}).get("list", []) if v.get("name") == label),
                 None)
        if v is None:
            yield f"no {label} variable"
            return
        if _uid(v.get("datasource")) not in ("$datasource", "${datasource}"):
            yield f"{label} variable reads {_uid(v.get('datasource'))!r}, not $datasource"
        match = _VARIABLE_QUERY.match(_query(v))
        if v.get("type") != "query" or not match or match[1] != "label_values" \
                or match[2].rpartition(",")[2].strip() != label:
            yield f"{label} variable is not a label_values(..., {label}) query"
        if v.get("label") != label.title():
            yield f"{label} variable labelled {v.get('label')!r}, not {label.title()!r}"
        if not v.get("multi"):
            yield f"{label} variable is not multi-select"
        if v.get("allValue") != ".+":
            yield f"{label} variable's allValue is {v.get('allValue')!r}, not '.+'"
    rule.__doc__ = f"""A `{label}` query variable on $datasource: label_values(..., {label}),
    labelled "{label.title()}", multi-select, "All" = `.+`."""
    return rule


def template_label_promql(d: dict) -> Iterator[str]:
    """Every query variable is one of Grafana's Prometheus functions over valid PromQL."""
    if not _prometheus(d):
        return
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        match = _VARIABLE_QUERY.match(_query(v))
        if not match:
            yield f"variable {v.get('name')}: {_query(v)!r} is not a Grafana Prometheus query"
            continue
        function, argument = match[1], match[2].strip()
        if function == "label_values":  # label_values([selector,] label)
            argument = argument.rpartition(",")[0].strip()
        if function == "metrics" or not argument:
            continue
        try:
            parse(argument)
        except ValueError as exc:
            yield f"variable {v.get('name')}: not PromQL: {exc}"


def template_on_time_change_reload(d: dict) -> Iterator[str]:
    """Query variables reload on time range change (refresh 2): values stay current."""
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query" and v.get("refresh") != 2:
            yield f"variable {v.get('name')} refresh is {v.get('refresh')!r}, not 2"


def uneditable_dashboard(d: dict) -> Iterator[str]:
    """editable: false (a provisioned dashboard loses UI edits)."""
    if d.get("editable", True) is not False:
        yield "the dashboard is editable"


# --- panel rules: yield (message) -------------------------------------------------------------

def panel_datasource(d: dict, p: dict) -> Iterator[str]:
    """The panel and its queries read a datasource variable, never a fixed datasource."""
    allowed = {f"${v.get('name')}" for v in _datasource_variables(d)}
    allowed |= {f"${{{v.get('name')}}}" for v in _datasource_variables(d)}
    sources = [p.get("datasource")] + [t["datasource"] for t in p.get("targets") or []
                                        if t.get("datasource")]
    for uid in {_uid(s) for s in sources} - allowed:
        yield f"reads datasource {uid!r}, not a datasource variable"


def panel_title_description(d: dict, p: dict) -> Iterator[str]:
    """A title and a description."""
    if not str(p.get("title") or "").strip() or not str(p.get("description") or "").strip():
        yield "no title or no description"


def panel_units(d: dict, p: dict) -> Iterator[str]:
    """A unit Grafana knows, in the defaults and in every override."""
    field_config = p.get("fieldConfig") or {}
    units = [(field_config.get("defaults") or {}).get("unit")]
    units += [prop.get("value") for o in field_config.get("overrides") or []
              for prop in o.get("properties") or [] if prop.get("id") == "unit"]
    for unit in units:
        if unit not in VALID_UNITS:
            yield f"unit {unit!r} is missing or not a Grafana unit"


def panel_no_targets(d: dict, p: dict) -> Iterator[str]:
    """At least one query."""
    if not p.get("targets"):
        yield "no targets"


# --- target rules: yield (message) -----------------------------------------------------------

def target_promql(d: dict, p: dict, t: dict) -> Iterator[str]:
    """The query is PromQL once Grafana's variables are filled in."""
    if not str(t.get("expr") or "").strip():
        yield "empty query"
        return
    try:
        parse(t["expr"])
    except ValueError as exc:
        yield f"not PromQL: {exc}"


def _selectors(t: dict) -> Iterator[Any]:
    try:
        tree = parse(t.get("expr") or "")
    except ValueError:
        return  # target-promql-rule reports it
    for node, _ in walk(tree):
        if isinstance(node, promql_parser.VectorSelector):
            yield node


def target_rate_interval(d: dict, p: dict, t: dict) -> Iterator[str]:
    """rate() and irate() take [$__rate_interval]: at least four scrapes, whatever the zoom."""
    try:
        tree = parse(t.get("expr") or "")
    except ValueError:
        return
    for node, parents in walk(tree):
        if not isinstance(node, promql_parser.MatrixSelector) or node.range == RATE_INTERVAL:
            continue
        parent = parents[-1] if parents else None
        if isinstance(parent, promql_parser.Call) and parent.func.name in _RATE_FUNCTIONS:
            yield f"{parent.func.name}() over [{promql_parser.display_duration(node.range)}], " \
                  "not [$__rate_interval]"


def _target_matcher(label: str) -> Callable[[dict, dict, dict], Iterator[str]]:
    def rule(d: dict, p: dict, t: dict) -> Iterator[str]:
        if not _prometheus(d):
            return
        for selector in _selectors(t):
            groups = [selector.matchers.matchers, *selector.matchers.or_matchers]
            for group in groups:
                if not any(m.name == label and m.op == promql_parser.MatchOp.Re
                           and m.value in (f"${label}", f"${{{label}}}") for m in group):
                    yield f"{selector.name or 'a selector'} has no {label}=~\"${label}\""
    rule.__doc__ = f"""Every selector carries {label}=~"${label}": the variable filters it."""
    return rule


def target_counter_agg(d: dict, p: dict, t: dict) -> Iterator[str]:
    """A counter (a name ending in _total) is read only through rate(), irate() or increase()
    of a range: its raw value depends on when the process last restarted."""
    try:
        tree = parse(t.get("expr") or "")
    except ValueError:
        return
    for node, parents in walk(tree):
        if not isinstance(node, promql_parser.VectorSelector) or \
                not (node.name or "").endswith("_total"):
            continue
        ok = (len(parents) >= 2 and isinstance(parents[-1], promql_parser.MatrixSelector)
              and isinstance(parents[-2], promql_parser.Call)
              and parents[-2].func.name in _COUNTER_FUNCTIONS)
        if not ok:
            yield f"counter {node.name} outside rate(), irate() or increase()"


DASHBOARD_RULES: dict[str, Callable[[dict], Iterator[str]]] = {
    "template-datasource-rule": template_datasource,
    "template-job-rule": _template_for("job"),
    "template-instance-rule": _template_for("instance"),
    "template-label-promql-rule": template_label_promql,
    "template-on-time-change-reload-rule": template_on_time_change_reload,
    "uneditable-dashboard": uneditable_dashboard,
}
PANEL_RULES: dict[str, Callable[[dict, dict], Iterator[str]]] = {
    "panel-datasource-rule": panel_datasource,
    "panel-title-description-rule": panel_title_description,
    "panel-units-rule": panel_units,
    "panel-no-targets-rule": panel_no_targets,
}
TARGET_RULES: dict[str, Callable[[dict, dict, dict], Iterator[str]]] = {
    "target-promql-rule": target_promql,
    "target-rate-interval-rule": target_rate_interval,
    "target-job-rule": _target_matcher("job"),
    "target-instance-rule": _target_matcher("instance"),
    "target-counter-agg-rule": target_counter_agg,
}
RULES = (*DASHBOARD_RULES, *PANEL_RULES, *TARGET_RULES)


def lint(dashboard: dict) -> list[Problem]:
    """Every rule's findings on one dashboard, exclusions not applied."""
    title = dashboard.get("title", "")
    found = [Problem(rule, title, message)
             for rule, check in DASHBOARD_RULES.items() for message in check(dashboard)]
    for p in panels(dashboard):
        found += [Problem(rule, title, message, p.get("title"))
                  for rule, check in PANEL_RULES.items() for message in check(dashboard, p)]
        if not _prometheus(dashboard):
            continue
        for n, t in enumerate(p.get("targets") or []):
            found += [Problem(rule, title, message, p.get("title"), n)
                      for rule, check in TARGET_RULES.items()
                      for message in check(dashboard, p, t)]
    return found


def load_exclusions(path: Path) -> dict[str, dict[str, Any]]:
    """The `exclusions` of a .lint file, checked: known rules, each with a reason."""
    if not path.exists():
        return {}
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if set(document) - {"exclusions"}:
        raise ValueError(f"{path}: only `exclusions` (no warnings: a rule holds or is excluded)")
    exclusions = document.get("exclusions") or {}
    for rule, entry in exclusions.items():
        if rule not in RULES:
            raise ValueError(f"{path}: {rule} is not a rule")
        if not isinstance(entry, dict) or not str(entry.get("reason") or "").strip():
            raise ValueError(f"{path}: {rule} has no reason")
    return exclusions


def _matches(problem: Problem, entry: dict[str, Any]) -> bool:
    fields = {"dashboard": problem.dashboard, "panel": problem.panel, "targetIdx": problem.target}
    return all(fields.get(key) == value for key, value in entry.items())


def excluded_by(problem: Problem, exclusions: dict[str, dict[str, Any]]) -> dict | None:
    """The exclusion entry that covers the problem (the whole rule's entry when it lists no
    entries), or None."""
    exclusion = exclusions.get(problem.rule)
    if exclusion is None:
        return None
    entries = exclusion.get("entries")
    if not entries:
        return exclusion
    return next((e for e in entries if _matches(problem, e)), None)
