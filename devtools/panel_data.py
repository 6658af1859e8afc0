"""What each dashboard panel shows, read from a real Prometheus as Grafana would read it.

Grafana resolves the dashboard's variables ("All" selected: a variable's allValue, else the
values its label_values() query finds, as a regex alternation), replaces its interval variables
($__interval, $__rate_interval, $__range) for the time range, and runs every target as a range
query. This module does the same through Prometheus's HTTP API, so a panel that is empty here is
empty in Grafana over the same data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .services import Prometheus

_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.*),\s*)?(?P<label>\w+)\)$", re.S)
MAX_POINTS = 300  # about a panel's width in pixels: Grafana's maxDataPoints for the interval


@dataclass
class Series:
    name: str  # the legend, rendered for this series
    labels: dict[str, str]
    values: list[float]  # one per step of the panel's time grid, NaN where there is no sample


@dataclass
class PanelData:
    panel: dict[str, Any]
    times: list[float]  # the range query's steps, unix seconds
    series: list[list[Series]] = field(default_factory=list)  # per target

    @property
    def title(self) -> str:
        return str(self.panel["title"])

    @property
    def empty(self) -> bool:
        return not any(s for s in self.series)


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    scrape_seconds: float

    @property
    def step(self) -> float:
        """$__interval: the range over maxDataPoints, never below the scrape interval."""
        return max(self.scrape_seconds, math.ceil((self.end - self.start) / MAX_POINTS))

    @property
    def rate_interval(self) -> float:
        """Grafana's $__rate_interval: max($__interval + scrape interval, 4 * scrape interval)."""
        return max(self.step + self.scrape_seconds, 4 * self.scrape_seconds)

    @property
    def times(self) -> list[float]:
        count = int((self.end - self.start) // self.step) + 1
        return [self.start + i * self.step for i in range(count)]


def _interval_variables(expr: str, window: TimeRange) -> str:
    durations = {"__rate_interval": window.rate_interval, "__interval": window.step,
                 "__range": window.end - window.start}
    for name, seconds in durations.items():
        expr = re.sub(r"\$\{?" + name + r"\}?(?!\w)", f"{int(seconds)}s", expr)
    return expr


def variable_values(prom: Prometheus, dashboard: dict[str, Any], window: TimeRange
                    ) -> dict[str, str]:
    """Each query variable's value with "All" selected, in dashboard order (a later variable's
    query may use an earlier one's value, as Grafana chains them)."""
    values: dict[str, str] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        if variable.get("allValue"):
            values[variable["name"]] = variable["allValue"]
            continue
        match = _LABEL_VALUES.match(interpolate(variable["query"], values, window))
        if match is None:
            raise ValueError(f"variable {variable['name']}: not a label_values() query")
        params: dict[str, Any] = {"start": str(window.start), "end": str(window.end)}
        if match["selector"]:
            params["match[]"] = match["selector"]
        found = sorted(prom.api(f"label/{match['label']}/values", **params))
        values[variable["name"]] = ("(" + "|".join(re.escape(v) for v in found) + ")"
                                    if found else "")
    return values


def interpolate(expr: str, values: dict[str, str], window: TimeRange) -> str:
    expr = _interval_variables(expr, window)
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = re.sub(r"\$\{" + name + r"\}|\$" + name + r"(?!\w)", lambda _, v=value: v, expr)
    return expr


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: {{label}} replaced; without one, the series' labels."""
    if template:
        return _LEGEND.sub(lambda m: labels.get(m[1], ""), template).strip()
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}" if inner else labels.get("__name__", "")


def query_panel(prom: Prometheus, panel: dict[str, Any], values: dict[str, str],
                window: TimeRange) -> PanelData:
    times = window.times
    data = PanelData(panel, times)
    index = {round(t, 3): i for i, t in enumerate(times)}
    for target in panel.get("targets", []):
        result = prom.api("query_range", query=interpolate(target["expr"], values, window),
                          start=str(times[0]), end=str(times[-1]), step=str(window.step))
        found = []
        for item in result["result"]:
            points = [math.nan] * len(times)
            for t, v in item["values"]:
                if (i := index.get(round(float(t), 3))) is not None:
                    points[i] = float(v)
            labels = item["metric"]
            found.append(Series(legend(target.get("legendFormat", ""), labels), labels, points))
        data.series.append(sorted(found, key=lambda s: s.name))
    return data


def query_dashboard(prom: Prometheus, dashboard: dict[str, Any], window: TimeRange
                    ) -> list[PanelData]:
    """Every panel's data (rows excluded), in dashboard order."""
    values = variable_values(prom, dashboard, window)
    return [query_panel(prom, panel, values, window)
            for panel in dashboard["panels"] if panel["type"] != "row"]


def dump(window: TimeRange, panels: list[PanelData]) -> dict[str, Any]:
    """The data as JSON (NaN as null), to draw again without running the demo."""
    return {"window": [window.start, window.end, window.scrape_seconds], "panels": [
        {"panel": p.panel, "times": p.times, "series": [
            [{"name": s.name, "labels": s.labels,
              "values": [None if math.isnan(v) else v for v in s.values]} for s in target]
            for target in p.series]} for p in panels]}


def load(data: dict[str, Any]) -> tuple[TimeRange, list[PanelData]]:
    return TimeRange(*data["window"]), [
        PanelData(p["panel"], p["times"], [
            [Series(s["name"], s["labels"], [math.nan if v is None else v for v in s["values"]])
             for s in target] for target in p["series"]]) for p in data["panels"]]
