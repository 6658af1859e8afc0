"""Generate tqmon's Grafana dashboard (dashboards/tqmon.json) from the metric catalog.

    python dashboards/generate.py [--catalog FILE] [--overrides FILE] [--output FILE] [--check]

Rows, panels, queries, units and thresholds all come from the catalog's `dashboard` section
(views.parse_views validates and renders them); this file only turns them into grafanalib
objects and lays them out, so a new panel is a catalog edit. current_model() then writes what
grafanalib built in the model of a current Grafana (schemaVersion 42; tests/grafana-schema/).
The output is deterministic (sorted keys, ids and positions in catalog order): CI regenerates it
and fails on any difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grafanalib.core as G
from grafanalib._gen import DashboardEncoder
from tqmon import catalog

from devtools import slos, views

OUTPUT = Path(__file__).resolve().parent / "tqmon.json"
GRID_WIDTH = 24
# The dashboard model of Grafana 13.2 (@grafana/schema 13.2.3's defaultDashboard): Grafana
# migrates anything older on load, so an older number only makes every load run migrations.
SCHEMA_VERSION = 42
# grafanalib 0.7 writes the model of Grafana 5-8 (rows, span, the old heatmap's cards and axes,
# Graphite's target fields...). current_model() keeps of each object only the keys the current
# model has (Grafana's dashboard schema, tests/grafana-schema/), so every panel, whichever row
# or catalog entry it comes from, is written in today's model.
CURRENT_KEYS = {
    "dashboard": {"annotations", "description", "editable", "fiscalYearStartMonth", "graphTooltip",
                  "links", "liveNow", "panels", "refresh", "schemaVersion", "tags", "templating",
                  "time", "timepicker", "timezone", "title", "uid", "version", "weekStart"},
    "row": {"collapsed", "datasource", "gridPos", "id", "panels", "repeat", "title", "type"},
    "panel": {"datasource", "description", "fieldConfig", "gridPos", "id", "interval", "links",
              "maxDataPoints", "options", "targets", "timeFrom", "timeShift", "title",
              "transformations", "transparent", "type"},
    "target": {"datasource", "expr", "format", "hide", "instant", "interval", "intervalFactor",
               "legendFormat", "refId"},
    "variable": {"allValue", "current", "datasource", "description", "hide", "includeAll",
                 "label", "multi", "name", "options", "query", "refresh", "regex", "skipUrlSync",
                 "sort", "type"},
    "timepicker": {"hidden", "nowDelay", "refresh_intervals"},
}
# Every panel and query names the datasource through this variable, never a fixed uid nor a
# ${DS_...} import input: the same file then works provisioned from disk and imported in the UI.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ALL = {"selected": True, "text": ["All"], "value": ["$__all"]}


def variables(views: views.Views) -> list[G.Template]:
    """Datasource, job, instance and cluster_name. job and instance filter every series;
    cluster_name only the Redis series, the only ones that carry it.

    "All" of job and instance is `.+` (every series has both labels), not Grafana's list of the
    values it found: a job or an instance that appears after the list was loaded is still
    shown, and the query stays short on a large fleet (dashboard-linter's template rules).
    cluster_name keeps Grafana's list: `.+` would hide a cluster configured without a name.
    """
    def query(name: str, label: str, promql: str, all_value: str | None = None) -> G.Template:
        template = G.Template(
            name=name, label=label, query=promql, dataSource=DATASOURCE, includeAll=True,
            multi=True, refresh=G.REFRESH_ON_TIME_RANGE_CHANGE, sort=G.SORT_ALPHA_ASC,
            allValue=all_value)
        template._current = dict(ALL)  # "All" selected until the user picks
        return template

    datasource = G.Template(name="datasource", label="Data source", type="datasource",
                            query="prometheus", refresh=G.REFRESH_ON_DASHBOARD_LOAD)
    datasource._current = {"selected": True, "text": "default", "value": "default"}
    return [
        datasource,
        query("job", "Job", f"label_values(tqmon_build_info{{{views.selector}}}, job)", ".+"),
        query("instance", "Instance",
              f'label_values(tqmon_build_info{{{views.selector}, job=~"$job"}}, instance)',
              ".+"),
        query("cluster_name", "cluster",
              'label_values(redis_cluster_node_up{job=~"$job", instance=~"$instance"}, '
              "cluster_name)"),
    ]


def _thresholds(spec: views.PanelSpec) -> list[dict[str, Any]]:
    base = "green" if spec.thresholds else "text"  # no thresholds: a neutral number
    return [{"color": base, "value": None}] + [
        {"color": colour, "value": value} for value, colour in spec.thresholds]


def _mappings(spec: views.PanelSpec) -> list[dict[str, Any]]:
    if not spec.states:
        return []
    return [{"type": "value", "options": {
        value: {"text": text, "color": colour, "index": index}
        for index, (value, text, colour) in enumerate(spec.states)}}]


def _heatmap_options(unit: str) -> dict[str, Any]:
    """Options of Grafana's current heatmap panel for pre-bucketed Prometheus histograms."""
    return {
        "calculate": False,
        "cellGap": 1,
        "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange",
                  "scale": "exponential", "exponent": 0.5, "steps": 64, "reverse": False},
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "showValue": "never",
        "tooltip": {"show": True, "yHistogram": False},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
    }


