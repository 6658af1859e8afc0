"""Generate tqmon's Prometheus alert rules (alerts/tqmon-rules.yaml) from the metric catalog.

    python alerts/generate.py [--catalog FILE] [--overrides FILE] [--output FILE] [--check]

The alerts (expression, for, severity, annotations, runbook anchor) are the catalog's `alerts`
section, validated and rendered by views.parse_views; rules.yaml.j2 lays them out as a rule
file. The output is deterministic: CI regenerates it and fails on any difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jinja2
import yaml
from tqmon import catalog, views

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "tqmon-rules.yaml"
GROUP = "tqmon"


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
    """The rule file as data: what the rendered YAML must read back as."""
    return {"groups": [{"name": GROUP, "rules": [
        {"alert": a.name, "expr": a.expr, "for": a.for_, "labels": {"severity": a.severity},
         "annotations": {"summary": a.summary, "description": a.description,
                         "runbook_url": a.runbook_url}}
        for a in views.alerts]}]}


def render(views: views.Views) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["yaml"] = yaml_scalar
    text = env.get_template("rules.yaml.j2").render(alerts=views.alerts, selector=views.selector)
    if yaml.safe_load(text) != rules(views):  # the template's quoting is what it must be
        raise catalog.CatalogError("the rendered rules do not read back as the catalog's alerts")
    return text


def write_or_check(path: Path, text: str, check: bool) -> int:
    """Write path when it differs (or only compare, with check): 0 ok, 1 stale."""
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if check:
        if current != text:
            print(f"{path} is stale: run `make alerts`", file=sys.stderr)
            return 1
    elif current != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alerts/generate.py", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--catalog", type=Path, default=catalog.SOURCE)
    parser.add_argument("--overrides", type=Path, help="YAML of settings to override "
                        "(alerts/overrides.example.yaml)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if --output is stale")
    args = parser.parse_args(argv)
    try:
        text = render(views.load_views(args.catalog, args.overrides))
    except catalog.CatalogError as exc:
        print(f"alerts/generate.py: {exc}", file=sys.stderr)
        return 2
    return write_or_check(args.output, text, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
