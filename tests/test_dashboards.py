"""The generated Grafana dashboard: current, well-formed, and bound to its datasource variable."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from provisioning_helpers import DASHBOARD, ROOT, as_promql, load_dashboard, load_rules, panels
from tqmon import catalog

from devtools import catalog_source, generator, slos, views

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ROWS = ["Overview", "Redis nodes", "Replication", "Cluster", "Sentinel", "Pools", "Workers",
        "Queues", "Latency",
        "Collector", "Service level objectives"]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return load_dashboard()


def test_committed_dashboard_is_current(tmp_path):
    """Regenerating changes nothing: edit the catalog and run `make dashboards`, never the JSON."""
    fresh = tmp_path / "tqmon.json"
    assert generator("dashboards").main(["--output", str(fresh)]) == 0
    assert fresh.read_bytes() == DASHBOARD.read_bytes(), "stale: run `make dashboards`"
    assert generator("dashboards").main(["--check"]) == 0


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "tqmon.json"
    stale.write_text("{}\n")
    assert generator("dashboards").main(["--check", "--output", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert stale.read_text() == "{}\n"


def test_stable_uid_rows_and_panel_types(dashboard):
    assert dashboard["uid"] == "tqmon-overview"
    assert [p["title"] for p in dashboard["panels"] if p["type"] == "row"] == ROWS
    assert {p["type"] for p in panels(dashboard)} == {"stat", "timeseries", "state-timeline",
                                                     "heatmap"}
    overview = []
    for p in dashboard["panels"][1:]:
        if p["type"] == "row":
            break
        overview.append(p)
    assert {p["type"] for p in overview} == {"stat"}
    titles = " | ".join(p["title"].lower() for p in overview)
    for needed in ("nodes up", "workers alive", "workers dead", "queue", "oldest", "failure"):
        assert needed in titles


def test_panel_ids_are_unique(dashboard):
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)


def test_panels_fit_the_grid_without_overlapping(dashboard):
    taken: dict[tuple[int, int], str] = {}
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] >= 1 and pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{p['title']} overlaps {taken[x, y]}"
                taken[x, y] = p["title"]


def test_rows_come_before_their_panels(dashboard):
    """Rows are not collapsed: each row's panels follow it in the list and lie below it."""
    row_y = -1
    for p in dashboard["panels"]:
        if p["type"] == "row":
            assert p["gridPos"]["y"] > row_y and p["panels"] == [] and not p["collapsed"]
            row_y = p["gridPos"]["y"]
        else:
            assert p["gridPos"]["y"] > row_y


def test_every_panel_and_query_uses_the_datasource_variable(dashboard):
    """No fixed datasource and no ${DS_...} import input: file provisioning and UI import both
    work with the same JSON."""
    for p in panels(dashboard):
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], p["title"]
        for target in p["targets"]:
            assert target["datasource"] == DATASOURCE, p["title"]
    assert "__inputs" not in dashboard
    assert "${DS_" not in DASHBOARD.read_text()


def test_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "cluster_name"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance", "cluster_name"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE
        assert variable["query"].startswith("label_values(") and variable["includeAll"]
    assert variables["cluster_name"]["query"].startswith("label_values(redis_cluster_node_up{")


def test_every_query_filters_on_job_and_instance_and_redis_ones_on_cluster(dashboard):
    """cluster_name exists only on the Redis series: filtering a worker or queue series on it
    would empty the panel."""
    cat = catalog.default()
    for p in panels(dashboard):
        for target in p["targets"]:
            for name, labels in views.promql_refs(as_promql(target["expr"])).selectors:
                spec = views._resolve(name, cat)[0]
                assert {"job", "instance"} <= labels, (p["title"], name)
                assert ("cluster_name" in labels) == ("cluster_name" in spec.labels), \
                    (p["title"], name)
            assert '=~"$job"' in target["expr"] and '=~"$instance"' in target["expr"]


def test_units_come_from_the_catalog(dashboard):
    """A panel without its own unit shows its first metric's catalog unit."""
    document = catalog_source.read_yaml()
    cat = catalog.parse(document)
    raw = {p["title"]: p for row in document["dashboard"]["rows"] for p in row["panels"]}
    raw |= {p["title"]: p for p in slos.panels(slos.load(views.load_views()))}
    for p in panels(dashboard):
        unit = p["fieldConfig"]["defaults"]["unit"]
        assert unit in views.PANEL_UNITS, p["title"]
        if "unit" in raw[p["title"]]:
            assert unit == raw[p["title"]]["unit"]
        else:
            first = views.promql_refs(as_promql(p["targets"][0]["expr"])).selectors[0][0]
            assert unit == views.GRAFANA_UNITS[views._resolve(first, cat)[0].unit], p["title"]
    by_title = {p["title"]: p["fieldConfig"]["defaults"]["unit"] for p in panels(dashboard)}
    assert by_title["Memory used and maxmemory"] == "bytes"
    assert by_title["Replication lag"] == "s"
    assert by_title["Task failure ratio"] == "percentunit"


def test_latency_panels_read_the_histogram(dashboard):
    heatmaps = [p for p in panels(dashboard) if p["type"] == "heatmap"]
    assert len(heatmaps) == 1
    (target,) = heatmaps[0]["targets"]
    assert target["format"] == "heatmap" and "sum by (le)" in target["expr"]
    assert "task_processing_latency_seconds_bucket" in target["expr"]
    assert heatmaps[0]["options"]["calculate"] is False
    assert heatmaps[0]["options"]["yAxis"]["unit"] == "s"
    quantiles = next(p for p in panels(dashboard) if p["title"].endswith("p50, p95, p99"))
    assert [t["legendFormat"] for t in quantiles["targets"]] == ["p50", "p95", "p99"]


