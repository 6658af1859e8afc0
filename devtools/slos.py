"""Service level objectives: the catalog's `slos` section as recording rules, burn-rate alerts
and a dashboard row.

Every SLO is an error ratio on the fleet series, recorded over fixed windows; the alerts are the
Google SRE workbook's multi-window, multi-burn-rate ones (a long window that says the budget
really burns, a short one that says it still does). catalog.yaml documents the section; a user
overrides objective, period, by, threshold and enabled per SLO (the `slos` overrides key).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from prometheus_client.utils import floatToGoString
from tqmon.catalog import Catalog, CatalogError

from . import views as v

RECORD = "tqmon:slo_errors:ratio"  # + _rate<window>; the bare name: a time SLO's ratio now
KINDS = ("events", "time")
_SLO_KEYS = {"name", "slo", "title", "kind", "objective", "period", "by", "enabled", "threshold",
             "threshold_bucket_of", "errors_are", "errors", "total"}
_OVERRIDE_KEYS = {"objective", "period", "by", "threshold", "enabled"}
_BURN_KEYS = {"long", "short", "budget_share", "severity", "for"}
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus duration (1h30m) in seconds."""
    import re

    return sum(float(n) * _SECONDS[unit] for n, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)",
                                                                    duration))


def _number(value: float) -> str:
    """A number as PromQL and the texts show it: 14.4, 0.01, 60."""
    return f"{round(value, 10):g}"


def _hours(value: float) -> str:
    hours = value / 3600
    return f"{hours / 24:.3g} days" if hours >= 48 else f"{hours:.3g} hours"


@dataclass(frozen=True)
class BurnAlert:
    long: str
    short: str
    budget_share: float
    severity: str
    for_: str


@dataclass(frozen=True)
class Slo:
    name: str  # CamelCase: the alert is <name>ErrorBudgetBurn
    slo: str  # the `slo` label
    title: str
    kind: str
    objective: float
    period: str
    by: tuple[str, ...]
    errors_are: str  # "failed tasks among the finished ones": what the ratio counts
    errors: str  # templates, rendered per window and selector (see ratio())
    total: str
    threshold: float | None
    metrics: frozenset[str]

    @property
    def alert(self) -> str:
        return f"{self.name}ErrorBudgetBurn"

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 10)

    def factor(self, burn: BurnAlert) -> float:
        """How many times faster than the budget allows: 14.4 for 2% of 30 days in 1h."""
        return round(burn.budget_share * seconds(self.period) / seconds(burn.long), 6)


@dataclass(frozen=True)
class Slos:
    windows: tuple[str, ...]
    burns: tuple[BurnAlert, ...]
    objectives: tuple[Slo, ...]  # the enabled ones


def _by(by: tuple[str, ...]) -> str:
    return f"sum by ({', '.join(by)})" if by else "sum"


def ratio(slo: Slo, window: str | None, sel: str, grow: Any) -> str:
    """PromQL for the SLO's error ratio over `window` (None: a time SLO's ratio now).

    No events (or nothing to be in error) gives no sample, not 0/0: an idle pool burns nothing
    and an average over time skips the gap."""
    context = {"sel": sel, "fleet": v.FLEET, "grow": grow, "w": window or "5m",
               "threshold": _number(slo.threshold) if slo.threshold is not None else None,
               "le": floatToGoString(slo.threshold) if slo.threshold is not None else None,
               "le_re": _bound_spellings(slo.threshold)}
    errors = v._render(slo.errors, context, f"slo {slo.name} errors")
    total = v._render(slo.total, context, f"slo {slo.name} total")
    return f"{_by(slo.by)} ({errors})\n/\n({_by(slo.by)} ({total}) > 0)"


def _bound_spellings(threshold: float | None) -> str | None:
    """A PromQL regex (in a double-quoted string) for a bucket bound as any agent spells it:
    tqmon writes `60.0`, node_exporter's textfile collector re-exposes it as Go does (`60`),
    and Prometheus 2 keeps whichever it was given."""
    if threshold is None:
        return None
    python = floatToGoString(threshold)
    spellings = dict.fromkeys((python, python.removesuffix(".0")))
    return "|".join(s.replace(".", "\\\\.") for s in spellings)


