"""End to end through the real agents: the demo topology, tqmon writing a textfile read by a real
node_exporter, tqmon --listen, and a real Prometheus scraping both with the generated alert rules
(tests/e2e-overrides.yaml shortens `for:`). Everything is asserted through Prometheus' HTTP API:
every dashboard query evaluates and returns data, and real failures fire their alerts."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tqmon import catalog

from devtools import catalog_source, child_env, devcluster, signals, stack, views

ROOT = Path(__file__).parent.parent
VARIABLES = {"$job": ".+", "$instance": ".+", "$cluster_name": "stack",
             "$__rate_interval": "1m", "$__interval": "1m", "$__range": "1m"}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    rules = tmp_path_factory.mktemp("rules") / "tqmon-rules.yaml"
    subprocess.run([sys.executable, str(ROOT / "alerts" / "generate.py"), "--overrides",
                    str(ROOT / "tests" / "e2e-overrides.yaml"), "--output", str(rules)],
                   check=True, env=child_env())
    with stack.running(rules) as started:
        devcluster.wait_for(lambda: started.query('tqmon_build_info{job="tqmon"}')
                            and started.query('tqmon_build_info{job="node"}')
                            and started.query("worker_up"), 30, "first scrapes", 0.2)
        yield started


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((ROOT / "dashboards" / "tqmon.json").read_text())
    found = []

    def walk(panels: list) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in VARIABLES.items():
                    expr = expr.replace(name, value)
                # every variable replaced ("$1" is label_replace's regex group)
                assert not re.search(r"\$[A-Za-z_]", expr), expr
                found.append((panel["title"], expr))

    walk(dashboard["panels"])
    return found


def _wait_alert(running: stack.Stack, name: str, seen: set[str], timeout: float = 45) -> None:
    end = time.monotonic() + timeout
    while "firing" not in seen:
        assert time.monotonic() < end, f"{name}: states seen {seen}; " + _evidence(running)
        seen |= running.alert_states(name)
        time.sleep(0.2)


def _evidence(running: stack.Stack) -> str:
    """What Prometheus holds of the fleet's death counters, for a failing wait."""
    found = []
    for series in running.query("dead_workers_detected_total[5m]"):
        values = series["values"]
        changes = [(t, v) for (t, v), (_, w) in zip(values[1:], values, strict=False) if v != w]
        found.append(f"{series['metric'].get('job')}: {len(values)} samples from "
                     f"{values[0]}, changes {changes}")
    return "dead_workers_detected_total: " + "; ".join(found)


def test_textfile_reaches_prometheus_through_node_exporter(running):
    (error,) = running.query("node_textfile_scrape_error")
    assert error["value"][1] == "0"
    node = running.query('count(redis_cluster_node_up{job="node"})')
    listen = running.query('count(redis_cluster_node_up{job="tqmon"})')
    assert node[0]["value"][1] == listen[0]["value"][1] == "6"
    # absent() held before the first scrape; the next evaluations clear it
    devcluster.wait_for(lambda: running.alert_states("TqmonAbsent") == set(), 30,
                        "TqmonAbsent to clear")


def test_every_dashboard_query_evaluates(running):
    queries = _panel_queries()
    assert len(queries) > 20
    for _, expr in queries:
        running.query(expr)  # raises on a PromQL error


def test_killed_worker_goes_pending_then_firing(running):
    victim = running.fleet[0]  # the slow one, holding entries: it will leave orphans
    assert running.alert_states("WorkerDown") == set()

    def frozen_holding_entries() -> bool:
        """Stop the victim at a moment it holds entries, so its death leaves orphans."""
        victim.send_signal(signal.SIGSTOP)
        if running.held_by(running.worker_ids[0]) > 0:
            return True
        victim.send_signal(signal.SIGCONT)
        return False

    devcluster.wait_for(frozen_holding_entries, 20, "the victim to hold entries", 0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    seen: set[str] = set()
    _wait_alert(running, "WorkerDown", seen)
    assert "pending" in seen  # for: held it before it fired
    (alert,) = [a for a in running.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "WorkerDown"]
    assert alert["labels"]["worker_name"] == "worker-1"
    assert alert["annotations"]["runbook_url"].endswith("#workerdown")
    _wait_alert(running, "DeadWorkersDetected", set(), timeout=60)


def test_orphaned_tasks_fire(running):
    _wait_alert(running, "OrphanedTasks", set())
    orphaned = running.query('sum(task_queue_orphaned{job="tqmon"})')
    assert float(orphaned[0]["value"][1]) > 0


def test_stopped_redis_node_fires(running):
    assert running.cluster is not None
    replica = running.cluster.replicas()[0]
    replica.kill()
    _wait_alert(running, "RedisNodeDown", set())
    (down,) = [a for a in running.api("alerts")["alerts"]
               if a["labels"]["alertname"] == "RedisNodeDown"]
    assert down["labels"]["node_id"] == replica.address


def _native(expr: str) -> bool:
    """Whether the native schema (what this stack runs) emits every metric of a query (its
    table in the catalog's `signals`, or a nodes / self metric); the other schemas' panels
    are tested in their own files, the Sentinel row (this stack has none) in test_sentinel."""
    cat = catalog.default()
    native = signals.parse_signals(catalog_source.read_yaml(), cat)["native"]
    used = views.check_expr(expr, cat)
    return (all(cat[m].collector != "sentinel" for m in used)
            and all(m in native or cat[m].collector not in signals.COLLECTORS for m in used))


def test_every_dashboard_query_returns_data(running):
    """After the failures above, even the failure-only panels have something to show. The SLO
    panels' subqueries step on whole minutes: on a stack younger than a minute boundary they
    have nothing yet, so they are polled until the first one has passed."""
    queries = [(title, expr) for title, expr in _panel_queries() if _native(expr)]
    minute = [(title, expr) for title, expr in queries if ":1m])" in expr]
    empty = [found for found in queries if found not in minute]
    end = time.monotonic() + 30  # the latest scrapes and evaluations (slower under load)
    while (empty := [(t, e) for t, e in empty if not running.query(e)]) \
            and time.monotonic() < end:
        time.sleep(0.5)
    assert empty == [], "\n".join(f"{t}: {e}" for t, e in empty)
    devcluster.wait_for(lambda: all(running.query(expr) for _, expr in minute), 75,
                        "the SLO panels' first whole minute", 1)


def test_metric_names_in_rules_exist_in_prometheus(running):
    """Every metric the rules use is really scraped (no typo survives to production)."""
    rules = running.api("rules")["groups"]
    names = {m for g in rules for r in g["rules"]
             for m in re.findall(r"\b([a-z_]+(?:_total|_seconds|_bytes|_info|_up|_ok|"
                                 r"_depth|_orphaned|_alive|_dead|_slots))\b", r["query"])}
    sentinel = {m.name for m in catalog.default().metrics.values() if m.collector == "sentinel"}
    for name in names - sentinel:  # no Sentinel here: test_sentinel feeds its rules
        assert running.query(f'count({name}{{job="tqmon"}})'), name
