"""The Datadog recipe (docs/recipes/datadog-openmetrics.yaml) against real runs: its series
formula bounds what tqmon emits for random fleets and pool layouts on a real redis-server, and
the real Datadog OpenMetrics V2 check (PyPI `datadog-checks-base`, build/datadog-venv, its stub
aggregator) scraping `tqmon --listen` takes every series: names, types, tags, nothing dropped
at the recipe's limit, and the fleet-level families kept first when a smaller limit cuts."""

from __future__ import annotations

import json
import random
import re
import subprocess

import pytest
import yaml
from adapter_helpers import TESTS
from helpers import run_tqmon
from test_serve import _serve, _stop
from tqmon import catalog
from tqmon.heartbeat import Heartbeat
from tqmon.streams import TaskStreams

from devtools import devcluster, sidevenv

RECIPE = TESTS.parent / "docs" / "recipes" / "datadog-openmetrics.yaml"
FORMULA = ("17 x Redis nodes + 7 x workers + 5 x pools + 8 x streams x groups + 22 x latency "
           "series + 40")


def bound(nodes: int, workers: int, pools: int, streams: int, groups: int, latency: int) -> int:
    return 17 * nodes + 7 * workers + 5 * min(pools, 100) + 8 * streams * groups \
        + 22 * latency + 40


@pytest.fixture(scope="module")
def server():
    started = devcluster.start_standalone()
    yield started
    started.stop()


def _fleet(client, rng: random.Random) -> tuple[int, int, int]:
    """A random fleet in the native contract: deployments named as Kubernetes, StatefulSets
    and hosts name them, some workers dead, some task types. Returns (workers, pools,
    latency series)."""
    client.flushall()
    deployments = ["svc-" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
                   for _ in range(rng.randint(1, 130))]
    workers, latency = rng.randint(1, 300), set()
    for n in range(workers):
        deployment = rng.choice(deployments)
        name = rng.choice([f"{deployment}-5d9f7c6b8-{n:05d}", f"{deployment}-{n}",
                           f"{deployment}.{rng.randint(100, 99999)}"])
        beat = Heartbeat(client, name=name, worker_id=f"w{n}")
        beat.beat()
        if rng.random() < 0.3:
            task = (f"type-{rng.randint(0, 5)}", rng.choice(["high", "medium", "low"]))
            beat.task_finished(0.1, ok=rng.random() < 0.8, task_type=task[0], priority=task[1])
            latency.add(task)
        if rng.random() < 0.1:
            client.zadd("{tq}:workers", {f"w{n}": 1})  # last beat long ago: dead
    TaskStreams(client).ensure_groups()
    return workers, client.scard("{tq}:pools"), len(latency)


def test_recipe_formula_bounds_random_fleets(server):
    text = RECIPE.read_text()
    assert FORMULA in " ".join(line.strip("# ") for line in text.splitlines())
    client = server.client()
    rng = random.Random(21)
    for _ in range(5):
        workers, pools, latency = _fleet(client, rng)
        result = run_tqmon("--redis-url", server.url, "--max-worker-series", "all")
        emitted = result.value("tqmon_series")
        assert emitted == len([line for line in result.stdout.splitlines()
                               if line and not line.startswith("#")])
        assert len(result.series("workers_alive")) == min(pools, 100)
        assert emitted <= bound(1, workers, pools, 3, 1, latency), (workers, pools, latency)
    client.flushall()


def _datadog_names() -> dict[str, str]:
    """Datadog name (namespace tqmon) -> submission type, per catalog metric."""
    names = {}
    for spec in catalog.default().metrics.values():
        base = f"tqmon.{spec.family_name}"
        if spec.type == "counter":
            names[base + ".count"] = "monotonic_count"
        elif spec.type == "histogram":
            for part in ("bucket", "sum", "count"):
                names[f"{base}.{part}"] = "monotonic_count"
        else:  # gauges, and info metrics as gauges under their full name
            names[f"tqmon.{spec.name}"] = "gauge"
    return names


def _check(instance: dict) -> dict:
    done = subprocess.run([str(sidevenv.datadog_python()), str(TESTS / "datadog_check.py"),
                           json.dumps(instance)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_real_datadog_check_takes_every_series(server):
    client = server.client()
    workers, pools, latency = _fleet(client, random.Random(7))
    (instance,) = yaml.safe_load(RECIPE.read_text())["instances"]
    proc, base = _serve("--redis-url", server.url)
    try:
        emitted = run_tqmon("--redis-url", server.url).value("tqmon_series")
        limit = bound(1, workers, pools, 3, 1, latency)
        data = _check({**instance, "openmetrics_endpoint": base + "/metrics",
                       "max_returned_metrics": limit})
        assert not data["error"], data["error"]
        assert data["warnings"] == []  # nothing over the limit, no tag refused
        submitted = data["metrics"]
        expected = _datadog_names()
        for metric in submitted:
            assert expected.get(metric["name"]) == metric["type"], metric
            tags = dict(t.split(":", 1) for t in metric["tags"])
            assert not {"cluster_name", "hostname", "version"} & set(tags), metric
        names = {m["name"] for m in submitted}
        for family in ("tqmon.workers_alive", "tqmon.worker_pool_tasks_processed.count",
                       "tqmon.task_queue_depth", "tqmon.tqmon_series", "tqmon.worker_up"):
            assert family in names
        assert any(t.startswith("tqmon_cluster:") for m in submitted for t in m["tags"])
        # one submission per exposed sample but the +Inf buckets, which the check leaves out
        assert len(submitted) == emitted - latency
        # a limit that cuts: the fleet-level families survive, per-worker ones go first
        cut = _check({**instance, "openmetrics_endpoint": base + "/metrics",
                      "max_returned_metrics": 150})
        kept = {m["name"] for m in cut["metrics"]}
        assert re.search("exceeded limit", " ".join(cut["warnings"]))
        assert {"tqmon.workers_alive", "tqmon.task_queue_depth", "tqmon.tqmon_series",
                "tqmon.dead_workers_detected.count"} <= kept
        assert "tqmon.worker_up" not in kept
    finally:
        _stop(proc)
        client.flushall()
