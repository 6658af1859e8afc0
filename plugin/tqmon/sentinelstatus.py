"""The Sentinel part of `tqmon status`: the master the sentinels name and each sentinel's state,
read back from the run's samples like the rest of status (no second path to Redis)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import catalog
from .model import Samples

MAX_ROWS = 8  # sentinel rows shown; the summary line counts them all


def _rows(samples: Samples, metric: str) -> list[tuple[dict[str, str], float]]:
    names = catalog.default()[metric].labels
    return [(dict(zip(names, labels, strict=True)), float(value))
            for labels, value in samples.rows.get(metric, [])]


def _one(samples: Samples, metric: str) -> float | None:
    rows = _rows(samples, metric)
    return rows[0][1] if rows else None


def summarize(samples: Samples) -> dict[str, Any] | None:
    """The --json `sentinel` section; None when the run asked no sentinel."""
    ups = _rows(samples, "redis_cluster_sentinel_up")
    if not ups:
        return None
    reasons = {labels["sentinel"]: labels["reason"]
               for labels, _ in _rows(samples, "redis_cluster_sentinel_failed")}
    info = _rows(samples, "redis_cluster_sentinel_master_info")
    quorum = _one(samples, "redis_cluster_sentinel_quorum_ok")
    epoch = _one(samples, "redis_cluster_sentinel_master_config_epoch")
    agreeing = _one(samples, "redis_cluster_sentinels_agreeing")
    known = _one(samples, "redis_cluster_sentinels_known")
    return {
        "master_name": ups[0][0]["master_name"],
        "master": info[0][0]["master_id"] if info else None,
        "agreeing": None if agreeing is None else int(agreeing),
        "known": None if known is None else int(known),
        "quorum_ok": None if quorum is None else quorum == 1.0,
        "config_epoch": None if epoch is None else int(epoch),
        "sentinels": sorted(({"address": labels["sentinel"], "up": value == 1.0,
                              "reason": reasons.get(labels["sentinel"])}
                             for labels, value in ups), key=lambda s: (s["up"], s["address"])),
    }


def render(doc: dict[str, Any] | None, row: Callable[[str, str], None], bold: Callable[[str], str],
           lines: list[str]) -> None:
    """Sentinel lines under the Redis section: the master, agreement and quorum, then every
    sentinel that is down (all of them when fewer than MAX_ROWS)."""
    if doc is None:
        return
    sentinels = doc["sentinels"]
    up = sum(s["up"] for s in sentinels)
    lines.append("")
    lines.append(bold(f"Sentinel: master {doc['master'] or 'unknown'} "
                      f"({doc['master_name']}), {up} of {len(sentinels)} sentinel(s) up"))
    if doc["master"] is None:
        row("problem", "no sentinel named the master: see the lines below")
    else:
        agree = doc["agreeing"] or 0
        quorum = {True: "quorum ok", False: "QUORUM LOST", None: "quorum unknown"}[
            doc["quorum_ok"]]
        level = "problem" if doc["quorum_ok"] is False else \
            "warning" if agree < up or doc["quorum_ok"] is None else "ok"
        row(level, f"{agree} agree on the master, {quorum}, config epoch "
                   f"{doc['config_epoch'] if doc['config_epoch'] is not None else '?'}, "
                   f"{doc['known'] or '?'} sentinel(s) known")
    for s in sentinels[:MAX_ROWS]:
        row("ok" if s["up"] else "problem",
            f"sentinel {s['address']}: " + ("up" if s["up"] else f"DOWN ({s['reason']})"))
    if len(sentinels) > MAX_ROWS:
        lines.append(f"   ... and {len(sentinels) - MAX_ROWS} more sentinel(s)")
