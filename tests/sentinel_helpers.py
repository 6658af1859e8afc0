"""What the Sentinel tests share: tqmon run through a sentinel set, workers beating through a
Sentinel-managed client, and promtool fed with the series tqmon recorded."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml
from adapter_helpers import poll_tqmon
from helpers import Result, Worker, run_tqmon

from devtools.sentinels import MASTER_NAME, SentinelSet, start_sentinels

PASSWORD = "s3nt1nel-pw"  # the sentinels' own password (requirepass): never printed
ENV = {"TQMON_SENTINEL_PASSWORD": PASSWORD}
TTL = "8"  # seconds: above what a failover of a stopped master takes here (~3-6 s)
RULES = Path(__file__).resolve().parent.parent / "alerts" / "tqmon-rules.yaml"


def sentinel_set() -> Iterator[SentinelSet]:
    """For a module-scoped fixture: one set, its sentinels with PASSWORD."""
    started = start_sentinels(password=PASSWORD)
    yield started
    started.stop()


def beating_fleet(sentinels: SentinelSet, name: str, count: int) -> Iterator[list[Worker]]:
    """For a module-scoped fixture: `count` workers beating through the set, stopped after."""
    started = [worker(sentinels, f"{name}-{i}") for i in range(count)]
    yield started
    for w in started:
        w.stop()


def tqmon(sentinels: SentinelSet, *args: str, env: dict[str, str] | None = None,
          **kwargs) -> Result:
    return run_tqmon(*sentinels.args(), "--heartbeat-ttl", TTL, *args,
                     env={**ENV, **(env or {})}, secret=PASSWORD, **kwargs)


def poll(sentinels: SentinelSet, check, timeout: float, what: str, *args: str) -> Result:
    return poll_tqmon([*sentinels.args(), "--heartbeat-ttl", TTL, *args], check, timeout, what,
                      env=ENV)


def worker(sentinels: SentinelSet, name: str, *args: str) -> Worker:
    """A native worker whose client is redis-py's Sentinel(...).master_for(...)."""
    where = [a for s in sentinels.addresses for a in ("--sentinel", s)]
    return Worker(None, name, *where, "--sentinel-master", MASTER_NAME, *args, ttl=float(TTL),
                  env=ENV)


def master_id(result: Result) -> str:
    return result.series("redis_cluster_sentinel_master_info")[0]["master_id"]


def _series(phases: list[tuple[Result, int]]) -> list[dict[str, str]]:
    """promtool input series: each phase's samples repeated for its minutes, as one agent
    scraping every minute; a series missing from a phase is stale there."""
    keys: dict[str, list[str]] = {}
    total = sum(minutes for _, minutes in phases)
    done = 0
    for result, minutes in phases:
        for sample in result.samples:
            labels = {"job": "telegraf", "instance": "mon1:9273", **sample.labels}
            key = sample.name + "{" + ", ".join(
                f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"
            slots = keys.setdefault(key, ["_"] * total)
            slots[done:done + minutes] = [repr(float(sample.value))] * minutes
        done += minutes
    out = []
    for key, slots in keys.items():
        values, previous = [], "_"
        for value in slots:  # a series that disappears gets a staleness marker, as a scrape
            values.append("stale" if value == "_" and previous != "_" else value)
            previous = value
        out.append({"series": key, "values": " ".join(values)})
    return out


def promtool_alerts(tmp_path: Path, phases: list[tuple[Result, int]],
                    expected: dict[str, list[dict]]) -> None:
    """Feed the recorded runs to promtool and check, at the end of the last phase, that every
    alert of the rules fires exactly as `expected` says (absent: does not fire)."""
    names = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
             for r in g["rules"] if "alert" in r]
    minutes = sum(m for _, m in phases)
    test = {
        "rule_files": [str(RULES)], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": _series(phases), "alert_rule_test": [
            {"eval_time": f"{minutes - 1}m", "alertname": name,
             "exp_alerts": expected.get(name, [])} for name in names]}],
    }
    path = tmp_path / "recorded.test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
