"""Draw a Grafana dashboard with matplotlib, laid out as Grafana lays it out (dark theme).

The 24-column grid (a grid unit 30 px high plus an 8 px gap, a column 1/24 of the width), rows
as headers, each panel with its title; time series with their legend, unit and dashed
thresholds; stats as their last value coloured by thresholds or value mappings over a sparkline;
state timelines as coloured bands with the mapped text; heatmaps of Prometheus buckets. Only
what tqmon's dashboard uses, from the dashboard JSON and panel_data's results.
"""

from __future__ import annotations

import math
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib
import numpy

matplotlib.use("Agg")  # headless: no display on a CI machine
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .panel_data import PanelData, TimeRange

WIDTH_PX, DPI = 1600, 100
COLUMN_PX = WIDTH_PX / 24
UNIT_PX = 38 * WIDTH_PX / 1920  # Grafana: 30 px per grid unit + 8 px margin, at 1920 px wide
HEADER_PX = 70
GAP_PX = 4
BACKGROUND, PANEL, BORDER, TEXT, WEAK = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e"
# Grafana's named colours and its classic palette (series colours, in order).
COLOURS = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "yellow": "#fade2a",
           "blue": "#5794f2", "purple": "#b877d9", "text": TEXT, "dark-orange": "#fa6400",
           "transparent": PANEL, "super-light-green": "#c8f2c2", "dark-red": "#c4162a"}
PALETTE = ("#73bf69", "#fade2a", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff",
           "#ca95e5", "#37872d", "#e0b400", "#1f60c4", "#fa6400", "#c4162a", "#8f3bb8")


# Grafana's "Oranges" scheme on a dark theme: few tasks fade into the panel, many are bright.
HEATMAP = LinearSegmentedColormap.from_list("grafana-oranges", [PANEL, "#7a2e00", "#fa6400",
                                                                "#ffb357", "#ffe8c9"])


def colour(name: str) -> str:
    return COLOURS.get(name, name)


# --- units ---------------------------------------------------------------------------------
def _scaled(value: float, steps: tuple[tuple[float, str], ...], digits: int = 3) -> str:
    for factor, suffix in reversed(steps):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g}{suffix}"
    return f"{value:.{digits}g}{steps[0][1]}"


def fmt(value: float, unit: str) -> str:
    """A value as Grafana's unit formats it (short, bytes, s, ops, cps, percentunit, none)."""
    if value is None or math.isnan(value):
        return "-"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "bytes":
        return _scaled(value, ((1, " B"), (1024, " KiB"), (1024**2, " MiB"), (1024**3, " GiB")))
    if unit == "s":
        if value and abs(value) < 1:
            return f"{value * 1000:.3g} ms"
        return _scaled(value, ((1, " s"), (60, " min"), (3600, " hour"), (86400, " day")))
    short = _scaled(value, ((1, ""), (1e3, " K"), (1e6, " Mil"), (1e9, " Bil")))
    return {"ops": f"{short} ops/s", "cps": f"{short} c/s", "none": f"{value:.4g}"}.get(
        unit, short)


# --- panel options -------------------------------------------------------------------------
def _defaults(panel: dict[str, Any]) -> dict[str, Any]:
    return panel.get("fieldConfig", {}).get("defaults", {})


def _unit(panel: dict[str, Any]) -> str:
    return _defaults(panel).get("unit") or panel.get("options", {}).get("yAxis", {}).get(
        "unit", "short")


def _steps(panel: dict[str, Any]) -> list[dict[str, Any]]:
    return _defaults(panel).get("thresholds", {}).get("steps", [])


def _threshold_colour(panel: dict[str, Any], value: float) -> str:
    chosen = TEXT
    for step in _steps(panel):
        if step.get("value") is None or value >= step["value"]:
            chosen = colour(step["color"])
    return chosen


def _mapped(panel: dict[str, Any], value: float) -> tuple[str, str] | None:
    """(text, colour) of a value mapping that matches, as Grafana shows a mapped value."""
    for mapping in _defaults(panel).get("mappings", []):
        for key, result in mapping.get("options", {}).items():
            try:
                if float(key) == value:
                    return result.get("text", key), colour(result.get("color", "text"))
            except ValueError:
                continue
    return None


