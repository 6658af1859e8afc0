"""`make dashboard-png`: the dashboard drawn from real data into docs/img/dashboard.png.

Runs the demo stack headless (a Redis Cluster, a producer, a simulated fleet, tqmon --listen and
tqmon's textfile through node_exporter, a real Prometheus scraping both: devtools.stack), lets it
work for --seconds with a worker SIGKILLed holding tasks and a burst of tasks the fleet cannot keep
up with, then reads every panel's queries from Prometheus over that time range (panel_data) and
draws the dashboard as Grafana lays it out (dashboard_draw).

A panel whose queries return nothing fails the run, named, unless dashboards/demo-empty-panels.yaml
lists it with the reason it is empty for this fleet (another queue system's panel, an event the
demo does not cause).

    python -m devtools.dashboard_png [--seconds 120] [--output docs/img/dashboard.png]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import ROOT, dashboard_draw, devcluster, panel_data, stack

DASHBOARD = ROOT / "dashboards" / "tqmon.json"
RULES = ROOT / "alerts" / "tqmon-rules.yaml"
EMPTY_BY_DESIGN = ROOT / "dashboards" / "demo-empty-panels.yaml"
OUTPUT = ROOT / "docs" / "img" / "dashboard.png"
REPLAY = ROOT / "build" / "dashboard-png" / "panels.json"  # the last run's data, for --replay


@dataclass
class Report:
    drawn: list[str]  # panels with data
    empty_by_design: dict[str, str]  # panel -> why, empty as the list says
    missing: list[str]  # empty and not listed: the run fails
    stale: list[str]  # listed as empty but drew data: the list needs updating

    def lines(self) -> list[str]:
        out = [f"{len(self.drawn)} panels drew data; {len(self.empty_by_design)} are empty by "
               f"design ({EMPTY_BY_DESIGN.relative_to(ROOT)})"]
        out += [f"EMPTY: panel {t!r} returned nothing in the demo" for t in self.missing]
        out += [f"listed as empty but drew data: panel {t!r} (remove it from the list)"
                for t in self.stale]
        return out


def load_empty_by_design(path: Path = EMPTY_BY_DESIGN) -> dict[str, str]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) and v.strip()
                                            for v in raw.values()):
        raise ValueError(f"{path}: a mapping of panel title to the reason it is empty")
    return raw


def check(panels: list[panel_data.PanelData], by_design: dict[str, str]) -> Report:
    """Every panel drew data or is listed, with its reason, as empty by design."""
    titles = {p.title for p in panels}
    unknown = sorted(set(by_design) - titles)
    if unknown:
        raise ValueError(f"{EMPTY_BY_DESIGN.name} lists panels the dashboard lacks: {unknown}")
    return Report(
        drawn=[p.title for p in panels if not p.empty],
        empty_by_design={p.title: by_design[p.title] for p in panels
                         if p.empty and p.title in by_design},
        missing=[p.title for p in panels if p.empty and p.title not in by_design],
        stale=[p.title for p in panels if not p.empty and p.title in by_design])


def _kill_holding_tasks(demo: stack.Stack, log: Any) -> None:
    """SIGKILL worker-1 at a moment it holds stream entries: a death that leaves orphans."""
    victim, worker_id = demo.fleet[0], demo.worker_ids[0]
    for _ in range(100):
        victim.send_signal(signal.SIGSTOP)
        if demo.held_by(worker_id):
            break
        victim.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    victim.kill()
    victim.wait()
    log(f"SIGKILLed worker-1 holding {demo.held_by(worker_id)} tasks")


def run_scenario(demo: stack.Stack, seconds: float, log: Any) -> None:
    """Steady work, a death at 30% of the run, a burst (backlog) from 50% to 75%."""
    started = time.monotonic()

    def until(fraction: float) -> None:
        time.sleep(max(0.0, started + seconds * fraction - time.monotonic()))

    until(0.3)
    _kill_holding_tasks(demo, log)
    until(0.5)
    normal, demo.tasks_per_second = demo.tasks_per_second, demo.tasks_per_second * 4
    log(f"burst: {demo.tasks_per_second:.0f} tasks/s, more than the fleet can take")
    until(0.75)
    demo.tasks_per_second = normal
    log(f"back to {normal:.0f} tasks/s")
    until(1.0)


def render(seconds: float, output: Path, dashboard_path: Path = DASHBOARD,
           log: Any = print) -> tuple[Report, list[panel_data.PanelData]]:
    """Run the demo for `seconds`, draw the dashboard into `output`, report on every panel."""
    dashboard = json.loads(dashboard_path.read_text(encoding="utf-8"))
    by_design = load_empty_by_design()
    with stack.running(RULES) as demo:
        assert demo.prometheus is not None
        prom = demo.prometheus
        devcluster.wait_for(lambda: prom.query("tqmon_build_info") and prom.query(
            "worker_up"), 60, "first scrapes", 0.2)
        start = int(time.time())
        log(f"the stack is up; collecting for {seconds:.0f} s")
        run_scenario(demo, seconds, log)
        time.sleep(stack.SCRAPE_SECONDS * 2)  # the last scrape in
        window = panel_data.TimeRange(start, int(time.time()), stack.SCRAPE_SECONDS)
        panels = panel_data.query_dashboard(prom, dashboard, window)
    REPLAY.parent.mkdir(parents=True, exist_ok=True)
    REPLAY.write_text(json.dumps(panel_data.dump(window, panels)), encoding="utf-8")
    report = check(panels, by_design)
    dashboard_draw.draw(dashboard, panels, window, output)
    return report, panels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.dashboard_png", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120, help="how long to collect")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--replay", action="store_true",
                        help=f"draw the last run's data again ({REPLAY.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.replay:
        window, panels = panel_data.load(json.loads(REPLAY.read_text(encoding="utf-8")))
        dashboard_draw.draw(json.loads(DASHBOARD.read_text(encoding="utf-8")), panels, window,
                            args.output)
        print(f"redrew {args.output} from {REPLAY}")
        return 0
    began = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - began:5.0f} s] {line}", flush=True)

    report, _ = render(args.seconds, args.output, log=log)
    for line in report.lines():
        log(line)
    log(f"wrote {args.output}")
    return 1 if report.missing else 0


if __name__ == "__main__":
    sys.exit(main())
