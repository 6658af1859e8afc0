"""The generated Prometheus rules: current, valid for promtool, unit-tested, documented."""

from __future__ import annotations

import re

import pytest
import yaml
from provisioning_helpers import OVERRIDES_EXAMPLE, RULE_TESTS, RULES, RUNBOOK, load_rules, promtool
from tqmon import catalog

from devtools import catalog_source, generator, views

REQUIRED = {
    # the original system's four
    "WorkerDown", "HighReplicationLag", "RedisNodeDown", "HighTaskFailureRate",
    # and the ones the design adds
    "ClusterStateNotOk", "ClusterSlotsFailing", "RedisMemoryNearMaxmemory",
    "QueueBacklogGrowing", "OldestTaskTooOld", "OrphanedTasks", "DeadWorkersDetected",
    "TqmonCollectorDown", "TqmonAbsent",
    # deployed for real: one page per incident, a stale agent noticed
    "WorkersLost", "TqmonStale",
}
SELF_ALERTS = {"TqmonAbsent", "TqmonCollectorDown", "TqmonStale"}  # per agent by design
RUNBOOK_BASE = "docs/runbook.md#"  # the default runbook_base_url: the file in the bundle


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    return load_rules()


def _anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_committed_rules_are_current(tmp_path):
    fresh = tmp_path / "rules.yaml"
    assert generator("alerts").main(["--output", str(fresh)]) == 0
    assert fresh.read_bytes() == RULES.read_bytes(), "stale: run `make alerts`"
    assert generator("alerts").main(["--check"]) == 0


def test_promtool_check_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(load_rules()) + len(load_rules(kind="record"))
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    assert RULE_TESTS
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test(rules):
    cases: dict[str, set[bool]] = {}
    series: set[str] = set()
    for path in RULE_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == ["../" + RULES.name]
        for test in document["tests"]:
            series |= {s["series"].split("{")[0] for s in test["input_series"]}
            for check in test.get("alert_rule_test", []):
                cases.setdefault(check["alertname"], set()).add(bool(check["exp_alerts"]))
    names = {rule["alert"] for rule in rules}
    assert set(cases) == names, "a unit test names an alert that does not exist, or misses one"
    assert {name: fired for name, fired in cases.items() if fired != {True, False}} == {}
    cat = catalog.default()
    assert {s for s in series if views._resolve(s, cat) is None} <= {"up"}


def test_the_required_alerts_exist(rules):
    assert {rule["alert"] for rule in rules} >= REQUIRED


def test_every_alert_has_severity_annotations_and_a_runbook_section(rules):
    text = RUNBOOK.read_text()
    sections = dict(re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    anchors = {_anchor(title): title for title in sections}
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
        slo = {"slo", "window"} if rule["alert"].endswith("ErrorBudgetBurn") else set()
        assert set(rule["labels"]) == {"severity"} | slo
        assert rule["labels"]["severity"] in views.SEVERITIES
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), url
        title = anchors.get(url.removeprefix(RUNBOOK_BASE))
        assert title == rule["alert"], f"{rule['alert']}: no runbook section for {url}"
        for part in ("**Meaning.**", "**Confirm.**", "**Act.**"):
            assert part in sections[title], f"runbook {title}: no {part}"
    assert set(sections) == {rule["alert"] for rule in rules}, "a runbook section lost its alert"


def test_high_task_failure_rate_is_a_ratio_with_a_volume_guard(rules):
    """failed / finished over the window, per pool, not the original's rate(failed) > 0.1."""
    (rule,) = [r for r in rules if r["alert"] == "HighTaskFailureRate"]
    expr = " ".join(rule["expr"].split())
    failed = "(worker_pool_tasks_failed_total{"
    processed = "(worker_pool_tasks_processed_total{"
    assert expr.index(failed) < expr.index(" / ") < expr.index(processed)
    assert re.search(r"\) > 0\.1 and .*worker_pool_tasks_processed_total.* >= 20$", expr)
    assert "rate(" not in expr