def record_name(window: str | None) -> str:
    return f"{RECORD}_rate{window}" if window else RECORD


def _burn(raw: Any, n: int) -> BurnAlert:
    where = f"slos.burn_alerts {n}"
    raw = v._mapping(raw, where, _BURN_KEYS, _BURN_KEYS)
    for key in ("long", "short", "for"):
        v._need(isinstance(raw[key], str) and bool(v._DURATION.match(raw[key])), where,
                f"{key}: a duration such as 1h")
    v._need(v._is_number(raw["budget_share"]) and 0 < raw["budget_share"] <= 1, where,
            "budget_share: a share of the error budget, 0 to 1")
    v._need(raw["severity"] in v.SEVERITIES, where, f"severity: one of {v.SEVERITIES}")
    return BurnAlert(raw["long"], raw["short"], float(raw["budget_share"]), raw["severity"],
                     raw["for"])


def _slo(raw: Any, n: int, override: dict[str, Any], cat: Catalog,
         free: frozenset[str]) -> Slo | None:
    raw = v._mapping(raw, f"slos.objectives {n}", _SLO_KEYS,
                     _SLO_KEYS - {"threshold", "threshold_bucket_of"})
    where = f"slo {raw['name']}"
    v._need(isinstance(raw["name"], str) and bool(v._ALERT_NAME.match(raw["name"])), where,
            "name: CamelCase")
    raw = {**raw, **v._mapping(override, f"overrides: slos.{raw['name']}", _OVERRIDE_KEYS)}
    v._need(raw["kind"] in KINDS, where, f"kind: one of {KINDS}")
    v._need(isinstance(raw["enabled"], bool), where, "enabled: true or false")
    v._need(v._is_number(raw["objective"]) and 0 < raw["objective"] < 1, where,
            "objective: a share between 0 and 1, such as 0.99")
    v._need(isinstance(raw["period"], str) and bool(v._DURATION.match(raw["period"])), where,
            "period: a duration such as 30d")
    v._need(isinstance(raw["by"], list) and all(isinstance(b, str) for b in raw["by"]), where,
            "by: a list of label names (empty: the whole fleet)")
    v._need(not set(raw["by"]) & v.AGENT_LABELS, where, "by: names an agent label")
    threshold = raw.get("threshold")
    v._need(threshold is None or (v._is_number(threshold) and threshold > 0), where,
            "threshold: a positive number")
    if "threshold_bucket_of" in raw:
        name = raw["threshold_bucket_of"]
        histogram = cat[name] if name in cat else None  # noqa: SIM401 (Catalog has no get)
        v._need(histogram is not None and histogram.type == "histogram", where,
                "threshold_bucket_of: a histogram of the catalog")
        bounds = histogram.buckets or ()
        v._need(threshold in bounds, where,
                f"threshold {threshold} is not a bucket bound of {histogram.name}: use one of "
                + ", ".join(_number(b) for b in bounds))
    slo = Slo(name=raw["name"], slo=v._text(raw["slo"], where),
              title=v._text(raw["title"], where), kind=raw["kind"],
              objective=float(raw["objective"]), period=raw["period"], by=tuple(raw["by"]),
              errors_are=v._render(v._text(raw["errors_are"], where),
                                   {"threshold": _number(threshold or 0)}, where),
              errors=v._text(raw["errors"], where), total=v._text(raw["total"], where),
              threshold=float(threshold) if threshold is not None else None,
              metrics=frozenset())
    metrics: set[str] = set()
    for window in (None, "5m"):
        try:
            expr = ratio(slo, window, "job!=\"\"", v.rise)
            metrics |= v.check_expr(expr, cat, free)
            labels = v.promql_refs(expr)
        except CatalogError as exc:
            raise CatalogError(f"{where}: {exc}") from None
        known = {label for name, _ in labels.selectors for label in
                 (set(cat[name].labels) if name in cat else set())}
        known |= {label for m in metrics for label in cat[m].labels}
        v._need(set(slo.by) <= known, where, f"by: {sorted(set(slo.by) - known)}: no such label")
    if not raw["enabled"]:
        return None
    return dataclasses.replace(slo, metrics=frozenset(metrics))


