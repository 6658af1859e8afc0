"""`tqmon status`: one collection, shown for the person on call.

It runs the exec plugin's collection (run.collect_once) unchanged and reads its samples back by
catalog name, so what a person sees is exactly what Prometheus would have scraped: no second
code path to Redis that could disagree with the dashboard. `summarize` turns the samples into a
plain document (the --json output, whose keys are documented in docs/operations.md and kept
stable); `render` draws that document in at most 80 columns, the worst first.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, TextIO

from . import __version__, catalog, sentinelstatus
from .config import Config
from .model import Histogram, Samples
from .run import collect_once
from .screen import Captured, Style, style_for
from .termsafe import clean_all

JSON_VERSION = 1  # bumped only when a key changes meaning or goes away
WIDTH = 80
NOT_A_TTY_WORKER_ROWS = 20  # worker rows shown when the screen's height is unknown


def _rows(samples: Samples, metric: str) -> Iterator[tuple[dict[str, str], float]]:
    names = catalog.default()[metric].labels
    for labels, value in samples.rows.get(metric, []):
        if not isinstance(value, Histogram):
            yield dict(zip(names, labels, strict=True)), value


def _by(samples: Samples, metric: str, key: str) -> dict[str, float]:
    return {labels[key]: value for labels, value in _rows(samples, metric)}


def _num(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(value, 3)


def summarize(samples: Samples, config: Config, errors: list[str]) -> dict[str, Any]:
    """The --json document: every section present (empty when nothing was collected)."""
    return {
        "version": JSON_VERSION,
        "tqmon_version": __version__,
        "time": round(time.time(), 3),
        "schema": config.schema,
        "prefix": config.prefix,
        "cluster_name": config.cluster_name,
        "nodes": _nodes(samples),
        "sentinel": sentinelstatus.summarize(samples),
        "replication": _replication(samples),
        "workers": _workers(samples),
        "queues": _queues(samples),
        "collectors": _collectors(samples),
        "errors": errors,
    }


def reached(doc: dict[str, Any]) -> bool:
    """Something answered: a Redis node or, when the nodes collector did not run, a collector
    that read what it needed (the nodes collector itself is up even when every node is down)."""
    if any(n["up"] for n in doc["nodes"]):
        return True
    ran = {c["name"] for c in doc["collectors"]}
    return "nodes" not in ran and any(c["up"] for c in doc["collectors"])


def _nodes(samples: Samples) -> list[dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}
    for labels, value in _rows(samples, "redis_cluster_node_up"):
        nodes[labels["node_id"]] = {
            "address": labels["node_id"], "role": labels["role"], "up": value == 1.0,
            "memory_bytes": None, "maxmemory_bytes": None, "ops_per_sec": None,
            "connected_clients": None, "cluster_state_ok": None, "slots": {}}
    fields = {"redis_cluster_memory_bytes": "memory_bytes",
              "redis_cluster_maxmemory_bytes": "maxmemory_bytes",
              "redis_cluster_ops_per_sec": "ops_per_sec",
              "redis_cluster_connected_clients": "connected_clients"}
    for metric, field in fields.items():
        for labels, value in _rows(samples, metric):
            if labels["node_id"] in nodes:
                nodes[labels["node_id"]][field] = _num(value)
    for labels, value in _rows(samples, "redis_cluster_state_ok"):
        if labels["node_id"] in nodes:
            nodes[labels["node_id"]]["cluster_state_ok"] = value == 1.0
    for labels, value in _rows(samples, "redis_cluster_slots"):
        if labels["node_id"] in nodes:
            nodes[labels["node_id"]]["slots"][labels["state"]] = _num(value)
    # down first, then masters before replicas, then by address
    return sorted(nodes.values(), key=lambda n: (n["up"], n["role"] != "master", n["address"]))


def _replication(samples: Samples) -> list[dict[str, Any]]:
    pairs: dict[tuple[str, str], dict[str, Any]] = {}

    def pair(labels: dict[str, str]) -> dict[str, Any]:
        key = (labels["master_id"], labels["replica_id"])
        return pairs.setdefault(key, {"master": key[0], "replica": key[1], "lag_seconds": None,
                                      "link_up": None})

    for labels, value in _rows(samples, "redis_cluster_replication_lag_seconds"):
        pair(labels)["lag_seconds"] = _num(value)
    for labels, value in _rows(samples, "redis_cluster_replica_master_link_up"):
        pair(labels)["link_up"] = value == 1.0
    return sorted(pairs.values(), key=lambda p: (p["link_up"] is not False,
                                                 -(p["lag_seconds"] or 0), p["replica"]))


def _workers(samples: Samples) -> dict[str, Any]:
    alive, dead = _by(samples, "workers_alive", "pool"), _by(samples, "workers_dead", "pool")
    busy = _by(samples, "worker_pool_busy", "pool")
    pools = [{"pool": p, "alive": int(alive.get(p, 0)), "dead": int(dead.get(p, 0)),
              "busy": int(busy[p]) if p in busy else None}
             for p in sorted(set(alive) | set(dead))]
    pools.sort(key=lambda p: (-p["dead"], p["pool"]))
    age = _by(samples, "worker_heartbeat_age_seconds", "worker_id")
    uptime = _by(samples, "worker_uptime_seconds", "worker_id")
    status = _by(samples, "worker_current_status", "worker_id")
    listed = [{"id": labels["worker_id"], "name": labels["worker_name"], "up": value == 1.0,
               "heartbeat_age_seconds": _num(age.get(labels["worker_id"])),
               "uptime_seconds": _num(uptime.get(labels["worker_id"])),
               "busy": None if labels["worker_id"] not in status
               else status[labels["worker_id"]] == 1.0}
              for labels, value in _rows(samples, "worker_up")]
    # the dead first, then the stalest heartbeat: what the person on call looks for
    listed.sort(key=lambda w: (w["up"], -(w["heartbeat_age_seconds"] or 0), w["name"], w["id"]))
    omitted = sum(v for _, v in _rows(samples, "tqmon_worker_series_omitted"))
    return {"alive": int(sum(alive.values())), "dead": int(sum(dead.values())),
            "pools": pools, "list": listed, "not_listed": int(omitted)}


def _queues(samples: Samples) -> list[dict[str, Any]]:
    queues: dict[str, dict[str, Any]] = {}

    def queue(name: str) -> dict[str, Any]:
        return queues.setdefault(name, {"queue": name, "depth": None, "dead_letter": None,
                                        "groups": {}})

    for labels, value in _rows(samples, "task_queue_depth"):
        queue(labels["priority"])["depth"] = _num(value)
    for labels, value in _rows(samples, "task_queue_dead_letter_depth"):
        queue(labels["priority"])["dead_letter"] = _num(value)
    fields = {"task_queue_lag": "lag", "task_queue_pending": "pending",
              "task_queue_consumers": "consumers", "task_queue_orphaned": "orphaned",
              "task_queue_oldest_waiting_age_seconds": "oldest_waiting_seconds",
              "task_queue_oldest_pending_idle_seconds": "oldest_pending_idle_seconds"}
    for metric, field in fields.items():
        for labels, value in _rows(samples, metric):
            groups = queue(labels["priority"])["groups"]
            groups.setdefault(labels["group"], {"group": labels["group"]})[field] = _num(value)
    out = []
    for name in sorted(queues):
        q = queues[name]
        groups = [{"group": g["group"], **{f: g.get(f) for f in fields.values()}}
                  for g in q["groups"].values()]
        out.append({**q, "groups": sorted(groups, key=lambda g: g["group"])})
    return out


def _collectors(samples: Samples) -> list[dict[str, Any]]:
    seconds = _by(samples, "tqmon_collection_duration_seconds", "collector")
    return [{"name": labels["collector"], "up": value == 1.0,
             "seconds": round(seconds.get(labels["collector"], 0.0), 4)}
            for labels, value in _rows(samples, "tqmon_collector_up")]


# ---- rendering ----------------------------------------------------------------------------

def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{seconds:.0f}s" if seconds >= 10 or seconds == int(seconds) else f"{seconds:.1f}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "~"


def render(doc: dict[str, Any], style: Style, height: int | None = None) -> str:
    """The document as text for a person, each line at most 80 columns (colour codes aside).
    Every string in it is cleaned first: names from Redis never act on the terminal."""
    doc = clean_all(doc)
    lines: list[str] = []
    width_mark = 1 if style.color else 2
    plain = {"ok": "", "warning": "!", "problem": "!!"}  # grep '^!' finds what is wrong

    def row(level: str, text: str) -> None:
        lines.append(f"{style.mark(level)} {text}" if style.color
                     else f"{plain[level]:<{width_mark}} {text}")

    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(doc["time"]))
    lines.append(_cut(f"{style.bold('tqmon status')}  schema {doc['schema']}  prefix "
                      f"{doc['prefix']}  cluster {doc['cluster_name']}  {stamp}", WIDTH + 8))
    # Redis
    nodes = doc["nodes"]
    up = sum(n["up"] for n in nodes)
    lines.append("")
    lines.append(style.bold(f"Redis: {up} of {len(nodes)} node(s) up"))
    if nodes:
        lines.append(style.dim(f"{'':{width_mark}} {'NODE':<24} {'ROLE':<8} {'UP':<4} "
                               f"{'MEMORY / MAX':<17} {'OPS/S':>8} {'CLIENTS':>8}"))
    for n in nodes[:16]:
        mem = f"{_bytes(n['memory_bytes'])} / " + (
            _bytes(n["maxmemory_bytes"]) if n["maxmemory_bytes"] else "none")
        full = bool(n["maxmemory_bytes"]) and (n["memory_bytes"] or 0) > 0.9 * n["maxmemory_bytes"]
        level = "problem" if not n["up"] else "warning" if full else "ok"
        text = (f"{_cut(n['address'], 24):<24} {n['role']:<8} "
                f"{'up' if n['up'] else 'DOWN':<4} ")
        if n["up"]:
            text += f"{mem:<17} {_count(n['ops_per_sec']):>8} {_count(n['connected_clients']):>8}"
        row(level, text.rstrip())
    if len(nodes) > 16:
        lines.append(f"{'':{width_mark}} ... and {len(nodes) - 16} more node(s)")
    states = [n for n in nodes if n["cluster_state_ok"] is not None]
    if states:
        ok = all(n["cluster_state_ok"] for n in states)
        slots: dict[str, int] = defaultdict(int)
        for n in states[:1]:
            slots.update(n["slots"])
        detail = ", ".join(f"{v} {k}" for k, v in sorted(slots.items()) if v or k == "ok")
        row("ok" if ok and not slots.get("fail") and not slots.get("pfail") else "problem",
            f"cluster state {'ok' if ok else 'FAIL'}; slots: {detail or '-'}")
    for p in doc["replication"][:8]:
        bad = p["link_up"] is False
        slow = (p["lag_seconds"] or 0) > 10
        row("problem" if bad else "warning" if slow else "ok",
            _cut(f"replica {p['replica']} of {p['master']}: link "
                 f"{'DOWN' if bad else 'up'}, lag {_age(p['lag_seconds'])}", WIDTH - 5))
    sentinelstatus.render(doc.get("sentinel"), row, style.bold, lines)
    # Workers
    w = doc["workers"]
    lines.append("")
    lines.append(style.bold(f"Workers: {w['alive']} alive, ") +
                 (style.bad(f"{w['dead']} dead") if w["dead"] else f"{w['dead']} dead"))
    pools = w["pools"]
    big = len(pools) > 1 and (w["alive"] + w["dead"]) > 20
    if len(pools) > 1:
        lines.append(style.dim(f"{'':{width_mark}} {'POOL':<40} {'ALIVE':>8} {'DEAD':>8} "
                               f"{'BUSY':>8}"))
        for p in pools[:10]:
            row("problem" if p["dead"] else "ok",
                f"{_cut(p['pool'], 40):<40} {p['alive']:>8,} {p['dead']:>8,} "
                f"{_count(p['busy']):>8}")
        if len(pools) > 10:
            lines.append(f"{'':{width_mark}} ... and {len(pools) - 10} more pool(s)")
    listed = w["list"]
    if big:  # a big fleet: the pools say it all, list only the dead
        listed = [x for x in listed if not x["up"]]
    limit = max(5, (height - 30)) if height else NOT_A_TTY_WORKER_ROWS
    if listed:
        lines.append(style.dim(f"{'':{width_mark}} {'WORKER':<40} {'STATE':<6} "
                               f"{'HEARTBEAT':>10} {'UPTIME':>10}"))
    for x in listed[:limit]:
        state = ("dead" if not x["up"] else "busy" if x["busy"] else
                 "idle" if x["busy"] is False else "up")
        name = x["name"] if x["name"] == x["id"] or not x["name"] else f"{x['name']} ({x['id']})"
        row("ok" if x["up"] else "problem",
            f"{_cut(name, 40):<40} {state:<6} {_age(x['heartbeat_age_seconds']):>10} "
            f"{_age(x['uptime_seconds']) if x['up'] else '':>10}".rstrip())
    more = (len(listed) - min(limit, len(listed))) + (0 if big else w["not_listed"])
    if big:
        more = w["dead"] - min(limit, len(listed))
    if more > 0:
        what = "dead worker(s)" if big else "worker(s)"
        lines.append(f"{'':{width_mark}} ... and {more:,} more {what}")
    # Queues
    lines.append("")
    lines.append(style.bold(f"Queues: {len(doc['queues'])}"))
    if doc["queues"]:
        lines.append(style.dim(f"{'':{width_mark}} {'QUEUE':<20} {'GROUP':<12} {'DEPTH':>7} "
                               f"{'LAG':>6} {'PENDING':>7} {'ORPHAN':>6} {'OLDEST':>7}"))
    shown = 0
    for q in doc["queues"]:
        groups = q["groups"] or [{"group": ""}]
        for g in groups:
            if shown >= 20:
                break
            shown += 1
            orphaned = g.get("orphaned") or 0
            oldest = g.get("oldest_waiting_seconds")
            level = "problem" if orphaned else "ok"
            row(level, f"{_cut(q['queue'], 20):<20} {_cut(g['group'], 12):<12} "
                       f"{_count(q['depth']):>7} {_count(g.get('lag')):>6} "
                       f"{_count(g.get('pending')):>7} {_count(g.get('orphaned')):>6} "
                       f"{_age(oldest):>7}")
    total_rows = sum(max(1, len(q["groups"])) for q in doc["queues"])
    if total_rows > shown:
        lines.append(f"{'':{width_mark}} ... and {total_rows - shown} more queue row(s)")
    # Collectors and what went wrong
    lines.append("")
    parts = [(style.ok if c["up"] else style.bad)(
        f"{c['name']} {'ok' if c['up'] else 'FAILED'} {c['seconds'] * 1000:.0f}ms")
        for c in doc["collectors"]]
    lines.append(style.bold("Collectors: ") + ("  ".join(parts) or "none ran"))
    for error in doc["errors"][:8]:
        first, *rest = textwrap.wrap(error, WIDTH - 6) or [""]
        row("warning", first)
        lines.extend(f"{'':{width_mark}}   {line}" for line in rest[:3])
    return "\n".join(lines) + "\n"


# ---- the command --------------------------------------------------------------------------

def _collect(config: Config, captured: Captured) -> dict[str, Any]:
    samples = collect_once(config)
    # config warnings (a password on the command line) in every frame, then the run's own
    return summarize(samples, config, [*config.warnings, *captured.take()])


def main(config: Config, watch: float | None, as_json: bool, captured: Captured,
         out: TextIO | None = None) -> int:
    out = out or sys.stdout
    style = Style(color=False) if as_json else style_for(out)
    if watch is None:
        doc = _collect(config, captured)
        if as_json:
            out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        else:
            out.write(render(doc, style, _height(out)))
        out.flush()
        return 0 if reached(doc) else 1
    return _watch(config, watch, as_json, captured, out, style)


def _height(out: TextIO) -> int | None:
    try:
        return shutil.get_terminal_size().lines if out.isatty() else None
    except (AttributeError, ValueError, OSError):
        return None


def _watch(config: Config, every: float, as_json: bool, captured: Captured, out: TextIO,
           style: Style) -> int:
    """Redraw until Ctrl-C (or SIGTERM); on a terminal in the alternate screen, which is left
    and the cursor shown again on the way out, whatever ends the loop."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM ends it as Ctrl-C does
    screen = style.tty and not as_json
    try:
        if screen:
            out.write("\x1b[?1049h\x1b[?25l")
        while True:
            started = time.monotonic()
            doc = _collect(config, captured)
            if as_json:  # one document a line, for a script reading the stream
                out.write(json.dumps(doc, sort_keys=True) + "\n")
            elif screen:
                text = render(doc, style, _height(out))
                footer = style.dim(f"every {every:g}s; Ctrl-C to quit")
                frame = "\x1b[H" + "".join(line + "\x1b[K\n" for line in
                                           (text + footer).splitlines()) + "\x1b[J"
                out.write(frame)
            else:
                out.write(render(doc, style) + "\n")
            out.flush()
            time.sleep(max(0.0, every - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0
    finally:
        if screen:
            out.write("\x1b[?25h\x1b[?1049l")
            out.flush()
