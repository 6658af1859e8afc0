"""Generate tqmon's monitoring mixin (mixin/mixin.libsonnet) from the metric catalog.

    python mixin/generate.py [--check]        (make mixin; `make dashboards` runs it too)

The mixin is the rule file and the dashboard, with the values a user sets made `_config` fields:
the selector, the runbook URL, every param (thresholds and windows), per alert enabled, for and
severity, per SLO objective and enabled. How it is built: the catalog is rendered once with a
marker in place of each of those values (a selector, numbers and durations nothing else
produces); every rendered string that holds a marker becomes std.format() of `_config`, every
number that is one becomes the `_config` field. Evaluated with the default `_config`, the mixin
gives the committed rule file and dashboard (tests/test_mixin.py checks it with jsonnet).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tqmon.catalog import CatalogError  # noqa: E402

from devtools import catalog_source, generator, slos, views  # noqa: E402

OUTPUT = HERE / "mixin.libsonnet"
JSONNETFILE = HERE / "jsonnetfile.json"
SELECTOR_MARK = 'tqmon_mixin_marker="selector"'
RUNBOOK_MARK = "https://tqmon-mixin.invalid/runbook"


def _percent(value: float) -> str:
    """What the catalog's `percent` filter prints."""
    return f"{value * 100:g}%"


class Marks:
    """Marker values and what replaces them: in strings a %(key)s of the format object, as
    numbers the jsonnet expression."""

    def __init__(self, params: dict[str, Any], objectives: list[str]) -> None:
        self.overrides: dict[str, Any] = {"selector": SELECTOR_MARK, "params": {}, "slos": {},
                                          "runbook_base_url": RUNBOOK_MARK}
        self.text: list[tuple[re.Pattern[str], str]] = []  # longest first
        self.numbers: dict[float, str] = {}
        for n, (name, default) in enumerate(sorted(params.items())):
            if isinstance(default, str):  # a duration
                mark = f"{987600 + n}s"
                self.overrides["params"][name] = mark
                self._text(mark, name)
                continue
            mark = round(0.9876 + (10 + n) * 1e-6, 6)
            self.overrides["params"][name] = mark
            self._text(_percent(mark), f"{name}_percent")
            self._text(str(mark), name)
            self.numbers[mark] = f"config.params.{name}"
        for n, name in enumerate(objectives):
            mark = round(0.9543 + (10 + n) * 1e-6, 6)
            self.overrides["slos"][name] = {"objective": mark}
            key = f"slo_{name}"
            self._text(f"{round((1 - mark) * 100, 10):g}", f"{key}_budget_percent")
            self._text(f"{round(mark * 100, 10):g}", f"{key}_objective_percent")
            self._text(f"{round(1 - mark, 10):g}", f"{key}_budget")
        self.text.append((re.compile(re.escape(SELECTOR_MARK.replace("%", "%%"))), "selector"))
        self.text.append((re.compile(re.escape(RUNBOOK_MARK)), "runbook_base_url"))

    def _text(self, mark: str, key: str) -> None:
        escaped = re.escape(mark.replace("%", "%%"))  # as string() escapes the text first
        self.text.append((re.compile(r"(?<![\w.])" + escaped + r"(?![\w])"), key))

    def string(self, value: str) -> str:
        """A jsonnet expression for a rendered string."""
        escaped, found = value.replace("%", "%%"), False
        for pattern, key in self.text:
            escaped, n = pattern.subn(lambda _, key=key: f"%({key})s", escaped)
            found = found or n > 0
        if not found:
            return json.dumps(value, ensure_ascii=False)
        if re.search(r"9876\d\d|9543\d\d|tqmon_mixin_marker|tqmon-mixin\.invalid", escaped):
            raise CatalogError(f"mixin: a marker the mixin cannot map is left in {value!r}")
        return f"std.format({json.dumps(escaped, ensure_ascii=False)}, format)"