# --- drawing -------------------------------------------------------------------------------
class Canvas:
    def __init__(self, rows: int) -> None:
        self.height_px = self.height_for(rows)
        self.fig = plt.figure(figsize=(WIDTH_PX / DPI, self.height_px / DPI), dpi=DPI,
                              facecolor=BACKGROUND)

    @staticmethod
    def height_for(rows: int) -> float:
        """The picture's height in pixels for a dashboard `rows` grid units high."""
        return HEADER_PX + rows * UNIT_PX + GAP_PX

    def box(self, x: float, top: float, w: float, h: float) -> list[float]:
        """Figure coordinates [left, bottom, width, height] of a box given in pixels."""
        return [x / WIDTH_PX, 1 - (top + h) / self.height_px, w / WIDTH_PX, h / self.height_px]

    def text(self, x: float, top: float, s: str, **kw: Any) -> None:
        kw.setdefault("color", TEXT)
        self.fig.text(x / WIDTH_PX, 1 - top / self.height_px, s, va="top", **kw)

    def grid_box(self, pos: dict[str, int]) -> tuple[float, float, float, float]:
        """The pixel box (x, top, w, h) of a gridPos, the margins taken off."""
        return (pos["x"] * COLUMN_PX + GAP_PX, HEADER_PX + pos["y"] * UNIT_PX + GAP_PX,
                pos["w"] * COLUMN_PX - GAP_PX, pos["h"] * UNIT_PX - GAP_PX)


def _frame(canvas: Canvas, panel: dict[str, Any]) -> tuple[float, float, float, float]:
    x, top, w, h = canvas.grid_box(panel["gridPos"])
    left, bottom, width, height = canvas.box(x, top, w, h)
    canvas.fig.patches.append(Rectangle(  # on the figure: an axes per panel costs seconds
        (left, bottom), width, height, facecolor=PANEL, edgecolor=BORDER, linewidth=0.8,
        transform=canvas.fig.transFigure, figure=canvas.fig, zorder=-1))  # under the axes
    canvas.text(x + 8, top + 6, panel["title"], fontsize=8.5, fontweight="bold")
    return x, top + 24, w, h - 24  # the body, under the title


def _style(ax: Any, unit: str, window: TimeRange) -> None:
    ax.set_facecolor(PANEL)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(BORDER)
    ax.tick_params(colors=WEAK, labelsize=6.5, length=2)
    ax.grid(color=BORDER, linewidth=0.5)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, unit)))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=timezone.utc))
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlim(_dates([window.start, window.end]))


def _dates(times: list[float]) -> list[Any]:
    return [mdates.date2num(datetime.fromtimestamp(t, timezone.utc)) for t in times]


def _legend(canvas: Canvas, x: float, top: float, w: float, names: list[tuple[str, str]]
            ) -> None:
    """Grafana's list legend under the graph: as many entries as fit on two lines."""
    cx, line, shown = x, 0, 0
    for name, col in names:
        width = 14 + 6.0 * len(name)
        if cx + width > x + w:
            line, cx = line + 1, x
            if line == 2:
                break
        canvas.fig.patches.append(Rectangle(
            ((cx) / WIDTH_PX, 1 - (top + line * 12 + 7) / canvas.height_px), 10 / WIDTH_PX,
            2.5 / canvas.height_px, color=col, transform=canvas.fig.transFigure, figure=canvas.fig))
        canvas.text(cx + 13, top + line * 12, name, fontsize=6.5)
        cx, shown = cx + width + 8, shown + 1
    if shown < len(names):
        canvas.text(x + w - 60, top + 12, f"+{len(names) - shown} more", fontsize=6.5,
                    color=WEAK)


