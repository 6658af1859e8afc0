"""Failovers under tqmon: 3 real sentinels, a master and 2 replicas, a native fleet beating
through redis-py's Sentinel(...).master_for(...). After `SENTINEL FAILOVER`, and after a
SIGSTOPped master is failed over, the first run reports the new master, the fleet and the
queues continue from it, and a worker SIGKILLed afterwards is counted once by 2 collectors.
The two failovers run in order on one set (each test leaves it with a healthy master)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest
from helpers import TQMON, check_exposition
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from sentinel_helpers import (
    ENV,
    PASSWORD,
    TTL,
    beating_fleet,
    master_id,
    poll,
    promtool_alerts,
    sentinel_set,
    tqmon,
    worker,
)
from tqmon.heartbeat import AsyncHeartbeat
from tqmon.streams import TaskStreams

from devtools.sentinels import MASTER_NAME

RUNBOOK = "docs/runbook.md#sentinelfailover"


@pytest.fixture(scope="module")
def sentinels():
    yield from sentinel_set()


@pytest.fixture(scope="module")
def fleet(sentinels):
    yield from beating_fleet(sentinels, "sentinel-worker", 3)


def _settled(result, workers) -> bool:
    """Every node up, replicas linked, and every live worker's beat fresh on this master."""
    nodes = result.series("redis_cluster_node_up")
    return (len(nodes) == 3 and [n["role"] for n in nodes].count("master") == 1
            and all(v == 1 for v in result.values("redis_cluster_node_up"))
            and all(v == 1 for v in result.values("redis_cluster_replica_master_link_up"))
            and all(result.values("worker_heartbeat_age_seconds", worker_name=w.name)
                    and result.value("worker_heartbeat_age_seconds", worker_name=w.name) < 1
                    for w in workers))