def test_example_overrides_reach_every_rule(tmp_path):
    out = tmp_path / "rules.yaml"
    assert generator("alerts").main(["--overrides", str(OVERRIDES_EXAMPLE),
                                     "--output", str(out)]) == 0
    result = promtool("check", "rules", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    overrides = yaml.safe_load(OVERRIDES_EXAMPLE.read_text())
    rules = {rule["alert"]: rule for rule in load_rules(out)}
    assert "DeadWorkersDetected" not in rules  # enabled: false
    for rule in [*rules.values(), *load_rules(out, "record")]:
        if "tqmon:slo_errors:" in rule["expr"]:
            continue  # reads the recording rules that carry the selector
        assert overrides["selector"] in rule["expr"]
        assert 'job!=""' not in rule["expr"]
    for rule in rules.values():
        assert rule["annotations"]["runbook_url"].startswith(overrides["runbook_base_url"] + "#")
    assert rules["WorkerDown"]["for"] == "5m"
    assert rules["HighReplicationLag"]["expr"].endswith("> 10")
    assert "[15m]" in rules["HighTaskFailureRate"]["expr"]
    assert "alert above 5%" in rules["HighTaskFailureRate"]["annotations"]["description"]


def test_all_alerts_override_sets_every_for(tmp_path):
    """What an end-to-end test uses to see alerts fire within seconds."""
    overrides = tmp_path / "fast.yaml"
    overrides.write_text("all_alerts: {for: 10s}\nalerts: {WorkerDown: {for: 0s}}\n")
    out = tmp_path / "rules.yaml"
    assert generator("alerts").main(["--overrides", str(overrides), "--output", str(out)]) == 0
    fors = {rule["alert"]: rule["for"] for rule in load_rules(out)}
    assert fors.pop("WorkerDown") == "0s"
    assert set(fors.values()) == {"10s"}
    assert promtool("check", "rules", str(out)).returncode == 0


@pytest.mark.parametrize(("overrides", "message"), [
    ({"selectr": "job='x'"}, "unknown keys"),
    ({"params": {"failure_ration": 0.2}}, "no such param"),
    ({"params": {"failure_ratio": "high"}}, "must be like the default"),
    ({"params": {"failure_window": 10}}, "must be like the default"),
    ({"alerts": {"WorkerGone": {"for": "1m"}}}, "no such alert"),
    ({"alerts": {"WorkerDown": {"for": "2 minutes"}}}, "for: a duration"),
    ({"alerts": {"WorkerDown": {"severity": "page"}}}, "severity must be one of"),
    ({"alerts": {"WorkerDown": {"labels": {}}}}, "unknown keys"),
    ({"all_alerts": {"enabled": "no"}}, "enabled: true or false"),
    ({"selector": "tqmon_build_info"}, "label matchers only"),
])
def test_bad_overrides_are_rejected(overrides, message):
    with pytest.raises(catalog.CatalogError, match=message):
        views.parse_views(catalog_source.read_yaml(), overrides)


def test_generator_exits_2_with_one_line_on_bad_overrides(tmp_path, capsys):
    overrides = tmp_path / "bad.yaml"
    overrides.write_text("params: {nope: 1}\n")
    out = tmp_path / "rules.yaml"
    assert generator("alerts").main(["--overrides", str(overrides), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "params.nope" in err
    assert not out.exists()
    overrides.write_text("params: [\n")
    assert generator("alerts").main(["--overrides", str(overrides), "--output", str(out)]) == 2


def _with_more_agents(document: dict) -> dict:
    """The unit tests' fleet series as three agents report them: the original, a second
    Prometheus scrape, and Telegraf (another job, and a `host` label)."""
    for test in document["tests"]:
        alerts = {check["alertname"] for check in test.get("alert_rule_test", [])}
        if alerts & SELF_ALERTS:
            continue
        copies = []
        for series in test["input_series"]:
            name, _, rest = series["series"].partition("{")
            labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
            for agent in ({"instance": "mon2:9840"},
                          {"job": "telegraf-agg", "instance": "agg:9273", "host": "web-3"}):
                text = ", ".join(f'{k}="{v}"' for k, v in {**labels, **agent}.items())
                copies.append({**series, "series": f"{name}{{{text}}}"})
        test["input_series"] += copies
    return document


def test_every_fleet_alert_fires_once_whatever_the_number_of_agents(tmp_path):
    """The same unit tests, every fleet series reported by three agents (one adds Telegraf's
    host label): the same alerts fire, each once, with the same labels."""
    (tests_dir := tmp_path / "tests").mkdir()
    (tmp_path / RULES.name).write_bytes(RULES.read_bytes())
    for path in RULE_TESTS:
        document = _with_more_agents(yaml.safe_load(path.read_text()))
        (tests_dir / path.name).write_text(yaml.safe_dump(document, sort_keys=False))
    result = promtool("test", "rules", *map(str, sorted(tests_dir.glob("*.yaml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_bucket_bounds_spelled_as_go_spells_them_give_the_same_alerts(tmp_path):
    """node_exporter's textfile collector re-exposes tqmon's `le="60.0"` as `le="60"` (Go's
    spelling), and Prometheus 2 stores what it is given: the unit tests with every bound so
    spelled, and with both spellings from two agents at once, fire the same alerts."""
    go = re.compile(r'le="([0-9]+)\.0"')
    (tests_dir := tmp_path / "tests").mkdir()
    (tmp_path / RULES.name).write_bytes(RULES.read_bytes())
    for path in RULE_TESTS:
        document = yaml.safe_load(path.read_text())
        respelled = yaml.safe_load(path.read_text())
        for test in respelled["tests"]:
            for series in test["input_series"]:
                series["series"] = go.sub(r'le="\1"', series["series"])
        (tests_dir / path.name).write_text(yaml.safe_dump(respelled, sort_keys=False))
        for test, other in zip(document["tests"], respelled["tests"], strict=True):
            alerts = {check["alertname"] for check in test.get("alert_rule_test", [])}
            if alerts & SELF_ALERTS:
                continue
            test["input_series"] += [
                {**series, "series": series["series"].replace("{", '{host="web-3", ', 1)}
                for series in other["input_series"] if "le=" in series["series"]]
        (tests_dir / f"both-{path.name}").write_text(yaml.safe_dump(document, sort_keys=False))
    result = promtool("test", "rules", *map(str, sorted(tests_dir.glob("*.yaml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_fleet_facts_are_deduplicated_in_every_rule(rules):
    """Every fleet metric an alert reads is first reduced to one series whoever reported it."""
    cat = catalog.default()
    for rule in rules + load_rules(kind="record"):
        if rule.get("alert") in SELF_ALERTS:
            continue
        assert views.agent_copies(rule["expr"], cat) == [], rule.get("alert", rule.get("record"))
