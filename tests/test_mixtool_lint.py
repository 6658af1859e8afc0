"""The generated alert rules pass mixtool's alert rules (tests/mixtool_lint.py), with exceptions
only from mixin/.lint (none today), and each rule fails an alert that breaks it."""

from __future__ import annotations

import pytest
import yaml
from mixtool_lint import RULES as LINT_RULES
from mixtool_lint import check, lint, load_exclusions
from provisioning_helpers import OVERRIDES_EXAMPLE, ROOT, RULES

from devtools import generator

LINT_FILE = ROOT / "mixin" / ".lint"  # where `mixtool lint mixin/mixin.libsonnet` reads it

GOOD = {"alert": "QueueStuck", "labels": {"severity": "warning"},
        "annotations": {"summary": "A queue is stuck.",
                        "description": "Queue {{ $labels.priority }} is stuck."}}


def _groups(path) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]


def test_committed_rules_pass():
    assert lint(_groups(RULES), load_exclusions(LINT_FILE)) == []


def test_rules_with_the_example_overrides_pass(tmp_path):
    out = tmp_path / "rules.yaml"
    assert generator("alerts").main(["--overrides", str(OVERRIDES_EXAMPLE),
                                     "--output", str(out)]) == 0
    assert lint(_groups(out), load_exclusions(LINT_FILE)) == []


@pytest.mark.parametrize(("change", "rule"), [
    ({"alert": "queue_stuck"}, "alert-name-camelcase"),
    ({"alert": "QUEUESTUCK"}, "alert-name-camelcase"),
    ({"labels": {"severity": "page"}}, "alert-severity-rule"),
    ({"labels": {}}, "alert-severity-rule"),
    ({"annotations": {"summary": "A queue is stuck."}}, "alert-description-missing-rule"),
    ({"annotations": {"summary": "A queue is stuck.", "description": "Stuck."}},
     "alert-description-templating"),
    ({"annotations": {"description": "{{ $value }} stuck."}}, "alert-summary-missing-rule"),
    ({"annotations": {"summary": "Queue {{ $labels.priority }} is stuck.",
                      "description": "{{ $value }}"}}, "alert-summary-templating"),
    ({"annotations": {"summary": "A queue is stuck", "description": "{{ $value }}"}},
     "alert-summary-style"),
    ({"annotations": {"summary": "a queue is stuck.", "description": "{{ $value }}"}},
     "alert-summary-style"),
])
def test_each_rule_fails_an_alert_that_breaks_it(change, rule):
    assert list(check(GOOD)) == []
    assert rule in {name for name, _ in check({**GOOD, **change})}


def test_exclusions_need_a_reason_and_apply_per_alert(tmp_path):
    bad = {**GOOD, "annotations": {**GOOD["annotations"], "summary": "stuck"}}
    groups = [{"name": "g", "rules": [bad, {**bad, "alert": "OtherStuck"}]}]
    lint_file = tmp_path / ".lint"
    lint_file.write_text("exclusions:\n  alert-summary-style:\n"
                         "    entries: [{alert: QueueStuck}]\n")
    with pytest.raises(ValueError, match="no reason"):
        load_exclusions(lint_file)
    lint_file.write_text("exclusions:\n  alert-summary-style:\n    reason: test\n"
                         "    entries: [{alert: QueueStuck}]\n")
    assert lint(groups, load_exclusions(lint_file)) == [
        "[alert-summary-style] OtherStuck: summary is not a sentence: 'stuck'"]
    assert set(LINT_RULES) >= {"alert-summary-style"}