def test_thresholds_follow_the_settings(tmp_path):
    """The dashboard's threshold lines move with the alert thresholds a user overrides."""
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("params: {failure_ratio: 0.25, replication_lag_seconds: 30}\n")
    out = tmp_path / "tqmon.json"
    assert generator("dashboards").main(["--overrides", str(overrides), "--output", str(out)]) == 0

    def steps(d: dict, title: str) -> list:
        panel = next(p for p in panels(d) if p["title"] == title)
        return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]

    assert steps(load_dashboard(), "Task failure ratio") == [None, 0.1]
    assert steps(load_dashboard(out), "Task failure ratio") == [None, 0.25]
    assert steps(load_dashboard(out), "Replication lag") == [None, 30.0]


def test_state_panels_map_values_to_words(dashboard):
    timeline = next(p for p in panels(dashboard) if p["title"] == "Worker up")
    (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
    assert mapping["type"] == "value"
    assert {k: v["text"] for k, v in mapping["options"].items()} == {"0": "down", "1": "up"}


def test_provisioning_files():
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards.yaml").read_text())
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].startswith("/")
    datasources = yaml.safe_load((ROOT / "dashboards/provisioning/datasource.yaml").read_text())
    (prometheus,) = datasources["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["url"] == "http://localhost:9090"
    assert prometheus["uid"]


def test_make_dashboards_installs_the_json_and_the_provider(tmp_path):
    """`make dashboards GRAFANA_DASHBOARDS_DIR=...`. The venv is assumed installed (-o install)
    and GEN_DIR keeps the generated files out of the work tree."""
    target = tmp_path / "grafana" / "dashboards"
    result = subprocess.run(
        ["make", "-s", "-o", "install", "dashboards", f"GEN_DIR={tmp_path}/gen/",
         f"GRAFANA_DASHBOARDS_DIR={target}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gen" / "alerts" / "tqmon-rules.yaml").exists()  # dashboards does both
    assert (target / "tqmon.json").read_bytes() == DASHBOARD.read_bytes()
    provider = yaml.safe_load((target / "tqmon.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == str(target)


def test_fleet_facts_are_deduplicated_in_every_panel(dashboard):
    """With several agents (Telegraf on every host, an HA pair) a panel shows each fleet fact
    once: every fleet metric goes through an idempotent aggregation that drops job, instance
    and host before anything sums or counts it. tqmon_* self-metrics stay per agent."""
    cat = catalog.default()
    for p in panels(dashboard):
        for target in p["targets"]:
            assert views.agent_copies(target["expr"], cat) == [], (p["title"], target["expr"])


ALERT_LINK = re.compile(r"\[(\w+)\]\((\S+)\) \(((?:critical|warning|info)(?: or \w+)*)\)")


def test_every_panel_explains_itself(dashboard):
    """For the person on call: what the panel shows, what normal and bad look like, and the
    alerts that fire on it with their runbook sections, or that none does."""
    severities: dict[str, dict[str, None]] = {}  # an SLO's burn alerts: critical or warning
    for rule in load_rules():
        severities.setdefault(rule["alert"], {})[rule["labels"]["severity"]] = None
    runbook = {rule["alert"]: (rule["annotations"]["runbook_url"],
                               " or ".join(severities[rule["alert"]])) for rule in load_rules()}
    for p in panels(dashboard):
        text, _, alerts = p["description"].rpartition("\n\n")
        assert "Normal:" in text and "Bad:" in text, p["title"]
        assert "<<" not in text, p["title"]  # templates rendered
        links = ALERT_LINK.findall(alerts)
        assert links or alerts == "No alert fires on this panel.", (p["title"], alerts)
        for name, url, severity in links:
            assert runbook[name] == (url, severity), p["title"]


def test_every_alert_is_on_a_panel(dashboard):
    """An alert fires on something the dashboard shows, and its panel links its runbook."""
    linked = {name for p in panels(dashboard)
              for name, _, _ in ALERT_LINK.findall(p["description"])}
    assert linked == {rule["alert"] for rule in load_rules()}


def test_a_disabled_alert_leaves_the_descriptions(tmp_path):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("alerts: {WorkerDown: {enabled: false}}\n")
    out = tmp_path / "tqmon.json"
    assert generator("dashboards").main(["--overrides", str(overrides), "--output", str(out)]) == 0
    worker_up = next(p for p in panels(load_dashboard(out)) if p["title"] == "Worker up")
    assert worker_up["description"].endswith("\n\nNo alert fires on this panel.")


def test_not_editable_and_the_variables_match_every_series(dashboard):
    """Provisioned from a file: a UI edit would be lost, so the dashboard is read-only (the
    README says how to edit a copy). "All" of job and instance is `.+`, not a list of the
    values seen when the dashboard loaded."""
    assert dashboard["editable"] is False
    # The current model has no per-panel flag: every panel follows the dashboard's.
    assert not any("editable" in p for p in dashboard["panels"])
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name in ("job", "instance"):
        assert variables[name]["allValue"] == ".+" and variables[name]["multi"]
        assert variables[name]["label"] == name.title()
