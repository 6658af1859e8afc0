"""--schema bullmq against real BullMQ workers (npm, pinned in tests/bullmq/package.json) under
Node on real redis-servers: BullMQ 6 and 5, standalone and a Redis Cluster, a worker SIGKILLed
while it holds a job, and a user without CLIENT LIST."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
import redis
from adapter_helpers import (
    TESTS,
    Process,
    check_signals,
    digest,
    poll_tqmon,
    started_processes,
    wait_for,
)
from helpers import run_tqmon

APP = TESTS / "bullmq"
pytestmark = pytest.mark.skipif(not (shutil.which("node") and (APP / "node_modules").is_dir()),
                                reason="needs Node.js and `make node-deps`")


@pytest.fixture
def processes():
    yield from started_processes()


def _env(url: str, major: str = "6", prefix: str = "bull", cluster: bool = False) -> dict:
    return {"REDIS_URL": url, "BULLMQ_MAJOR": major, "BULLMQ_PREFIX": prefix,
            "CLUSTER": "1" if cluster else "0"}


def _node(env: dict, *args: str) -> None:
    subprocess.run(["node", str(APP / "app.js"), *args], check=True, timeout=60,
                   env={**os.environ, **env}, capture_output=True)


def _worker(env: dict, queue: str, name: str = "-", lock_ms: str = "") -> Process:
    return Process(["node", str(APP / "app.js"), "worker", queue, name, lock_ms], env["REDIS_URL"],
                   env=env)


def _names(client: redis.Redis) -> list[str]:
    return [c["name"] for c in client.client_list() if c["name"]]


def _counts(client: redis.Redis, prefix: str, queue: str) -> dict[str, int]:
    """What Redis holds, read the plain way, to compare with tqmon's numbers."""
    key = f"{prefix}:{queue}:"
    return {"wait": client.llen(key + "wait") + client.llen(key + "paused")
            + client.zcard(key + "prioritized"), "active": client.llen(key + "active"),
            "delayed": client.zcard(key + "delayed"), "completed": client.zcard(key + "completed"),
            "failed": client.zcard(key + "failed")}


def _check_counts(result, client: redis.Redis, prefix: str, queue: str) -> None:
    held = _counts(client, prefix, queue)
    grouped = {"priority": queue, "group": "bullmq"}
    assert result.value("task_queue_depth", priority=queue) == held["wait"]
    assert result.value("task_queue_lag", **grouped) == held["wait"]
    assert result.value("task_queue_pending", **grouped) == held["active"]
    for registry in ("delayed", "completed", "failed"):
        assert result.value("task_queue_registry_jobs", priority=queue,
                            registry=registry) == held[registry]


