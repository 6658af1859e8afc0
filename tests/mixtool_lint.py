"""mixtool's alert rules (`mixtool lint`, the monitoring-mixins guidelines for alert names,
labels and annotations), re-implemented: mixtool is a Go binary that cannot be installed here.

Written from the published guidelines (monitoring.mixins.dev, "Guidelines for alert names,
labels, and annotations") and the rule names mixtool reports:

    alert-name-camelcase            the name is CamelCase words
    alert-severity-rule             severity is critical, warning or info
    alert-description-missing-rule  a description annotation exists
    alert-description-templating    ...and uses a Go template ({{ ... }}): the details
    alert-summary-missing-rule      a summary annotation exists
    alert-summary-templating        ...and is static (no template): it groups well
    alert-summary-style             ...and is a sentence: a capital first, a period last

Exclusions live in a `.lint` file in dashboard-linter's format, entries naming an alert:

    exclusions:
      alert-summary-style:
        reason: why the rule does not apply
        entries:            # optional: without entries, the rule is off for every alert
          - alert: SomeAlert
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# Go's RE2 `.` does not match a newline either: Python's default is the same.
CAMEL_CASE = re.compile(r"^([A-Z]+[a-z0-9]+)+$")
GO_TEMPLATE = re.compile(r"\{\{.+}\}")
SENTENCE = re.compile(r"^[A-Z].+\.$")
RULES = ("alert-name-camelcase", "alert-severity-rule", "alert-description-missing-rule",
         "alert-description-templating", "alert-summary-missing-rule",
         "alert-summary-templating", "alert-summary-style")


def check(rule: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(rule name, message) for each guideline one alerting rule breaks."""
    name = str(rule.get("alert", ""))
    annotations = rule.get("annotations") or {}
    if not CAMEL_CASE.match(name):
        yield "alert-name-camelcase", f"{name}: name is not CamelCase"
    severity = (rule.get("labels") or {}).get("severity")
    if severity not in ("critical", "warning", "info"):
        yield "alert-severity-rule", f"{name}: severity {severity!r}"
    if "description" not in annotations:
        yield "alert-description-missing-rule", f"{name}: no description"
    elif not GO_TEMPLATE.search(annotations["description"]):
        yield "alert-description-templating", f"{name}: description uses no template"
    if "summary" not in annotations:
        yield "alert-summary-missing-rule", f"{name}: no summary"
        return
    summary = annotations["summary"]
    if GO_TEMPLATE.search(summary):
        yield "alert-summary-templating", f"{name}: summary uses a template: {summary!r}"
    if not SENTENCE.match(summary):
        yield "alert-summary-style", f"{name}: summary is not a sentence: {summary!r}"


def load_exclusions(path: Path) -> dict[str, dict[str, Any]]:
    """The `exclusions` of a .lint file, checked: known rules, each with a reason."""
    if not path.exists():
        return {}
    exclusions = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("exclusions") or {}
    for rule, entry in exclusions.items():
        if rule not in RULES:
            raise ValueError(f"{path}: {rule} is not a mixtool alert rule")
        if not isinstance(entry, dict) or not str(entry.get("reason") or "").strip():
            raise ValueError(f"{path}: {rule} has no reason")
    return exclusions


def lint(groups: list[dict[str, Any]], exclusions: dict[str, dict[str, Any]]) -> list[str]:
    """Every unexcused finding on the alerting rules of a rule file's groups."""
    found = []
    for group in groups:
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue  # recording rules: mixtool holds only alerts to the guidelines
            for name, message in check(rule):
                exclusion = exclusions.get(name)
                entries = (exclusion or {}).get("entries")
                if exclusion is not None and (
                        not entries or any(e.get("alert") == rule["alert"] for e in entries)):
                    continue
                found.append(f"[{name}] {message}")
    return found
