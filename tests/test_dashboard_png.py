"""`make dashboard-png`, short: a minute of the demo stack (a worker killed, a backlog), every
panel's queries read from the real Prometheus and drawn. Every panel drew data or is listed as
empty by design, and a panel whose query returns nothing is named."""

from __future__ import annotations

import copy
import json

import pytest
from provisioning_helpers import load_dashboard, panels

from devtools import dashboard_png

BROKEN = "Workers alive"  # made to read a job no one scrapes: it must be named as empty


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("png")
    dashboard = copy.deepcopy(load_dashboard())
    target = next(p for p in panels(dashboard) if p["title"] == BROKEN)["targets"][0]
    target["expr"] = target["expr"].replace('job=~"$job"', 'job="nobody-scrapes-this"')
    path = tmp / "tqmon.json"
    path.write_text(json.dumps(dashboard))
    output = tmp / "dashboard.png"
    report, data = dashboard_png.render(60, output, dashboard_path=path, log=lambda _: None)
    return dashboard, report, data, output


def test_every_panel_drew_data_or_is_empty_by_design(run):
    dashboard, report, data, _ = run
    titles = [p["title"] for p in panels(dashboard)]
    assert [d.title for d in data] == titles
    assert report.missing == [BROKEN], report.lines()
    by_design = dashboard_png.load_empty_by_design()
    assert set(report.empty_by_design) == set(by_design)
    assert sorted(report.drawn + list(report.empty_by_design) + report.missing) == sorted(titles)
    # what the death and the backlog must show
    drawn = {d.title: d for d in data}
    dead = [v for s in drawn["Workers dead"].series[0] for v in s.values if v == v]
    assert dead and max(dead) >= 1
    depth = [v for s in drawn["Tasks in queues"].series[0] for v in s.values if v == v]
    assert max(depth) > 3 * max(min(depth), 1), "the burst left no backlog"


def test_the_run_fails_naming_the_empty_panel(run):
    _, report, _, _ = run
    assert f"EMPTY: panel {BROKEN!r} returned nothing in the demo" in report.lines()


def test_the_picture_has_the_dashboard_size(run):
    import matplotlib.image

    dashboard, _, _, output = run
    height, width, _ = matplotlib.image.imread(output).shape
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    assert width == 1600
    assert height == pytest.approx(dashboard_png.dashboard_draw.Canvas.height_for(rows), abs=2)


def test_a_list_naming_a_panel_the_dashboard_lacks_is_refused(run):
    _, _, data, _ = run
    with pytest.raises(ValueError, match="lacks"):
        dashboard_png.check(data, {"No such panel": "why"})


def test_a_table_draws_and_a_panel_type_it_cannot_draw_is_named(run, tmp_path):
    dashboard, _, data, _ = run
    depth = next(p for p in panels(dashboard) if p["title"] == "Queue depth")
    window = dashboard_png.panel_data.TimeRange(data[0].times[0], data[0].times[-1], 1)
    small = {**dashboard, "panels": [{**depth, "type": "table", "gridPos": {
        "x": 0, "y": 0, "w": 8, "h": 8}}]}
    dashboard_png.dashboard_draw.draw(small, data, window, tmp_path / "table.png")
    assert (tmp_path / "table.png").stat().st_size > 1000
    small["panels"][0]["type"] = "piechart"
    with pytest.raises(ValueError, match="'Queue depth': no drawing for type piechart"):
        dashboard_png.dashboard_draw.draw(small, data, window, tmp_path / "pie.png")
