"""The monitoring mixin (mixin/): current, installable with jsonnet-bundler, and evaluated with
jsonnet it gives the committed rule file and dashboard, or with a `_config` what the generators
give for the same overrides."""

from __future__ import annotations

import json

import _jsonnet
import dashboard_lint
import mixtool_lint
import pytest
import yaml
from provisioning_helpers import DASHBOARD, ROOT, RULES, load_dashboard

from devtools import generator

MIXIN = ROOT / "mixin"
EVALUATE = """
local mixin = (import 'mixin.libsonnet') + { _config+:: %s };
{
  rules: { groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups },
  alerts: mixin.prometheusAlerts,
  dashboards: mixin.grafanaDashboards,
}
"""


def _patch(config: dict) -> str:
    """config as a jsonnet patch, as a user writes one: nested objects merged (`+:`)."""
    return "{" + ", ".join(f"{json.dumps(key)}+: {_patch(value)}" if isinstance(value, dict)
                           else f"{json.dumps(key)}: {json.dumps(value)}"
                           for key, value in config.items()) + "}"


def evaluate(config: dict | None = None) -> dict:
    snippet = EVALUATE % _patch(config or {})
    return json.loads(_jsonnet.evaluate_snippet("evaluate", snippet, jpathdir=[str(MIXIN)]))


@pytest.fixture(scope="module")
def default() -> dict:
    return evaluate()


def test_committed_mixin_is_current():
    assert generator("mixin").main(["--check"]) == 0, "stale: run `make mixin`"


def test_jsonnet_bundler_can_install_it():
    jsonnetfile = json.loads((MIXIN / "jsonnetfile.json").read_text())
    assert jsonnetfile["version"] == 1 and jsonnetfile["dependencies"] == []


def test_the_mixin_gives_the_committed_rules_and_dashboard(default):
    assert default["rules"] == yaml.safe_load(RULES.read_text())
    assert default["dashboards"] == {"tqmon.json": load_dashboard(DASHBOARD)}


def test_the_mixin_passes_mixtools_and_the_dashboard_linters_rules(default):
    assert mixtool_lint.lint(default["alerts"]["groups"], {}) == []
    assert all("alert" in rule for group in default["alerts"]["groups"]
               for rule in group["rules"])  # recording rules are in prometheusRules
    assert dashboard_lint.lint(default["dashboards"]["tqmon.json"]) == []


OVERRIDES = {
    "selector": 'job="telegraf", env="prod"',
    "runbook_base_url": "https://wiki.example.com/ops/tqmon-runbook",
    "params": {"replication_lag_seconds": 10, "memory_ratio": 0.85, "failure_ratio": 0.05,
               "failure_window": "15m", "oldest_task_age_seconds": 600},
    "slos": {"TaskSuccess": {"objective": 0.995}, "QueueFreshness": {"objective": 0.9}},
}


def _config(overrides: dict) -> dict:
    return {"selector": overrides["selector"], "runbook_base_url": overrides["runbook_base_url"],
            "params": overrides["params"], "slos": overrides["slos"]}


def test_config_gives_what_the_generators_give_for_the_same_overrides(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(OVERRIDES))
    rules, dashboard = tmp_path / "rules.yaml", tmp_path / "tqmon.json"
    assert generator("alerts").main(["--overrides", str(path), "--output", str(rules)]) == 0
    assert generator("dashboards").main(["--overrides", str(path), "--output", str(dashboard)]) \
        == 0
    out = evaluate(_config(OVERRIDES))
    assert out["rules"] == yaml.safe_load(rules.read_text())
    assert out["dashboards"]["tqmon.json"] == load_dashboard(dashboard)
    exprs = [rule["expr"] for group in out["rules"]["groups"] for rule in group["rules"]]
    assert any('job="telegraf", env="prod"' in expr for expr in exprs)
    assert any("(14.4 * 0.005)" in expr for expr in exprs)


def test_toggles_leave_alerts_and_slos_out(tmp_path):
    overrides = {"alerts": {"WorkerDown": {"enabled": False, "for": "9m"},
                            "RedisNodeDown": {"severity": "warning"}},
                 "slos": {"QueueFreshness": {"enabled": False}}}
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(overrides))
    rules = tmp_path / "rules.yaml"
    assert generator("alerts").main(["--overrides", str(path), "--output", str(rules)]) == 0
    out = evaluate(overrides)
    assert out["rules"] == yaml.safe_load(rules.read_text())
    text = json.dumps(out)
    names = {rule.get("alert") for group in out["rules"]["groups"] for rule in group["rules"]}
    assert "WorkerDown" not in names and "queue-freshness" not in text
    assert "Queue freshness: burn rate" not in text and "Task success: burn rate" in text