def parse_slos(document: Any, overrides: Any, cat: Catalog,
               free: frozenset[str] = frozenset()) -> Slos:
    """The catalog's `slos` section, overrides (the `slos` key of the overrides file) applied."""
    raw = v._mapping(document.get("slos") or {}, "slos", {"windows", "burn_alerts", "objectives"},
                     {"windows", "burn_alerts", "objectives"})
    windows = raw["windows"]
    v._need(isinstance(windows, list) and all(isinstance(w, str) and v._DURATION.match(w)
                                               for w in windows), "slos.windows",
            "a list of durations")
    burns = tuple(_burn(b, n) for n, b in enumerate(raw["burn_alerts"]))
    for burn in burns:
        v._need(burn.long in windows and burn.short in windows, "slos.burn_alerts",
                f"{burn.long} and {burn.short} must be among the windows")
    per_slo = dict(v._mapping((overrides or {}).get("slos") or {}, "overrides: slos"))
    names = [o.get("name") for o in raw["objectives"] if isinstance(o, dict)]
    v._need(len(names) == len(set(names)), "slos.objectives", "an SLO name is listed twice")
    for name in sorted(set(per_slo) - set(names)):
        raise CatalogError(f"overrides: slos.{name}: no such SLO; known: {', '.join(names)}")
    found = [_slo(o, n, per_slo.get(o.get("name")) or {}, cat, free)
             for n, o in enumerate(raw["objectives"])]
    return Slos(tuple(windows), burns, tuple(s for s in found if s is not None))


def _where(slo: Slo) -> str:
    """Which series an alert is about, as its description names it."""
    if not slo.by:
        return "the fleet"
    return ", ".join(f"{label} {{{{ $labels.{label} }}}}" for label in slo.by)


def records(slos: Slos, selector: str) -> list[dict[str, Any]]:
    """Recording rules: each SLO's error ratio over every window (time SLOs: its ratio now
    first, then averaged over time), labelled with the SLO."""
    rules: list[dict[str, Any]] = []
    for slo in slos.objectives:
        labels = {"slo": slo.slo}
        if slo.kind == "time":
            rules.append({"record": RECORD, "expr": ratio(slo, None, selector, v.rise),
                          "labels": labels})
        for window in slos.windows:
            expr = (ratio(slo, window, selector, v.rise) if slo.kind == "events" else
                    f'avg_over_time({RECORD}{{slo="{slo.slo}"}}[{window}])')
            rules.append({"record": record_name(window), "expr": expr, "labels": labels})
    return rules


def alerts(slos: Slos, runbook_url: str, everyone: Any = None) -> list[dict[str, Any]]:
    """The multi-window, multi-burn-rate alerts: one rule per SLO and burn_alerts entry, named
    <Sli>ErrorBudgetBurn, labelled with the SLO and the long window. `everyone` is the
    overrides' all_alerts ({for, severity, enabled}): it holds for these alerts too."""
    everyone = everyone or {}
    if not everyone.get("enabled", True):
        return []
    rules = []
    for slo in slos.objectives:
        for burn in slos.burns:
            factor = slo.factor(burn)
            limit = f"({_number(factor)} * {_number(slo.budget)})"
            expr = "\n".join([
                f'{record_name(burn.long)}{{slo="{slo.slo}"}} > {limit}', "and",
                f'{record_name(burn.short)}{{slo="{slo.slo}"}} > {limit}'])
            pace = "fast" if burn.severity == "critical" else "steadily"
            rules.append({
                "alert": slo.alert, "expr": expr, "for": everyone.get("for", burn.for_),
                "labels": {"severity": everyone.get("severity", burn.severity), "slo": slo.slo,
                           "window": burn.long},
                "annotations": {
                    "summary": f"The error budget of the {slo.slo} SLO burns {pace}.",
                    "description": (
                        f"The share of {slo.errors_are} ({_where(slo)}) was "
                        f"{{{{ $value | humanizePercentage }}}} over the last {burn.long}, and "
                        f"is above the limit over the last {burn.short} too: more than "
                        f"{_number(factor)} times the {_number(slo.budget * 100)}% the "
                        f"objective ({_number(slo.objective * 100)}% over {slo.period}) allows. "
                        f"At this pace the error budget of {slo.period} is spent in "
                        f"{_hours(seconds(slo.period) / factor)}."),
                    "runbook_url": f"{runbook_url}#{slo.alert.lower()}"}})
    return rules