def panel(spec: views.PanelSpec, panel_id: int, pos: G.GridPos) -> G.Panel:
    """One grafanalib panel of the type the catalog names."""
    targets = [
        G.Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + n), datasource=DATASOURCE,
                 intervalFactor=1, format="heatmap" if spec.type == "heatmap" else "time_series")
        for n, (expr, legend) in enumerate(spec.targets)
    ]
    common: dict[str, Any] = {
        "id": panel_id, "title": spec.title, "description": spec.description or None,
        "dataSource": DATASOURCE, "targets": targets, "gridPos": pos,
        "thresholds": _thresholds(spec), "maxDataPoints": None,
    }
    unit_json = {"fieldConfig": {"defaults": {"unit": spec.unit}, "overrides": []}}
    # the catalog's empty-state text (a feature not in use), shown instead of Grafana's "No data"
    empty = {"fieldConfig": {"defaults": {"noValue": spec.no_data}}} if spec.no_data else None
    if empty:
        unit_json["fieldConfig"]["defaults"]["noValue"] = spec.no_data
    if spec.type == "stat":
        return G.Stat(**common, format=spec.unit, reduceCalc="lastNotNull", graphMode="area",
                      colorMode="value", mappings=_mappings(spec),
                      noValue=spec.no_data or "no data", color={"mode": "thresholds"})
    if spec.type == "timeseries":
        return G.TimeSeries(**common, unit=spec.unit, tooltipMode="multi", tooltipSort="desc",
                            thresholdsStyleMode="dashed" if spec.thresholds else "off",
                            extraJson=empty)
    if spec.type == "state-timeline":
        return G.StateTimeline(**common, mappings=_mappings(spec), extraJson=unit_json)
    if spec.type == "heatmap":
        return G.Heatmap(**common, dataFormat="tsbuckets", yBucketBound="upper",
                         hideZeroBuckets=True, options=_heatmap_options(spec.unit),
                         extraJson=unit_json)
    raise catalog.CatalogError(f"panel {spec.title}: no layout for type {spec.type}")


def layout(views: views.Views) -> list[G.Panel]:
    """Rows top to bottom; panels left to right, wrapping at the grid's 24 columns."""
    panels: list[G.Panel] = []
    y = 0
    for title, specs in views.rows:
        panels.append(G.RowPanel(id=len(panels) + 1, title=title,
                                 gridPos=G.GridPos(h=1, w=GRID_WIDTH, x=0, y=y)))
        y, x, line_height = y + 1, 0, 0
        for spec in specs:
            if x + spec.width > GRID_WIDTH:
                y, x, line_height = y + line_height, 0, 0
            panels.append(panel(spec, len(panels) + 1,
                                G.GridPos(h=spec.height, w=spec.width, x=x, y=y)))
            x, line_height = x + spec.width, max(line_height, spec.height)
        y += line_height
    return panels


def dashboard(views: views.Views) -> G.Dashboard:
    return G.Dashboard(
        title=views.title, uid=views.uid, tags=list(views.tags),
        description="Generated by dashboards/generate.py from plugin/tqmon/catalog.yaml: edit "
                    "the catalog, not this dashboard (provisioning overwrites UI changes).",
        # Provisioned from a file, so an edit saved in the UI is lost on the next provisioning:
        # not editable (Settings > Make editable, or Save as a copy; README).
        editable=False,
        panels=layout(views), templating=G.Templating(list=variables(views)),
        links=[{"title": "Runbook", "type": "link", "url": views.runbook_url, "icon": "doc",
                "targetBlank": True, "tooltip": "What each tqmon alert means and what to do",
                "asDropdown": False, "includeVars": False, "keepTime": False, "tags": []}],
        time=G.Time("now-3h", "now"), refresh="30s", timezone="browser",
        graphTooltip=G.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR, schemaVersion=SCHEMA_VERSION,
    )


def _keep(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """The keys of `data` Grafana's current model has for `kind`, unset (None) ones dropped."""
    return {k: v for k, v in data.items() if k in CURRENT_KEYS[kind] and v is not None}


def _drop_none(value: Any) -> Any:
    """grafanalib writes an unset option as null; the schema wants it absent. A threshold
    step's `value: null` is kept: it is the base step, from minus infinity."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items()
                if v is not None or (k == "value" and "color" in value)}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def current_model(data: dict[str, Any]) -> dict[str, Any]:
    """grafanalib's dashboard (its JSON form) in the model of SCHEMA_VERSION; every row and
    panel goes through here, so a panel type or a row added later is current too."""
    def one_panel(p: dict[str, Any]) -> dict[str, Any]:
        if p["type"] == "row":
            return {**_keep(p, "row"), "panels": [one_panel(q) for q in p.get("panels", [])]}
        return {**_keep(p, "panel"), "targets": [_keep(t, "target") for t in p["targets"]]}

    data = json.loads(json.dumps(data, cls=DashboardEncoder))  # plain dicts and lists
    model = _keep(data, "dashboard")
    model["panels"] = [one_panel(p) for p in data["panels"]]
    model["templating"] = {"list": [_keep(v, "variable") for v in data["templating"]["list"]]}
    model["timepicker"] = _keep(data["timepicker"], "timepicker")
    model["schemaVersion"] = SCHEMA_VERSION
    return _drop_none(model)


def render(views: views.Views) -> str:
    """The dashboard JSON, byte for byte what is committed for the default settings."""
    data = current_model(dashboard(slos.with_row(views, slos.load(views))).to_json_data())
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    return views.generator_main("dashboards/generate.py", render, OUTPUT, argv)


if __name__ == "__main__":
    raise SystemExit(main())