def jsonnet(value: Any, marks: Marks, indent: int = 0) -> str:
    """Data as jsonnet, markers replaced by `_config` references."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        fields = [f"{inner}{json.dumps(k)}: {jsonnet(v, marks, indent + 1)}"
                  for k, v in value.items()]
        return "{\n" + ",\n".join(fields) + ",\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + jsonnet(v, marks, indent + 1) for v in value) + \
            ",\n" + pad + "]"
    if isinstance(value, str):
        return marks.string(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value in marks.numbers:
        return marks.numbers[value]
    return json.dumps(value)


def _alert_rule(rule: dict[str, Any], marks: Marks, indent: int) -> str:
    """An alerting rule, its for and severity from `_config.alerts`, kept when enabled."""
    name = json.dumps(rule["alert"])
    config = f"config.alerts[{name}]"
    body = {**rule, "for": "FOR", "labels": {**rule["labels"], "severity": "SEVERITY"}}
    text = jsonnet(body, marks, indent)
    text = text.replace('"for": "FOR"', f'"for": {config}["for"]')
    text = text.replace('"severity": "SEVERITY"', f"\"severity\": {config}.severity")
    return f"if {config}.enabled then [{text}] else []"


def _slo_rule(rule: dict[str, Any], marks: Marks, indent: int, names: dict[str, str]) -> str:
    """A recording rule or burn alert of an SLO, kept when `_config.slos[name].enabled`."""
    name = json.dumps(names[rule["labels"]["slo"]])
    return f"if config.slos[{name}].enabled then [{jsonnet(rule, marks, indent)}] else []"


def _rules(groups: list[dict[str, Any]], marks: Marks, names: dict[str, str]) -> str:
    out = []
    for group in groups:
        items = [(_slo_rule(r, marks, 3, names) if "slo" in r.get("labels", {}) else
                  _alert_rule(r, marks, 3)) for r in group["rules"]]
        body = ",\n".join("          " + i for i in items)
        out.append(f"      {{\n        name: {json.dumps(group['name'])},\n"
                   f"        rules: std.flattenArrays([\n{body}\n        ]),\n      }}")
    return "[\n" + ",\n".join(out) + ",\n    ]"


def _dashboard(data: dict[str, Any], marks: Marks, panel_slo: dict[int, str]) -> str:
    """The dashboard, the panels of a disabled SLO left out."""
    panels = []
    for panel in data["panels"]:
        text = jsonnet(panel, marks, 4)
        name = panel_slo.get(panel["id"])
        panels.append(f"if config.slos[{json.dumps(name)}].enabled then [{text}] else []"
                      if name else f"[{text}]")
    body = jsonnet({**data, "panels": "PANELS"}, marks, 2)
    return body.replace('"panels": "PANELS"', '"panels": std.flattenArrays([\n      '
                        + ",\n      ".join(panels) + ",\n    ])")


def render() -> str:
    document = catalog_source.read_yaml()
    defaults = views.parse_views(document)
    objectives = slos.load(defaults)
    settings = document["settings"]
    for name, value in settings["params"].items():
        if isinstance(value, float) and value.is_integer():
            raise CatalogError(f"mixin: param {name}: write {value:g}, not {value} (jsonnet "
                               "prints whole numbers without the .0)")
    marks = Marks(settings["params"], [s.name for s in objectives.objectives])
    marked = views.parse_views(document, marks.overrides)
    rules = generator("alerts").rules(marked)["groups"]
    dashboard = json.loads(generator("dashboards").render(marked))
    names = {s.slo: s.name for s in objectives.objectives}
    titles = {f"{s.title}: " for s in objectives.objectives}
    panel_slo = {p["id"]: next(s.name for s in objectives.objectives
                               if p["title"].startswith(f"{s.title}: "))
                 for p in dashboard["panels"] if any(p["title"].startswith(t) for t in titles)}
    config = {
        "selector": defaults.selector, "runbook_base_url": defaults.runbook_url,
        "params": settings["params"],
        "alerts": {a.name: {"enabled": True, "for": a.for_, "severity": a.severity}
                   for a in defaults.alerts},
        "slos": {s.name: {"objective": s.objective, "enabled": True}
                 for s in objectives.objectives},
    }
    record_groups = [g for g in rules if all("record" in r for r in g["rules"])]
    alert_groups = [g for g in rules if g not in record_groups]
    slo_format = "\n".join(
        f"    slo_{name}_budget: fmt(1 - c.slos[{json.dumps(name)}].objective),\n"
        f"    slo_{name}_budget_percent: fmt((1 - c.slos[{json.dumps(name)}].objective) * 100),\n"
        f"    slo_{name}_objective_percent: fmt(c.slos[{json.dumps(name)}].objective * 100),"
        for name in config["slos"])
    return f"""// Generated by mixin/generate.py from plugin/tqmon/catalog.yaml: do not edit, run
// `make mixin`. Change `_config` instead:
//   (import 'tqmon-mixin/mixin.libsonnet') + {{ _config+:: {{
//     selector: 'job="tqmon"', params+: {{ memory_ratio: 0.8 }},
//     alerts+: {{ WorkerDown+: {{ enabled: false }} }},
//     slos+: {{ TaskSuccess+: {{ objective: 0.995 }} }},
//   }} }}
// Evaluated with this `_config`, it gives alerts/tqmon-rules.yaml and dashboards/tqmon.json.
{{
  _config+:: {jsonnet(config, Marks({}, []), 1)},

  // The values the rendered texts take from _config, formatted as the catalog's generators do.
  _format:: {{
    local c = $._config,
    local fmt(x) = std.format('%g', x),
    selector: c.selector,
    runbook_base_url: c.runbook_base_url,
{slo_format}
  }} + {{
    // a number as Python prints it (the shortest text that reads back the same)
    local num(x) =
      local shortest(p) =
        local s = std.format('%.' + p + 'g', x);
        if p >= 17 || std.parseJson(s) == x then s else shortest(p + 1);
      if x == std.floor(x) && std.abs(x) < 1e15 then std.toString(x) else shortest(1),
    [name]: if std.isNumber($._config.params[name]) then num($._config.params[name])
            else $._config.params[name]
    for name in std.objectFields($._config.params)
  }} + {{
    [name + '_percent']: std.format('%g', $._config.params[name] * 100) + '%'
    for name in std.objectFields($._config.params)
    if std.isNumber($._config.params[name])
  }},

  // config and format: evaluated once per field (jsonnet does not cache $._config's merge)
  prometheusRules+:: {{
    local config = $._config,
    local format = $._format,
    groups+: {_rules(record_groups, marks, names)},
  }},

  prometheusAlerts+:: {{
    local config = $._config,
    local format = $._format,
    // The SLOs' burn alerts take severity and for from the catalog's burn_alerts: _config
    // turns them on and off per SLO.
    groups+: {_rules(alert_groups, marks, names)},
  }},

  grafanaDashboards+:: {{
    local config = $._config,
    local format = $._format,
    'tqmon.json': {_dashboard(dashboard, marks, panel_slo)},
  }},
}}
"""


JSONNETFILE_TEXT = json.dumps({"version": 1, "dependencies": [], "legacyImports": True},
                              indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python mixin/generate.py", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if mixin/ is stale")
    args = parser.parse_args(argv)
    try:
        outputs = {OUTPUT: render(), JSONNETFILE: JSONNETFILE_TEXT}
    except CatalogError as exc:
        print(f"mixin/generate.py: {exc}", file=sys.stderr)
        return 2
    stale = [p for p, text in outputs.items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path} is stale: run `make mixin`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(outputs[path], encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
