"""promtool unit tests for the SLO burn-rate alerts, written from scenarios:

    python tests/slo_scenarios.py      (rewrites alerts/tests/slos*.test.yaml; a test checks them)

Each scenario is an error ratio over time (a total outage, 7x for 7 h, 2x for 4 days, a 3-minute
spike of 50 %, a healthy fleet at 0.1 %) turned into each SLI's input series. The alerts
expected are not written by hand: a small model of the rules (the windows' ratios and the
multi-window conditions, as the SRE workbook states them) computes which fire and with what
value; promtool then checks that Prometheus, evaluating the generated rules, agrees. Each
scenario also asserts what the issue requires of it (pages within 15 minutes, pages nothing...).
Long scenarios use 20-minute samples (the 5m window then holds one sample: no 1h page, which they
do not expect), so promtool stays fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import slos, views  # noqa: E402

OUTPUTS = {1: ROOT / "alerts" / "tests" / "slos.test.yaml",
           20: ROOT / "alerts" / "tests" / "slos-long.test.yaml"}
RULES = ROOT / "alerts" / "tqmon-rules.yaml"
AGENT = 'job="telegraf", instance="mon1:9273"'
RATE = 100  # tasks per minute


@dataclass(frozen=True)
class Scenario:
    name: str
    phases: tuple[tuple[int, float], ...]  # (minutes, error ratio)
    step: int  # minutes between samples and evaluations
    checks: tuple[int, ...]  # evaluation times, minutes
    require: str  # "page" | "page-6h" | "ticket" | "nothing"


def _minutes(duration: str) -> int:
    return int(slos.seconds(duration) // 60)


SCENARIOS = (
    Scenario("a total outage pages within 15 minutes", ((60, 0.001), (15, 1.0)), 1, (75,),
             "page"),
    # 150 minutes of history: the spike's 150 errors stay under 1% of the 3d window
    Scenario("a 3-minute spike of 50% errors, then none, pages nothing",
             ((150, 0.0), (3, 0.5), (60, 0.0)), 1, (155, 170, 213), "nothing"),
    Scenario("a healthy fleet (0.1% errors) fires nothing", ((120, 0.001),), 1, (60, 120),
             "nothing"),
    Scenario("a 7x burn for 7 hours pages (the 6h window)", ((4320, 0.0), (420, 7.0)), 20,
             (4320 + 420,), "page-6h"),
    Scenario("a 2x burn for 4 days opens a ticket", ((5760, 2.0),), 20, (5760,), "ticket"),
)


def _timeline(s: Scenario, budget: float) -> list[float]:
    """The error ratio at each sample; ratios above 1 in `phases` are burn rates."""
    out: list[float] = []
    for minutes, e in s.phases:
        ratio = e * budget if e > 1 else e
        out += [ratio] * (minutes // s.step)
    return [*out, out[-1]]


def _counter(increments: list[float]) -> list[float]:
    total, out = 0.0, []
    for inc in increments:
        out.append(round(total, 6))
        total += inc
    return out


def _values(values: list[float]) -> str:
    """promtool's expanding notation: runs of equal steps as `a+bxN`."""
    parts, i = [], 0
    while i < len(values):
        j = i + 1
        step = values[j] - values[i] if j < len(values) else 0
        while j + 1 < len(values) and abs(values[j + 1] - values[j] - step) < 1e-9:
            j += 1
        n = j - i if j < len(values) else 0
        parts.append(f"{values[i]:g}{'+' if step >= 0 else ''}{round(step, 6):g}x{n}"
                     if n else f"{values[i]:g}")
        i = j + 1 if n else i + 1
    return " ".join(parts)


def _series(slo: slos.Slo, ratios: list[float]) -> tuple[list[dict], list[float], list[float]]:
    """Input series for the SLI, and the model's errors and totals at each sample (counters
    for event SLIs, amounts now for time SLIs)."""
    step_tasks = RATE
    if slo.slo == "task-success":
        errors = _counter([step_tasks * r for r in ratios])
        total = _counter([step_tasks] * len(ratios))
        return [{"series": f'worker_pool_tasks_processed_total{{{AGENT}, pool="billing"}}',
                 "values": _values(total)},
                {"series": f'worker_pool_tasks_failed_total{{{AGENT}, pool="billing"}}',
                 "values": _values(errors)}], errors, total
    if slo.slo == "task-latency":
        total = _counter([step_tasks] * len(ratios))
        good = _counter([step_tasks * (1 - r) for r in ratios])
        labels = f'{AGENT}, task_type="render", priority="high"'
        le = slos.floatToGoString(slo.threshold)
        return [{"series": f"task_processing_latency_seconds_count{{{labels}}}",
                 "values": _values(total)},
                {"series": f'task_processing_latency_seconds_bucket{{{labels}, le="{le}"}}',
                 "values": _values(good)}], [t - g for t, g in zip(total, good, strict=True)], \
            total
    if slo.slo == "worker-availability":
        dead = [round(100 * r, 6) for r in ratios]
        return [{"series": f'workers_alive{{{AGENT}, pool="billing"}}',
                 "values": _values([100 - d for d in dead])},
                {"series": f'workers_dead{{{AGENT}, pool="billing"}}',
                 "values": _values(dead)}], dead, [100.0] * len(ratios)
    # queue-freshness: groups of the queue, the share of them stale now is the ratio; a ratio
    # that no small number of groups gives is made of one group stale part of the time.
    groups = max(1, min(50, round(1 / max(min(r for r in ratios if r) if any(ratios) else 1,
                                           1e-9))))
    stale_age, series, errors = (slo.threshold or 0) + 100, [], []
    for n in range(groups):
        values = []
        for i, r in enumerate(ratios):
            stale = round(r * groups) > n if round(r * groups) >= 1 or r == 0 else \
                n == 0 and i % round(1 / r) == 0
            values.append(stale_age if stale else 10.0)
        series.append({"series": f'task_queue_oldest_waiting_age_seconds{{{AGENT}, '
                                 f'priority="high", group="g{n}"}}', "values": _values(values)})
        errors = [e + (v > (slo.threshold or 0)) for e, v in
                  zip(errors or [0.0] * len(values), values, strict=True)]
    return series, errors, [float(groups)] * len(ratios)