def timeseries(canvas: Canvas, data: PanelData, window: TimeRange) -> None:
    x, top, w, h = _frame(canvas, data.panel)
    series = [s for target in data.series for s in target]
    legend_h = 28 if series else 0
    ax = canvas.fig.add_axes(canvas.box(x + 52, top, w - 62, h - legend_h - 18))
    unit = _unit(data.panel)
    _style(ax, unit, window)
    dates = _dates(data.times)
    names = []
    for n, s in enumerate(series):
        col = PALETTE[n % len(PALETTE)]
        ax.plot(dates, s.values, color=col, linewidth=1.1)
        names.append((s.name, col))
    values = [v for s in series for v in s.values if not math.isnan(v)]
    if values:
        low, high = min(values), max(values)
        low = 0 if low >= 0 else low
        high = high if high > low else low + 1
        ax.set_ylim(low, high + (high - low) * 0.08)
        for step in _steps(data.panel):
            if step.get("value") is not None and low <= step["value"] <= high * 1.5:
                ax.axhline(step["value"], color=colour(step["color"]), linestyle="--",
                           linewidth=0.9)
                ax.set_ylim(low, max(ax.get_ylim()[1], step["value"] * 1.08))
    else:
        ax.text(0.5, 0.5, "No data", color=WEAK, ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
    _legend(canvas, x + 8, top + h - legend_h + 2, w - 16, names)


def stat(canvas: Canvas, data: PanelData, window: TimeRange) -> None:
    x, top, w, h = _frame(canvas, data.panel)
    series = [s for target in data.series for s in target]
    unit = _unit(data.panel)
    if not series:
        text = _defaults(data.panel).get("noValue", "No data")
        size = 14 if len(text) * 14 * 0.8 < w - 16 else 8.5  # a character is ~0.8 pt wide
        lines = textwrap.wrap(text, max(8, int((w - 16) / (size * 0.8))))
        canvas.text(x + w / 2, top + h / 2 - 6 * len(lines), "\n".join(lines), fontsize=size,
                    ha="center", color=WEAK, linespacing=1.2)
        return
    across = w >= h * 1.5  # several series: side by side in a wide panel, stacked in a tall one
    size = (w / len(series), h) if across else (w, h / len(series))
    for n, s in enumerate(series):
        sx, stop = (x + n * size[0], top) if across else (x, top + n * size[1])
        last = next((v for v in reversed(s.values) if not math.isnan(v)), math.nan)
        mapped = _mapped(data.panel, last)
        text, col = mapped or (fmt(last, unit), _threshold_colour(data.panel, last))
        spark = canvas.fig.add_axes(canvas.box(sx + 4, stop + size[1] * 0.45, size[0] - 8,
                                               size[1] * 0.5))
        spark.set_axis_off()
        spark.fill_between(_dates(data.times), [0 if math.isnan(v) else v for v in s.values],
                           color=col, alpha=0.18, linewidth=0)
        spark.plot(_dates(data.times), s.values, color=col, linewidth=0.8, alpha=0.6)
        spark.set_xlim(_dates([window.start, window.end]))
        finite = [v for v in s.values if not math.isnan(v)] or [0]
        spark.set_ylim(min(0, min(finite)), max(finite) * 1.1 or 1)
        label = s.name if len(series) > 1 else ""
        # a bold character is about 0.7 em wide, and a point 1.39 px at 100 dpi
        fontsize = max(7, min(26, size[1] * 0.33, (size[0] - 16) / max(len(text), 1)))
        canvas.text(sx + size[0] / 2, stop + size[1] * 0.22 - (6 if label else 0), text,
                    fontsize=fontsize, ha="center", color=col, fontweight="bold")
        if label:
            canvas.text(sx + size[0] / 2, stop + 2, label, fontsize=7, ha="center", color=TEXT)


def _runs(values: list[float]) -> list[tuple[int, int, float]]:
    """(first, last, value) for each run of one value, gaps (NaN) left out."""
    runs: list[tuple[int, int, float]] = []
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        if runs and runs[-1][1] == i - 1 and runs[-1][2] == v:
            runs[-1] = (runs[-1][0], i, v)
        else:
            runs.append((i, i, v))
    return runs


def state_timeline(canvas: Canvas, data: PanelData, window: TimeRange) -> None:
    x, top, w, h = _frame(canvas, data.panel)
    series = [s for target in data.series for s in target][:12]
    ax = canvas.fig.add_axes(canvas.box(x + 150, top, w - 160, h - 36))
    _style(ax, "short", window)
    ax.grid(False)
    dates = _dates(data.times)
    step = (dates[1] - dates[0]) if len(dates) > 1 else 1e-5
    seen: dict[str, str] = {}
    span = dates[-1] - dates[0] + step
    for row, s in enumerate(reversed(series)):
        for first, last, value in _runs(s.values):
            text, col = _mapped(data.panel, value) or (fmt(value, "short"),
                                                       _threshold_colour(data.panel, value))
            seen.setdefault(text, col)
            width = dates[last] - dates[first] + step
            ax.add_patch(Rectangle((dates[first], row + 0.1), width, 0.8, color=col,
                                   linewidth=0))
            if width / span * (w - 160) > 6.5 * len(text) + 8:  # Grafana writes it if it fits
                ax.text(dates[first] + width / 2, row + 0.5, text, ha="center", va="center",
                        fontsize=6.5, color="#111217")
    ax.set_ylim(0, max(len(series), 1))
    ax.set_yticks([r + 0.5 for r in range(len(series))])
    ax.set_yticklabels([s.name[:28] for s in reversed(series)], fontsize=6.5, color=TEXT)
    if not series:
        ax.text(0.5, 0.5, "No data", color=WEAK, ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
    _legend(canvas, x + 8, top + h - 14, w - 16, list(seen.items()))


def heatmap(canvas: Canvas, data: PanelData, window: TimeRange) -> None:
    """Prometheus buckets (cumulative, one series per `le`) as per-bucket counts per step."""
    x, top, w, h = _frame(canvas, data.panel)
    buckets = sorted((s for target in data.series for s in target),
                     key=lambda s: float(s.labels.get("le", "inf")))
    ax = canvas.fig.add_axes(canvas.box(x + 52, top, w - 62, h - 18))
    _style(ax, "short", window)
    ax.grid(False)
    if not buckets:
        ax.text(0.5, 0.5, "No data", color=WEAK, ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
        return
    unit = _unit(data.panel)
    cells, below = [], [0.0] * len(data.times)
    for b in buckets:
        counts = [0.0 if math.isnan(v) else v for v in b.values]
        cells.append([max(c - lo, 0.0) for c, lo in zip(counts, below, strict=True)])
        below = counts
    dates = _dates(data.times)
    edges = [*dates, dates[-1] + (dates[1] - dates[0] if len(dates) > 1 else 1e-5)]
    shown = [n for n, row in enumerate(cells) if any(row)] or [0]
    rows = cells[shown[0]:shown[-1] + 1]
    # hideZeroBuckets: an empty cell is not drawn; colour on a square-root scale (exponent 0.5)
    shade = numpy.ma.masked_equal(numpy.sqrt(numpy.array(rows)), 0.0)
    ax.pcolormesh(edges, range(len(rows) + 1), shade, cmap=HEATMAP, shading="flat", vmin=0)
    labels = [fmt(float(b.labels.get("le", "inf")), unit)
              for b in buckets[shown[0]:shown[-1] + 1]]
    every = max(1, math.ceil(len(rows) / 8))
    ax.set_yticks([r + 0.5 for r in range(0, len(rows), every)])
    ax.set_yticklabels(labels[::every], fontsize=6)
    ax.set_ylim(0, len(rows))


def table(canvas: Canvas, data: PanelData, window: TimeRange) -> None:
    """One line per series: its name and last value, coloured as a stat's would be."""
    x, top, w, h = _frame(canvas, data.panel)
    series = [s for target in data.series for s in target]
    unit, lines = _unit(data.panel), int((h - 20) // 15)
    canvas.text(x + 8, top, "Name", fontsize=7, color=WEAK, fontweight="bold")
    canvas.text(x + w - 8, top, "Last", fontsize=7, color=WEAK, fontweight="bold", ha="right")
    for n, s in enumerate(series[:lines]):
        last = next((v for v in reversed(s.values) if not math.isnan(v)), math.nan)
        text, col = _mapped(data.panel, last) or (fmt(last, unit),
                                                  _threshold_colour(data.panel, last))
        canvas.text(x + 8, top + 16 + n * 15, s.name[:int(w / 6.5) - 12], fontsize=7)
        canvas.text(x + w - 8, top + 16 + n * 15, text, fontsize=7, color=col, ha="right")
    if not series:
        canvas.text(x + w / 2, top + h / 2 - 10, "No data", fontsize=9, ha="center", color=WEAK)


# gauge and bargauge show what a stat shows (the last value, coloured by thresholds)
DRAW = {"timeseries": timeseries, "stat": stat, "gauge": stat, "bargauge": stat,
        "state-timeline": state_timeline, "heatmap": heatmap, "table": table}


def draw(dashboard: dict[str, Any], panels: list[PanelData], window: TimeRange,
         output: Path) -> None:
    """The whole dashboard into a PNG at `output`."""
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    canvas = Canvas(bottom)
    start = datetime.fromtimestamp(window.start, timezone.utc)
    end = datetime.fromtimestamp(window.end, timezone.utc)
    canvas.text(12, 12, dashboard["title"], fontsize=15, fontweight="bold")
    minutes = (window.end - window.start) / 60
    variables = [v.get("label") or v["name"] for v in dashboard["templating"]["list"]]
    canvas.text(12, 40, "     ".join(f"{name}: {'Prometheus' if n == 0 else 'All'}"
                                     for n, name in enumerate(variables)), fontsize=8, color=WEAK)
    span = f"{minutes:.0f} minute{'' if round(minutes) == 1 else 's'}"
    canvas.text(WIDTH_PX - 12, 14, f"Last {span}  {start:%Y-%m-%d %H:%M:%S} to "
                f"{end:%H:%M:%S} UTC", fontsize=8.5, ha="right", color=WEAK)
    by_id = {p.panel["id"]: p for p in panels}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            x, top, _, _ = canvas.grid_box(panel["gridPos"])
            canvas.text(x + 2, top + 6, "\u2304  " + panel["title"], fontsize=10.5,
                        fontweight="bold")
            continue
        if panel["type"] not in DRAW:
            raise ValueError(f"panel {panel['title']!r}: no drawing for type {panel['type']}")
        DRAW[panel["type"]](canvas, by_id[panel["id"]], window)
    output.parent.mkdir(parents=True, exist_ok=True)
    canvas.fig.savefig(output, dpi=DPI, facecolor=BACKGROUND)
    plt.close(canvas.fig)