def _increase(series: str, window: str) -> str:
    """The dashboard's grow(): increase(), as the dashboard reads counters everywhere."""
    return f"increase({series}[{window}])"


def _dashboard_ratio(slo: Slo, window: str) -> str:
    sel = v.DASHBOARD_SELECTORS["sel"]
    if slo.kind == "events":
        return ratio(slo, window, sel, _increase)
    # An explicit resolution of a minute: the default (the evaluation interval, a second on a
    # test stack) makes a month-long subquery millions of steps; a minute is the rules' too.
    return f"avg_over_time(({ratio(slo, None, sel, _increase)})[{window}:1m])"


def panels(slos: Slos) -> list[dict[str, Any]]:
    """The SLO row's panels, as catalog panel entries (views validates and renders them):
    per SLO the error budget left over its period and the burn rates of the alerts' windows."""
    found = []
    for slo in slos.objectives:
        legend = " ".join(f"{{{{{label}}}}}" for label in slo.by) or slo.slo
        budget = _number(slo.budget)
        found.append({
            "title": f"{slo.title}: error budget left", "type": "stat", "unit": "percentunit",
            "width": 6, "height": 6, "alerts": [slo.alert],
            "description": (
                f"Share of the {slo.period} error budget of the {slo.slo} SLO not yet spent: "
                f"1 - the share of {slo.errors_are} over {slo.period} / {budget} (objective "
                f"{_number(slo.objective * 100)}%). Normal: above 0. Bad: near or below 0."),
            "targets": [{"expr": f"1 - ({_dashboard_ratio(slo, slo.period)}) / {budget}",
                         "legend": legend}]})
        found.append({
            "title": f"{slo.title}: burn rate", "type": "timeseries", "unit": "none",
            "width": 18, "height": 6, "alerts": [slo.alert],
            "description": (
                f"How fast the {slo.slo} SLO spends its error budget: the share of "
                f"{slo.errors_are} over each alert's long window / {budget}. 1 spends exactly "
                f"the budget in {slo.period}. Normal: below 1. Bad: above the alerts' factors ("
                + ", ".join(f"{_number(slo.factor(b))} over {b.long}" for b in slos.burns)
                + ")."),
            "targets": [{"expr": f"({_dashboard_ratio(slo, b.long)}) / {budget}",
                         "legend": f"{legend} {b.long}"} for b in slos.burns]})
    return found


def load(views: v.Views) -> Slos:
    """The SLOs of the catalog and overrides the views were parsed from."""
    from tqmon.catalog import parse

    return parse_slos(views.source, views.overrides, parse(views.source), views.free_labels)


def with_row(views: v.Views, slos: Slos, title: str = "Service level objectives") -> v.Views:
    """The views with the SLO row appended (none when every SLO is disabled)."""
    if not slos.objectives:
        return views
    from tqmon.catalog import parse

    cat = parse(views.source)
    by_alert = {slo.alert: v.AlertSpec(
        name=slo.alert, expr="", for_="", severity=" or ".join(
            dict.fromkeys(b.severity for b in slos.burns)), summary="", description="",
        runbook_url=f"{views.runbook_url}#{slo.alert.lower()}", metrics=slo.metrics)
        for slo in slos.objectives}
    specs = tuple(v._panel(raw, f"row {title} panel {n}", dict(v.DASHBOARD_SELECTORS), cat, {},
                           views.free_labels, by_alert)
                  for n, raw in enumerate(panels(slos)))
    return dataclasses.replace(views, rows=(*views.rows, (title, specs)))
