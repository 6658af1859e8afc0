"""Every generated dashboard passes grafana/dashboard-linter's rules (tests/dashboard_lint.py),
with exceptions only from dashboards/.lint, and each rule fails a dashboard that breaks it."""

from __future__ import annotations

import copy
from collections.abc import Callable

import dashboard_lint
import pytest
from provisioning_helpers import DASHBOARD, OVERRIDES_EXAMPLE, load_dashboard

from devtools import generator

LINT_FILE = DASHBOARD.parent / ".lint"
# The rules the issue names, as the linter names them.
EXPECTED_RULES = {
    "template-datasource-rule", "template-job-rule", "template-instance-rule",
    "template-label-promql-rule", "template-on-time-change-reload-rule",
    "panel-datasource-rule", "panel-title-description-rule", "panel-units-rule",
    "panel-no-targets-rule", "target-promql-rule", "target-rate-interval-rule",
    "target-job-rule", "target-instance-rule", "target-counter-agg-rule",
    "uneditable-dashboard",
}
SEL = 'job=~"$job", instance=~"$instance"'


def _unexcused(dashboard: dict) -> list[str]:
    exclusions = dashboard_lint.load_exclusions(LINT_FILE)
    return [str(p) for p in dashboard_lint.lint(dashboard)
            if dashboard_lint.excluded_by(p, exclusions) is None]


def test_rules_are_the_linters():
    assert set(dashboard_lint.RULES) == EXPECTED_RULES


@pytest.mark.parametrize("path", sorted(DASHBOARD.parent.glob("*.json")), ids=lambda p: p.name)
def test_committed_dashboards_pass(path):
    assert _unexcused(load_dashboard(path)) == []


def test_a_dashboard_with_overrides_passes(tmp_path):
    """A user's selector and params change the variables' queries and the thresholds."""
    out = tmp_path / "tqmon.json"
    assert generator("dashboards").main(
        ["--overrides", str(OVERRIDES_EXAMPLE), "--output", str(out)]) == 0
    assert _unexcused(load_dashboard(out)) == []


def test_every_exclusion_has_a_reason_and_is_needed():
    """A stale exclusion would hide the next real problem of its rule."""
    exclusions = dashboard_lint.load_exclusions(LINT_FILE)
    problems = [p for path in DASHBOARD.parent.glob("*.json")
                for p in dashboard_lint.lint(load_dashboard(path))]
    for rule, exclusion in exclusions.items():
        for entry in exclusion.get("entries") or [exclusion]:
            assert any(dashboard_lint.excluded_by(p, {rule: exclusion}) is entry
                       for p in problems), f"{rule}: {entry} excludes nothing"


def _panel(d: dict, title: str = "Worker up") -> dict:
    return next(p for p in dashboard_lint.panels(d) if p["title"] == title)


def _variable(d: dict, name: str) -> dict:
    return next(v for v in d["templating"]["list"] if v["name"] == name)


def _expr(expr: str) -> Callable[[dict], None]:
    return lambda d: _panel(d)["targets"][0].update(expr=expr)


BREAKS: dict[str, Callable[[dict], None]] = {
    "template-datasource-rule": lambda d: _variable(d, "datasource").update(name="ds"),
    "template-job-rule": lambda d: _variable(d, "job").update(allValue=None),
    "template-instance-rule": lambda d: _variable(d, "instance").update(multi=False),
    "template-label-promql-rule":
        lambda d: _variable(d, "job").update(query="label_values(tqmon_build_info{, job)"),
    "template-on-time-change-reload-rule":
        lambda d: _variable(d, "cluster_name").update(refresh=1),
    "uneditable-dashboard": lambda d: d.update(editable=True),
    "panel-datasource-rule":
        lambda d: _panel(d).update(datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}),
    "panel-title-description-rule": lambda d: _panel(d).update(description=""),
    "panel-units-rule": lambda d: _panel(d)["fieldConfig"]["defaults"].update(unit="furlongs"),
    "panel-no-targets-rule": lambda d: _panel(d).update(targets=[]),
    "target-promql-rule": _expr(f"sum(rate(worker_up{{{SEL}}}[$__rate_interval])"),
    "target-rate-interval-rule": _expr(f"rate(worker_tasks_failed_total{{{SEL}}}[5m])"),
    "target-job-rule": _expr('worker_up{instance=~"$instance"}'),
    "target-instance-rule": _expr('worker_up{job=~"$job", instance="host:9100"}'),
    "target-counter-agg-rule": _expr(f"sum(worker_tasks_failed_total{{{SEL}}})"),
}


@pytest.mark.parametrize("rule", sorted(BREAKS))
def test_each_rule_fails_a_dashboard_that_breaks_it(rule):
    broken = copy.deepcopy(load_dashboard())
    BREAKS[rule](broken)
    assert rule in {p.rule for p in dashboard_lint.lint(broken)}


@pytest.mark.parametrize("expr", [
    f"sum(increase(worker_tasks_failed_total{{{SEL}}}[10m]))",  # a fixed window, on purpose
    f"histogram_quantile(0.9, sum by (le) (rate(task_processing_latency_seconds_bucket{{{SEL}}}"
    "[$__rate_interval])))",
    f"time() - tqmon_last_collection_timestamp_seconds{{{SEL}}}",
])
def test_queries_the_rules_accept(expr):
    dashboard = copy.deepcopy(load_dashboard())
    _expr(expr)(dashboard)
    assert [str(p) for p in dashboard_lint.lint(dashboard)
            if p.rule in dashboard_lint.TARGET_RULES] == []


def test_an_exclusion_entry_covers_only_its_panel():
    dashboard = copy.deepcopy(load_dashboard())
    _panel(dashboard, "Worker up")["description"] = ""
    _panel(dashboard, "Worker status")["description"] = ""
    exclusions = {"panel-title-description-rule": {
        "reason": "test", "entries": [{"panel": "Worker up"}]}}
    left = [p.panel for p in dashboard_lint.lint(dashboard)
            if dashboard_lint.excluded_by(p, exclusions) is None]
    assert left == ["Worker status"]


def test_the_job_variable_lists_jobs():
    """template-job-rule reads the label the variable lists, not just any label_values()."""
    dashboard = copy.deepcopy(load_dashboard())
    _variable(dashboard, "job")["query"] = "label_values(tqmon_build_info, instance)"
    assert [p.rule for p in dashboard_lint.lint(dashboard)] == ["template-job-rule"]