def test_bullmq_queues_workers_and_a_killed_worker(standalone, processes):
    url, client = standalone.url, standalone.client()
    env = _env(url)
    processes += [_worker(env, "work", "a", "2000"), _worker(env, "work")]
    wait_for(lambda: len([n for n in _names(client) if n.startswith("bull:")]) == 2, 20,
             "two BullMQ workers")
    _node(env, "add", "work", "quick", "5")
    _node(env, "add", "work", "fail", "2")
    _node(env, "add", "work", "quick", "3", '{"delay": 600000}')
    _node(env, "add", "backlog", "quick", "2")
    _node(env, "add", "backlog", "quick", "2", '{"priority": 3}')
    _node(env, "add", "held", "quick", "3")
    _node(env, "pause", "held")

    args = ["--schema", "bullmq", "--redis-url", url, "--collectors", "workers,queues",
            "--bullmq-queues", "work,backlog,held"]
    result = poll_tqmon(args, lambda r: r.values(
        "task_queue_registry_jobs", priority="work", registry="completed") == [5.0]
        and r.values("task_queue_registry_jobs", priority="work", registry="failed") == [2.0],
        20, "the jobs to finish")
    for queue in ("work", "backlog", "held"):
        _check_counts(result, client, "bull", queue)
    assert result.value("task_queue_depth", priority="backlog") == 4
    assert result.value("task_queue_registry_jobs", priority="work", registry="delayed") == 3
    assert result.value("task_queue_registry_jobs", priority="held", registry="paused") == 3
    assert result.value("task_queue_registry_jobs", priority="work", registry="paused") == 0
    assert result.value("task_queue_consumers", priority="work", group="bullmq") == 2
    assert result.value("task_queue_consumers", priority="backlog", group="bullmq") == 0
    assert result.total("workers_alive") == 2
    oldest = min(int(client.hget(f"bull:backlog:{i}", "timestamp"))
                 for i in client.lrange("bull:backlog:wait", -1, -1))
    age = result.value("task_queue_oldest_waiting_age_seconds", priority="backlog",
                       group="bullmq")
    assert abs(age - (time.time() - oldest / 1000)) < 3
    assert result.value("task_queue_oldest_waiting_age_seconds", priority="work",
                        group="bullmq") == 0
    assert result.value("task_queue_orphaned", priority="work", group="bullmq") == 0
    assert sum(result.values("tqmon_skipped_entries")) == 0
    # without --bullmq-queues: the queues connected workers name
    found = run_tqmon("--schema", "bullmq", "--redis-url", url, "--collectors", "queues")
    assert {s["priority"] for s in found.series("task_queue_depth")} == {"work"}

    # one long job each; then SIGKILL the worker with the 2 s lock
    _node(env, "add", "work", "sleep", "2")
    wait_for(lambda: client.llen("bull:work:active") == 2, 20, "both workers busy")
    processes[0].signal(signal.SIGKILL)
    result = poll_tqmon(args, lambda r: r.values(
        "task_queue_orphaned", priority="work", group="bullmq") == [1.0], 10,
        "the killed worker's job orphaned")
    assert result.value("task_queue_pending", priority="work", group="bullmq") == 2
    assert result.value("task_queue_consumers", priority="work", group="bullmq") == 1
    assert result.total("workers_alive") == 1

    # a collection writes nothing (the live worker is frozen: it renews its lock)
    processes[1].signal(signal.SIGSTOP)
    before = digest(client)
    result = run_tqmon(*args)
    assert digest(client) == before
    assert result.value("task_queue_orphaned", priority="work", group="bullmq") == 1
    processes[1].signal(signal.SIGCONT)
    check_signals("bullmq", result)


def test_bullmq_5_and_no_client_list(standalone, processes):
    url, client = standalone.url, standalone.client()
    env = _env(url, major="5")
    processes.append(_worker(env, "five", "n1"))
    wait_for(lambda: "bull:Zml2ZQ==:w:n1" in _names(client), 20, "the BullMQ 5 worker")
    _node(env, "add", "five", "quick", "2")
    _node(env, "pause", "five")
    _node(env, "add", "five", "quick", "3")
    args = ["--schema", "bullmq", "--redis-url", url, "--bullmq-queues", "five"]
    result = poll_tqmon(args, lambda r: r.values(
        "task_queue_registry_jobs", priority="five", registry="completed") == [2.0], 20,
        "the jobs to finish")
    _check_counts(result, client, "bull", "five")
    assert result.value("task_queue_registry_jobs", priority="five", registry="paused") == 3
    assert result.value("task_queue_consumers", priority="five", group="bullmq") == 1

    # a user without +client|list: queues still collected, workers down, one clear line
    client.execute_command("ACL", "SETUSER", "mon", "on", ">s3cret-pw", "~*", "+@read",
                           "+@connection", "+info", "+time", "-client|list")
    result = run_tqmon(*args, "--username", "mon", env={"TQMON_REDIS_PASSWORD": "s3cret-pw"},
                       secret="s3cret-pw")
    assert result.returncode == 0
    assert result.value("tqmon_collector_up", collector="workers") == 0
    assert result.value("tqmon_collector_up", collector="queues") == 1
    assert result.value("task_queue_depth", priority="five") == 3
    assert result.values("task_queue_consumers") == []
    assert "+client|list" in result.stderr


