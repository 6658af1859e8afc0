"""The catalog's dashboard and alert sections: every expression parses and reads only catalog
metrics, every metric is shown or alerted on, and new entries flow into both outputs."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml
from provisioning_helpers import (
    check_parses,
    dashboard_exprs,
    load_dashboard,
    load_rules,
    panels,
    promtool,
    rule_exprs,
)
from tqmon import catalog

from devtools import catalog_source, generator, views

# Independent of views.promql_refs: a name directly followed by "{" is a metric selector.
SELECTOR_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_:]*)\{")


def _all_exprs() -> list[str]:
    return dashboard_exprs(load_dashboard()) + rule_exprs()


def _catalog_exprs() -> list[str]:
    """The expressions that read catalog metrics: not the burn-rate alerts, which read only
    the rule file's own recording rules (checked to exist here)."""
    recorded = {rule["record"] for rule in load_rules(kind="record")}
    found = []
    for expr in _all_exprs():
        names = {name for name, _ in views.promql_refs(expr).selectors}
        if names & recorded:
            assert names <= recorded, expr
        else:
            found.append(expr)
    return found


def test_every_expression_parses(tmp_path):
    """promtool parses each dashboard query (Grafana intervals filled in) and each rule."""
    exprs = _all_exprs()
    assert len(exprs) > 60
    result = check_parses(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_every_expression_names_only_catalog_metrics():
    cat = catalog.default()
    names = set()
    for expr in _catalog_exprs():
        views.check_expr(expr, cat)  # metric names and the labels used on each
        names |= set(SELECTOR_NAME.findall(expr))
    unknown = {n for n in names if views._resolve(n, cat) is None}
    assert unknown == set()


def test_every_catalog_metric_is_used_or_listed_unused():
    """A metric nobody can see is a metric nobody will notice breaking: show it, alert on it,
    or say in the catalog's `unused` section why not."""
    loaded = views.load_views()
    every = set(catalog.default().metrics)
    assert every - loaded.metrics - set(loaded.unused) == set(), "add a panel, an alert or a reason"
    assert loaded.metrics & set(loaded.unused) == set(), "listed unused but used"
    # the committed outputs agree with what the catalog says they read
    seen = set()
    for expr in _catalog_exprs():
        seen |= views.check_expr(expr, catalog.default())
    assert seen == loaded.metrics


def test_new_catalog_entries_flow_into_both_outputs(tmp_path):
    """A metric, a panel and an alert added to the catalog alone appear in the outputs."""
    document = catalog_source.read_yaml()
    document["metrics"].append({
        "name": "task_queue_retries_total", "type": "counter", "unit": "",
        "help": "Redeliveries.", "labels": ["priority", "group"], "collector": "queues",
        "origin": "tqmon"})
    queues = next(row for row in document["dashboard"]["rows"] if row["title"] == "Queues")
    queues["panels"].append({
        "title": "Retries", "type": "timeseries", "unit": "cps", "alerts": ["ManyRetries"],
        "description": "Redeliveries per second. Normal: 0.",
        "targets": [{"expr": "rate(task_queue_retries_total{<< sel >>}[$__rate_interval])",
                     "legend": "{{priority}}"}]})
    document["settings"]["params"]["retries_per_second"] = 2
    document["alerts"].append({
        "name": "ManyRetries", "for": "5m", "severity": "warning", "runbook": "manyretries",
        "expr": "rate(task_queue_retries_total{<< sel >>}[5m]) > << p.retries_per_second >>",
        "summary": "Retries on {{ $labels.priority }}", "description": "Many retries."})
    source = tmp_path / "catalog.yaml"
    source.write_text(yaml.safe_dump(document), encoding="utf-8")
    out_json, out_rules = tmp_path / "tqmon.json", tmp_path / "rules.yaml"
    assert generator("dashboards").main(["--catalog", str(source), "--output", str(out_json)]) == 0
    assert generator("alerts").main(["--catalog", str(source), "--output", str(out_rules)]) == 0

    dashboard = load_dashboard(out_json)
    retries = [p for p in panels(dashboard) if p["title"] == "Retries"]
    assert len(retries) == 1 and "task_queue_retries_total" in retries[0]["targets"][0]["expr"]
    assert retries[0]["description"].endswith("[ManyRetries](docs/runbook.md#manyretries) "
                                              "(warning).")
    rows = {p["title"]: p["gridPos"]["y"] for p in dashboard["panels"] if p["type"] == "row"}
    assert rows["Queues"] < retries[0]["gridPos"]["y"] < rows["Latency"]
    (rule,) = [r for r in load_rules(out_rules) if r["alert"] == "ManyRetries"]
    assert rule["expr"] == 'rate(task_queue_retries_total{job!=""}[5m]) > 2'
    assert promtool("check", "rules", str(out_rules)).returncode == 0


@pytest.mark.parametrize(("expr", "selectors", "grouping"), [
    ('sum by (le) (rate(x_bucket{job=~"$job", a!="b"}[$__rate_interval]))',
     [("x_bucket", {"job", "a"})], {"le"}),
    ("count(up_metric == 0) or vector(0)", [("up_metric", set())], set()),
    ("a * on (worker_id, job) group_left (hostname) b_info", [("a", set()), ("b_info", set())],
     {"worker_id", "job", "hostname"}),
    ("histogram_quantile(0.95, sum(rate(x_bucket[5m])) by (le)) > 1e-9",
     [("x_bucket", set())], {"le"}),
    ('absent(m{job!=""})', [("m", {"job"})], set()),
    ('max without (node_id) (s{state=~"fail|pfail"}) > 0', [("s", {"state"})], {"node_id"}),
    ("deriv(q[15m:1m]) > 0 and q offset 5m > 0", [("q", set()), ("q", set())], set()),
    ('count_values("v", m) > bool 1 unless n', [("m", set()), ("n", set())], set()),
    ('{job="x"}', [("", {"job"})], set()),
    ('m{l="a{b}"}', [("m", {"l"})], set()),  # braces inside a string are not a selector
])
def test_promql_refs(expr, selectors, grouping):
    refs = views.promql_refs(expr)
    assert [(n, set(labels)) for n, labels in refs.selectors] == selectors
    assert set(refs.grouping) == grouping


@pytest.mark.parametrize(("expr", "message"), [
    ("worker_upp == 0", "worker_upp is not in the catalog"),
    ('worker_up{cluster_name="x"}', "worker_up has no label cluster_name"),
    ("task_processing_latency_seconds_sum{le=\"1\"}", "has no label le"),
    ("sum by (prioirty) (task_queue_depth)", "groups on prioirty"),
    ('{job="x"}', "a selector without a name"),
    ("vector(1)", "reads no metric"),
    ("task_queue_depth{priority}", "invalid label matcher"),
])
def test_check_expr_rejects(expr, message):
    with pytest.raises(catalog.CatalogError, match=message):
        views.check_expr(expr, catalog.default())


def test_check_expr_accepts_the_histogram_series_and_the_selector_labels():
    cat = catalog.default()
    used = views.check_expr(
        'sum by (le) (task_processing_latency_seconds_bucket{env="prod"}) '
        "/ ignoring(le) group_left task_processing_latency_seconds_count",
        cat, frozenset({"env"}))
    assert used == {"task_processing_latency_seconds"}


def _broken(change) -> dict:
    document = copy.deepcopy(catalog_source.read_yaml())
    change(document)
    return document


def _first_panel(document: dict) -> dict:
    return document["dashboard"]["rows"][0]["panels"][0]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: _first_panel(d).update(type="graph"), "type must be one of"),
    (lambda d: _first_panel(d).update(unit="furlongs"), "unit must be one of"),
    (lambda d: _first_panel(d).update(width=30), "width"),
    (lambda d: _first_panel(d).update(states="nope"), "states: one of"),
    (lambda d: _first_panel(d).update(colour="red"), "unknown keys"),
    (lambda d: _first_panel(d).pop("description"), "missing keys"),
    (lambda d: _first_panel(d).update(alerts=["Nope"]), "alerts: a list of alert names"),
    (lambda d: _first_panel(d).update(alerts=["WorkerDown"]),
     "WorkerDown reads none of the panel's metrics"),
    (lambda d: _first_panel(d).update(thresholds={"red": "<< p.nope >>"}), "nope"),
    (lambda d: _first_panel(d)["targets"][0].update(expr="sum(nope{<< sel >>})"),
     "nope is not in the catalog"),
    (lambda d: _first_panel(d)["targets"][0].update(expr="sum(worker_up{<< node_sel >>})"),
     "worker_up has no label cluster_name"),
    (lambda d: d["alerts"].append(dict(d["alerts"][0])), "listed twice"),
    (lambda d: d["alerts"][0].update(severity="page"), "severity must be one of"),
    (lambda d: d["alerts"][0].update(runbook="See Runbook"), "runbook"),
    (lambda d: d["alerts"][0].pop("description"), "missing keys"),
    (lambda d: d["alerts"][0].update(name="worker down"), "CamelCase"),
    (lambda d: d["alerts"][0].update(expr="<< p.undefined_param >> > 1"), "undefined_param"),
    (lambda d: d.update(unused={"no_such_metric": "why"}), "not a catalog metric"),
    (lambda d: d.update(unused={"worker_up": ""}), "non-empty"),
    (lambda d: d.pop("alerts"), "the alerts section is missing"),
    (lambda d: d["settings"]["params"].update(window="soon"), "number or a duration"),
    (lambda d: d["metrics"][0].update(panels=[{"title": "x"}]), "unknown keys"),
])
def test_parse_views_rejects(change, message):
    with pytest.raises(catalog.CatalogError, match=message):
        views.parse_views(_broken(change))


def test_views_sections_stay_out_of_the_runtime_catalog():
    """catalog.json (read by every plugin run) keeps only what the plugin needs."""
    assert set(json.loads(catalog.COMPILED.read_text())) == set(catalog_source.RUNTIME_KEYS)


@pytest.mark.parametrize(("expr", "copies"), [
    ("sum(workers_alive)", ["workers_alive"]),  # x N agents
    ("sum by (worker_name) (rate(worker_tasks_processed_total[5m]))",
     ["worker_tasks_processed_total"]),
    ("count(redis_cluster_node_up == 0)", ["redis_cluster_node_up"]),
    ("max without (instance) (worker_up)", ["worker_up"]),  # job and host still apart
    ("sum without (instance, job, host) (workers_alive)", ["workers_alive"]),  # adds copies
    ("worker_up == 0", ["worker_up"]),  # one alert per agent
    ("sum(max without (instance, job, host) (workers_alive))", []),
    ("max by (cluster_name, state) (redis_cluster_slots)", []),
    ("count by (hostname) (max without (instance, job, host) (worker_info))", []),
    ("tqmon_collector_up == 0", []),  # self-metrics stay per agent
])
def test_agent_copies(expr, copies):
    assert views.agent_copies(expr, catalog.default()) == copies
