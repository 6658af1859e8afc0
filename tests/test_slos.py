"""The SLO section: its promtool scenario files are current, bad settings are refused."""

from __future__ import annotations

import pytest
import slo_scenarios
from provisioning_helpers import load_rules
from tqmon import catalog

from devtools import catalog_source, generator, slos, views


def test_scenario_tests_are_current():
    module = slo_scenarios
    for step, path in module.OUTPUTS.items():
        assert path.read_text(encoding="utf-8") == module.render(step), \
            f"stale: run `python tests/slo_scenarios.py` ({path.name})"


def test_every_slo_has_the_three_burn_alerts_and_seven_windows():
    alerts = [r for r in load_rules() if r["alert"].endswith("ErrorBudgetBurn")]
    assert {(r["alert"], r["labels"]["severity"], r["labels"]["window"]) for r in alerts} == {
        (f"{name}ErrorBudgetBurn", severity, window)
        for name in ("TaskSuccess", "TaskLatency", "QueueFreshness", "WorkerAvailability")
        for severity, window in (("critical", "1h"), ("critical", "6h"), ("warning", "3d"))}
    page = next(r for r in alerts if r["labels"]["window"] == "1h")
    assert "(14.4 * 0.01)" in page["expr"] and "ratio_rate5m" in page["expr"]
    records = {(r["record"], r["labels"]["slo"]) for r in load_rules(kind="record")}
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert (f"tqmon:slo_errors:ratio_rate{window}", "task-success") in records


def test_overrides_change_objective_and_disable(tmp_path):
    document = catalog_source.read_yaml()
    loaded = views.parse_views(document, {"slos": {"TaskSuccess": {"objective": 0.995},
                                                   "QueueFreshness": {"enabled": False}}})
    found = {s.name: s for s in slos.load(loaded).objectives}
    assert "QueueFreshness" not in found and found["TaskSuccess"].budget == 0.005


@pytest.mark.parametrize(("overrides", "message"), [
    ({"slos": {"TaskLatency": {"threshold": 45}}}, "not a bucket bound"),
    ({"slos": {"TaskSucess": {"objective": 0.9}}}, "no such SLO"),
    ({"slos": {"TaskSuccess": {"objective": 99}}}, "objective"),
    ({"slos": {"TaskSuccess": {"by": ["instance"]}}}, "agent label"),
    ({"slos": {"TaskSuccess": {"by": ["priority"]}}}, "priority"),
    ({"slos": {"TaskSuccess": {"window": "1h"}}}, "unknown keys"),
])
def test_bad_slo_overrides_are_refused(overrides, message):
    loaded = views.parse_views(catalog_source.read_yaml(), overrides)
    with pytest.raises(catalog.CatalogError, match=message):
        slos.load(loaded)


def test_a_threshold_off_the_buckets_exits_2_with_one_line(tmp_path, capsys):
    overrides = tmp_path / "o.yaml"
    overrides.write_text("slos: {TaskLatency: {threshold: 45}}\n")
    for name in ("alerts", "dashboards"):
        out = tmp_path / f"{name}.out"
        assert generator(name).main(["--overrides", str(overrides), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "45" in err and "bucket bound" in err, err
        assert not out.exists()