def _ratio(slo: slos.Slo, errors: list[float], total: list[float], i: int, window: str,
           step: int) -> float | None:
    """The recorded error ratio over `window` at sample i: (t - window, t]."""
    n = _minutes(window) // step
    first = max(0, i - n)  # promtool's range [t - window, t] holds the sample at its start
    if slo.kind == "events":
        e, t = errors[i] - errors[first], total[i] - total[first]
        return e / t if t > 0 else None
    now = [errors[k] / total[k] for k in range(first, i + 1) if total[k] > 0]
    return sum(now) / len(now) if now else None


def expected(slo: slos.Slo, burns: tuple[slos.BurnAlert, ...], s: Scenario,
             errors: list[float], total: list[float], at: int) -> list[tuple[slos.BurnAlert,
                                                                            float]]:
    """The burn alerts firing at minute `at`, with the long window's ratio ($value)."""
    firing = []
    for burn in burns:
        limit = slo.factor(burn) * slo.budget

        def burning(i: int, burn: slos.BurnAlert = burn, limit: float = limit) -> bool:
            long = _ratio(slo, errors, total, i, burn.long, s.step)
            short = _ratio(slo, errors, total, i, burn.short, s.step)
            return long is not None and short is not None and long > limit and short > limit

        i = at // s.step
        need = -(-_minutes(burn.for_) // s.step)  # evaluations the condition must hold before
        if all(burning(k) for k in range(max(0, i - need), i + 1)) and i - need >= 0:
            firing.append((burn, _ratio(slo, errors, total, i, burn.long, s.step)))
    return firing


def _require(s: Scenario, slo: slos.Slo, firing: list) -> None:
    windows = {(b.severity, b.long) for b, _ in firing}
    ok = {"page": any(sev == "critical" for sev, _ in windows),
          "page-6h": windows == {("critical", "6h")},
          "ticket": windows == {("warning", "3d")},
          "nothing": not windows}[s.require]
    if not ok:
        raise SystemExit(f"{slo.name}: {s.name}: the rules' model gives {sorted(windows)}")


def tests_for(objectives: slos.Slos, rules: dict[str, dict], step: int) -> list[dict]:
    """One test group per scenario, every SLI in it: promtool evaluates the rules once per step
    for all of them (the SLIs read different series, so they do not meet)."""
    out = []
    for s in (s for s in SCENARIOS if s.step == step):
        series_all, checks = [], []
        for slo in objectives.objectives:
            ratios = _timeline(s, slo.budget)
            series, errors, total = _series(slo, ratios)
            series_all += series
            for at in s.checks:
                firing = expected(slo, objectives.burns, s, errors, total, at)
                _require(s, slo, firing)
                checks.append({"eval_time": f"{at}m", "alertname": slo.alert,
                               "exp_alerts": [_expected_alert(rules[(slo.alert, burn.long)],
                                                              slo, value)
                                              for burn, value in firing]})
        out.append({"name": f"SLOs: {s.name}", "interval": f"{step}m",
                    "input_series": series_all, "alert_rule_test": checks})
    return out


def _expected_alert(rule: dict, slo: slos.Slo, value: float) -> dict:
    """The alert as promtool must see it: the rule's labels and annotations, its templates
    filled with the scenario's labels and the model's value (humanizePercentage: %.4g)."""
    where = {label: {"pool": "billing", "priority": "high"}[label] for label in slo.by}
    text = rule["annotations"]["description"].replace(
        "{{ $value | humanizePercentage }}", f"{value * 100:.4g}%")
    for label, label_value in where.items():
        text = text.replace(f"{{{{ $labels.{label} }}}}", label_value)
    return {"exp_labels": {**rule["labels"], **where},
            "exp_annotations": {**rule["annotations"], "description": text}}


def render(step: int) -> str:
    loaded = views.load_views()
    objectives = slos.load(loaded)
    rules = {(r["alert"], r["labels"]["window"]): r
             for r in slos.alerts(objectives, loaded.runbook_url)}
    # Rule groups run in an unspecified order otherwise: the burn alerts must read the error
    # ratios recorded in the same cycle (in Prometheus they lag by less than an interval).
    order = [g["name"] for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]]
    document = {"rule_files": ["../tqmon-rules.yaml"], "evaluation_interval": f"{step}m",
                "group_eval_order": order, "tests": tests_for(objectives, rules, step)}
    head = (f"# Generated by tests/slo_scenarios.py (do not edit): the SLO burn-rate alerts, "
            f"{step}-minute samples.\n")
    return head + yaml.safe_dump(document, sort_keys=False, width=100)


def main() -> int:
    for step, path in OUTPUTS.items():
        path.write_text(render(step), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