def test_bullmq_on_redis_cluster(cluster, processes):
    """A hash-tagged prefix puts a queue's keys in one slot, as BullMQ's scripts need."""
    prefix, queue = "{bullc}", "clustered"
    env = _env(cluster.urls[0], prefix=prefix, cluster=True)
    processes.append(_worker(env, queue, "c1"))
    _node(env, "add", queue, "quick", "3")
    _node(env, "add", queue, "quick", "2", '{"delay": 600000}')
    args = ["--schema", "bullmq", "--redis-url", cluster.urls[0], "--bullmq-prefix", prefix,
            "--collectors", "workers,queues"]
    result = poll_tqmon(args, lambda r: r.values(
        "task_queue_registry_jobs", priority=queue, registry="completed") == [3.0]
        and r.values("task_queue_consumers", priority=queue, group="bullmq") == [1.0], 30,
        "the clustered queue")
    assert result.value("task_queue_registry_jobs", priority=queue, registry="delayed") == 2
    assert result.value("task_queue_depth", priority=queue) == 0
    assert result.total("workers_alive") == 1
    assert result.value("tqmon_collector_up", collector="queues") == 1
    cluster_client = redis.RedisCluster.from_url(cluster.urls[0])
    try:
        cluster_client.delete(*[k for k in cluster_client.scan_iter(f"{prefix}:*")])
    finally:
        cluster_client.close()


def test_bullmq_legacy_paused_list_and_bad_data(standalone):
    """Keys in the layout of BullMQ versions that renamed `wait` to `paused` while paused
    (written here: the pinned versions no longer do), and a key of the wrong type."""
    client = standalone.client()
    now_ms = int(client.time()[0]) * 1000
    for job_id, age in (("1", 90), ("2", 30)):
        client.hset(f"bull:old:{job_id}", mapping={"timestamp": now_ms - age * 1000, "delay": 0})
    client.lpush("bull:old:paused", "1", "2")  # LPUSH: the oldest at -1
    client.zadd("bull:old:prioritized", {"3": 1})
    client.set("bull:bad:wait", "not a list")
    client.rpush("bull:bad:active", "9")  # active, and no lock: orphaned
    before = digest(client)
    result = run_tqmon("--schema", "bullmq", "--redis-url", standalone.url,
                       "--bullmq-queues", "old,bad", "--collectors", "queues")
    assert digest(client) == before
    assert result.value("task_queue_depth", priority="old") == 3
    assert result.value("task_queue_registry_jobs", priority="old", registry="paused") == 2
    assert 89 <= result.value("task_queue_oldest_waiting_age_seconds", priority="old",
                              group="bullmq") < 95
    assert result.value("task_queue_orphaned", priority="bad", group="bullmq") == 1
    assert result.value("tqmon_skipped_entries", collector="queues", reason="wrong_type") == 1
    assert result.value("tqmon_collector_up", collector="queues") == 1


def test_bullmq_python_and_node_workers_counted_and_discovered(standalone, processes):
    """PyPI's `bullmq` names its connections `<P>:<queue>[:w:<name>]` (Node: base64 of the
    queue) and opens more than one per worker: each worker counts once, whichever language,
    and a queue only Python workers serve is found without --bullmq-queues."""
    from devtools import sidevenv

    url, env = standalone.url, _env(standalone.url)
    python = str(sidevenv.bullmq_python())
    app = str(TESTS / "bullmq_py_app.py")
    processes += [_worker(env, "mixed"), Process([python, app, "worker", "mixed"], url, env=env),
                  Process([python, app, "worker", "mixed", "named"], url, env=env),
                  Process([python, app, "worker", "pyonly"], url, env=env)]
    args = ["--schema", "bullmq", "--redis-url", url]
    result = poll_tqmon(args, lambda r: r.values("workers_alive", pool="mixed") == [3.0]
                        and r.values("workers_alive", pool="pyonly") == [1.0], 20,
                        "one Node and two Python workers on `mixed`, one Python on `pyonly`")
    assert result.value("task_queue_consumers", priority="pyonly", group="bullmq") == 1
    assert result.value("task_queue_consumers", priority="mixed", group="bullmq") == 3
