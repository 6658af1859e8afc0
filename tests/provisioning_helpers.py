"""Shared by the dashboard and alert tests: the generators, promtool, and the PromQL they emit."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "tqmon.json"
RULES = ROOT / "alerts" / "tqmon-rules.yaml"
RULE_TESTS = sorted((ROOT / "alerts" / "tests").glob("*.yaml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
OVERRIDES_EXAMPLE = ROOT / "alerts" / "overrides.example.yaml"
# Grafana's interval variables, as promtool must see them to parse a dashboard query.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "3h"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=180,
                          cwd=ROOT)


def load_dashboard(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def load_rules(path: Path = RULES, kind: str = "alert") -> list[dict]:
    """The alerting rules of a rule file (kind="record": its recording rules)."""
    return [rule for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"] if kind in rule]


def panels(dashboard: dict) -> list[dict]:
    """Every panel but the rows (rows are not collapsed, so panels are all at top level)."""
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def as_promql(grafana_expr: str) -> str:
    """A dashboard query with Grafana's interval variables replaced by durations."""
    for variable, duration in GRAFANA_INTERVALS.items():
        grafana_expr = grafana_expr.replace(variable, duration)
    return grafana_expr


def dashboard_exprs(dashboard: dict) -> list[str]:
    """Every PromQL expression of the dashboard: targets and the variables' label_values()."""
    exprs = [as_promql(t["expr"]) for p in panels(dashboard) for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"])
            assert match, variable["query"]
            exprs.append(match["selector"])
    return exprs


def rule_exprs(path: Path = RULES) -> list[str]:
    return [rule["expr"] for rule in load_rules(path) + load_rules(path, "record")]


def check_parses(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool check rules on the expressions as recording rules: promtool parses each one."""
    rules = {"groups": [{"name": "parse", "rules": [
        {"record": f"tqmon:parse_check:{n}", "expr": expr} for n, expr in enumerate(exprs)]}]}
    path = tmp_path / "parse-check.yaml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return promtool("check", "rules", str(path))