def _two_collectors_until_dead(sentinels, victim) -> None:
    """Two tqmon processes at once, again and again, until the victim is reported dead."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}, **ENV}
    end = time.monotonic() + float(TTL) + 15
    while time.monotonic() < end:
        procs = [subprocess.Popen([*TQMON, *sentinels.args(), "--heartbeat-ttl", TTL],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env) for _ in range(2)]
        outputs = [p.communicate(timeout=30) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        dead = False
        for out, err in outputs:
            assert PASSWORD not in out + err
            samples = check_exposition(out)
            dead |= any(s.name == "worker_up" and s.labels.get("worker_name") == victim.name
                        and s.value == 0 for s in samples)
        if dead:
            return
        time.sleep(0.2)
    raise AssertionError(f"{victim.name} not reported dead")


async def _async_beat_across(sentinels) -> tuple[str, float]:
    """Register an AsyncHeartbeat, fail over, beat once: where did the beat land, and when."""
    sentinel = AsyncSentinel([(h, int(p)) for h, _, p in
                              (a.rpartition(":") for a in sentinels.addresses)],
                             socket_timeout=1, sentinel_kwargs={"password": PASSWORD,
                                                                "socket_timeout": 1})
    client = sentinel.master_for(MASTER_NAME, decode_responses=True, socket_timeout=1)
    hb = AsyncHeartbeat(client, name="async-sentinel", worker_id="async-sentinel", ttl=8,
                        interval=1)
    await hb._call("register", *hb._register_args())
    new = await asyncio.to_thread(sentinels.failover)
    await hb.beat()
    score = await client.zscore("{tq}:workers", "async-sentinel")
    await client.aclose()
    named = sentinels.server(new).client().zscore("{tq}:workers", "async-sentinel")
    assert named == score is not None  # written to the new master
    return new, float(score)


def _counted_once(sentinels, deaths: float) -> None:
    for _ in range(2):  # more runs do not count the same death again
        result = tqmon(sentinels)
        assert result.value("dead_workers_detected_total") == deaths
    client = sentinels.master_server().client()
    assert client.hget("{tq}:stats", "dead_workers_detected") == str(int(deaths))


def test_sentinel_failover_command(sentinels, fleet, tmp_path):
    old = sentinels.master_address()
    queues = TaskStreams(sentinels.server(old).client())
    queues.ensure_groups()
    for n in range(5):
        queues.enqueue("high", {"payload": str(n)})
    before = poll(sentinels, lambda r: _settled(r, fleet), 15, "a settled set")
    assert master_id(before) == old and before.total("workers_alive") == 3
    assert before.value("task_queue_depth", priority="high") == 5

    new = sentinels.failover()
    first = tqmon(sentinels)  # the first run after the promotion
    assert first.returncode == 0
    assert master_id(first) == new != old
    assert first.value("redis_cluster_node_up", node_id=new, role="master") == 1
    assert first.value("task_queue_depth", priority="high") == 5  # the queue, from the new master
    assert first.total("workers_alive") == 3
    assert first.value("redis_cluster_sentinel_master_config_epoch") > \
        before.value("redis_cluster_sentinel_master_config_epoch")

    TaskStreams(sentinels.server(new).client()).enqueue("high", {"payload": "after"})
    after = poll(sentinels, lambda r: _settled(r, fleet), 20,
                 "every worker beating on the new master")
    assert after.value("task_queue_depth", priority="high") == 6
    assert after.value("redis_cluster_node_up", node_id=old, role="replica") == 1
    promtool_alerts(tmp_path, [(before, 12), (after, 3)], {"SentinelFailover": [{
        "exp_labels": {"severity": "warning", "cluster_name": "default",
                       "master_name": "tqmon-master"},
        "exp_annotations": {
            "summary": "Redis Sentinel failed the master over.",
            "description": "The sentinels of master tqmon-master (cluster default) moved it "
                           f"1 time(s) in the last 10m: from {old} to {new}. Writes the old "
                           "master had not replicated are lost; clients that do not follow "
                           "Sentinel still write to the old address.",
            "runbook_url": RUNBOOK}}]})

    victim = fleet[0]
    victim.signal(signal.SIGKILL)
    _two_collectors_until_dead(sentinels, victim)
    _counted_once(sentinels, 1)


def test_task_streams_consume_from_the_new_master(sentinels):
    """A consumer (TaskStreams on the Sentinel-managed client, its own prefix) takes the tasks
    queued on the master after a failover; an AsyncHeartbeat on redis.asyncio's Sentinel
    client beats on the new master too."""
    consumer = worker(sentinels, "sentinel-consumer", "--consume", "--prefix", "tqc")
    try:
        old = sentinels.master_address()
        new, beat_at = asyncio.run(_async_beat_across(sentinels))
        now = sentinels.server(new).client().time()
        assert 0 <= now[0] + now[1] / 1e6 - beat_at < 5
        queues = TaskStreams(sentinels.server(new).client(), prefix="tqc")
        for n in range(3):
            queues.enqueue("high", {"payload": f"after-failover-{n}"})
        done = poll(sentinels, lambda r: r.values("task_queue_lag", priority="high") == [0]
                    and r.values("task_queue_pending", priority="high") == [0]
                    and r.total("worker_tasks_processed_total") >= 3, 20,
                    "the tasks consumed from the new master", "--prefix", "tqc")
        assert master_id(done) == new != old
    finally:
        consumer.stop()


def test_sigstopped_master_is_failed_over(sentinels, fleet):
    live = [w for w in fleet if w.proc.poll() is None]
    before = poll(sentinels, lambda r: _settled(r, live), 20, "a settled set")
    old = master_id(before)
    deaths = before.value("dead_workers_detected_total")
    depth = before.values("task_queue_depth", priority="high")
    stopped = sentinels.server(old)
    stopped.signal(signal.SIGSTOP)
    try:
        new = sentinels.wait_master_moved(old, timeout=30)
        first = tqmon(sentinels, "--timeout", "2")
        assert first.returncode == 0 and first.elapsed < 2 + 1.5, first.elapsed
        assert master_id(first) == new != old
        assert first.value("redis_cluster_node_up", node_id=new, role="master") == 1
        assert first.value("redis_cluster_node_up", node_id=old) == 0  # listed, down
        assert first.values("task_queue_depth", priority="high") == depth
        assert first.value("dead_workers_detected_total") == deaths  # no false death
        stopped.signal(signal.SIGCONT)  # it rejoins as a replica; runs no longer wait for it
        poll(sentinels, lambda r: all(
            r.values("worker_heartbeat_age_seconds", worker_name=w.name)
            and r.value("worker_heartbeat_age_seconds", worker_name=w.name) < 1
            for w in live), 20, "the workers beating on the new master")

        victim = live[0]
        victim.signal(signal.SIGKILL)
        _two_collectors_until_dead(sentinels, victim)
        _counted_once(sentinels, deaths + 1)
    finally:
        stopped.signal(signal.SIGCONT)
