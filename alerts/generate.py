"""Generate tqmon's Prometheus alert rules (alerts/tqmon-rules.yaml) from the metric catalog.

    python alerts/generate.py [--catalog FILE] [--overrides FILE] [--output FILE] [--check]

The alerts (expression, for, severity, annotations, runbook anchor) are the catalog's `alerts`
section, validated and rendered by views.parse_views; rules.yaml.j2 lays them out as a rule
file. The output is deterministic: CI regenerates it and fails on any difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml
from tqmon import catalog

from devtools import slos, views

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "tqmon-rules.yaml"
GROUP = "tqmon"
SLO_RECORDS, SLO_ALERTS = "tqmon-slo-records", "tqmon-slo-alerts"


def yaml_scalar(text: str, indent: int = 0) -> str:
    """text as a YAML scalar: a literal block when it spans lines, plain when YAML reads it back
    unchanged, else single-quoted (PromQL and Go templates are full of quotes and braces)."""
    if "\n" in text:
        pad = " " * indent
        return "|-\n" + "\n".join(pad + line.rstrip() if line.strip() else ""
                                  for line in text.split("\n"))
    try:
        if yaml.safe_load(f"k: {text}") == {"k": text}:
            return text
    except yaml.YAMLError:
        pass
    return "'" + text.replace("'", "''") + "'"


def rules(views: views.Views) -> dict[str, Any]:
    """The rule file as data: what the rendered YAML must read back as. The recording rules
    come first (a mixin's prometheusRules), then the alerts (its prometheusAlerts)."""
    records, slo_alerts = slo_groups(views)
    return {"groups": [*records, {"name": GROUP, "rules": [
        {"alert": a.name, "expr": a.expr, "for": a.for_, "labels": {"severity": a.severity},
         "annotations": {"summary": a.summary, "description": a.description,
                         "runbook_url": a.runbook_url}}
        for a in views.alerts]}, *slo_alerts]}


def slo_groups(views: views.Views) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The SLOs' recording rules and their burn-rate alerts, a group each (none without SLOs)."""
    objectives = slos.load(views)
    everyone = (views.overrides or {}).get("all_alerts")
    records = slos.records(objectives, views.selector)
    alerts = slos.alerts(objectives, views.runbook_url, everyone)
    return ([{"name": SLO_RECORDS, "rules": records}] if records else [],
            [{"name": SLO_ALERTS, "rules": alerts}] if alerts else [])


def render(views: views.Views) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["yaml"] = yaml_scalar
    records, slo_alerts = slo_groups(views)
    text = env.get_template("rules.yaml.j2").render(alerts=views.alerts, selector=views.selector,
                                                    runbook=views.runbook_url,
                                                    slo_records=records, slo_alerts=slo_alerts)
    if yaml.safe_load(text) != rules(views):  # the template's quoting is what it must be
        raise catalog.CatalogError("the rendered rules do not read back as the catalog's alerts")
    return text


def main(argv: list[str] | None = None) -> int:
    return views.generator_main("alerts/generate.py", render, OUTPUT, argv)


if __name__ == "__main__":
    raise SystemExit(main())
