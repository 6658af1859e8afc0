"""Queue health against real streams: values equal XLEN / XINFO / XPENDING; orphans of a killed
consumer; requeue by several collectors at once, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from helpers import TQMON, Worker, check_exposition, run_tqmon
from redis.crc import key_slot
from tqmon.heartbeat import Heartbeat
from tqmon.streams import TaskStreams

from devtools import devcluster

TTL = "2"


def queues_run(url: str, *args: str):
    return run_tqmon("--redis-url", url, "--collectors", "queues", "--heartbeat-ttl", TTL, *args)


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


def test_values_match_xlen_xinfo_xpending(standalone):
    client = standalone.client()
    queues = TaskStreams(client)
    queues.ensure_groups()
    for i in range(5):
        queues.enqueue("high", {"payload": f"h{i}"})
    for i in range(3):
        queues.enqueue("medium", {"payload": f"m{i}"})
    taken = queues.next("c1", count=2)
    queues.ack("high", taken[0][1])
    time.sleep(0.3)
    before = client.time()
    result = queues_run(standalone.url)
    after = client.time()
    assert result.returncode == 0 and result.stderr == ""
    now_low, now_high = (s * 1000 + us / 1000 for s, us in (before, after))
    for priority in ("high", "medium", "low"):
        key = f"{{tq}}:queue:{priority}"
        labels = {"priority": priority, "group": "workers"}
        assert result.value("task_queue_depth", priority=priority) == client.xlen(key)
        (info,) = client.xinfo_groups(key)
        assert result.value("task_queue_lag", **labels) == info["lag"]
        assert result.value("task_queue_pending", **labels) == info["pending"]
        assert result.value("task_queue_consumers", **labels) == info["consumers"]
        waiting = client.xrange(key, "(" + info["last-delivered-id"], "+", count=1)
        age = result.value("task_queue_oldest_waiting_age_seconds", **labels) * 1000
        if waiting:
            first = _ms(waiting[0][0])
            assert now_low - first - 1 <= age <= now_high - first + 1
        else:
            assert age == 0
        idle = result.value("task_queue_oldest_pending_idle_seconds", **labels)
        pending = client.xpending_range(key, "workers", "-", "+", 1)
        if pending:
            assert 0.3 <= idle <= pending[0]["time_since_delivered"] / 1000 + 0.05
        else:
            assert idle == 0
        assert result.value("task_queue_orphaned", **labels) == 0  # c1 is no worker
    assert result.value("task_queue_pending", priority="high", group="workers") == 1
    assert result.value("task_queue_lag", priority="high", group="workers") == 3


def test_null_lag_is_reported_as_unknown(standalone):
    client = standalone.client()
    queues = TaskStreams(client)
    queues.ensure_groups()
    ids = [queues.enqueue("low", {"payload": str(i)}) for i in range(5)]
    queues.next("c1", count=1)
    client.xdel("{tq}:queue:low", ids[3])  # a tombstone after the group's position
    (info,) = client.xinfo_groups("{tq}:queue:low")
    assert info["lag"] is None  # Redis itself cannot tell
    result = queues_run(standalone.url)
    assert result.values("task_queue_lag", priority="low") == []
    assert result.value("task_queue_pending", priority="low", group="workers") == 1
    assert result.value("task_queue_depth", priority="low") == 4
    assert result.value("task_queue_lag", priority="high", group="workers") == 0


def test_wrong_type_missing_group_missing_stream(standalone):
    client = standalone.client()
    client.set("{tq}:queue:high", "not a stream")
    client.xadd("{tq}:queue:medium", {"payload": "x"})  # a stream without the group
    result = queues_run(standalone.url)
    assert result.returncode == 0
    assert result.value("tqmon_collector_up", collector="queues") == 1
    skipped = {s["reason"]: result.value("tqmon_skipped_entries", **s)
               for s in result.series("tqmon_skipped_entries")}
    assert skipped["wrong_type"] == 1 and skipped["missing_group"] == 1
    assert skipped["missing_stream"] == 1
    assert result.values("task_queue_depth", priority="high") == []
    assert result.value("task_queue_depth", priority="medium") == 1
    assert result.value("task_queue_depth", priority="low") == 0
    assert "is not a stream" in result.stderr and "no consumer group workers" in result.stderr


def test_killed_consumer_orphans_then_requeue_by_four_collectors_exactly_once(
        standalone, workers):
    client = standalone.client()
    queues = TaskStreams(client)
    queues.ensure_groups()
    payloads = [f"p{i}" for i in range(90)]
    for i, payload in enumerate(payloads):
        queues.enqueue(("high", "medium", "low")[i % 3], {"type": "job", "payload": payload})
    record = ("--consume", "--record", "{tq}:processed")
    victim = Worker(standalone.url, "victim", *record, "--prefetch", "10",
                    "--task-seconds", "30")
    workers.append(victim)
    devcluster.wait_for(lambda: client.xpending("{tq}:queue:high", "workers")["pending"] == 10,
                        10, "the victim to take 10 entries")
    victim.signal(signal.SIGKILL)
    victim.proc.wait(5)
    time.sleep(float(TTL) + 0.3)
    held = client.xpending_range("{tq}:queue:high", "workers", "-", "+", 100,
                                 consumername=victim.worker_id)
    result = run_tqmon("--redis-url", standalone.url, "--heartbeat-ttl", TTL)
    assert result.value("task_queue_orphaned", priority="high", group="workers") == len(held)
    assert len(held) == 10

    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    procs = [subprocess.Popen([*TQMON, "--redis-url", standalone.url, "--heartbeat-ttl", TTL,
                               "--requeue-orphans"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err
        check_exposition(out)
    assert client.hget("{tq}:stats", "tasks_reassigned") == "10"
    assert client.xpending("{tq}:queue:high", "workers")["pending"] == 0
    redelivered = [f for _, f in client.xrange("{tq}:queue:high") if "tqmon_redeliveries" in f]
    assert len(redelivered) == 10 and all(f["tqmon_redeliveries"] == "1" for f in redelivered)

    workers += [Worker(standalone.url, f"helper{i}", *record, "--task-seconds", "0.002")
                for i in range(2)]

    def drained() -> bool:
        return all(g["lag"] == 0 and g["pending"] == 0 for p in ("high", "medium", "low")
                   for g in client.xinfo_groups(f"{{tq}}:queue:{p}"))

    devcluster.wait_for(drained, 30, "every entry processed")
    processed = client.lrange("{tq}:processed", 0, -1)
    assert sorted(processed) == sorted(payloads)  # each exactly once
    result = run_tqmon("--redis-url", standalone.url, "--heartbeat-ttl", TTL)
    assert result.value("tasks_reassigned_total") == 10
    assert result.value("task_queue_orphaned", priority="high", group="workers") == 0


def _names_on_masters(cluster: devcluster.Cluster) -> list[str]:
    """Three stream names without a hash tag, each in a slot of a different master."""
    ranges = []
    for lo, hi, master, *_ in cluster.servers[0].client().execute_command("CLUSTER", "SLOTS"):
        ranges.append((lo, hi, master[1]))
    names: dict[int, str] = {}
    for i in range(1000):
        name = f"jobs-{i}"
        slot = key_slot(name.encode())
        port = next(p for lo, hi, p in ranges if lo <= slot <= hi)
        names.setdefault(port, name)
        if len(names) == 3:
            return list(names.values())
    raise AssertionError("no names found")


def test_streams_on_three_masters(cluster):
    names = _names_on_masters(cluster)
    client = cluster.client()
    for i, name in enumerate(names):
        for j in range(i + 2):
            client.xadd(name, {"payload": f"{name}-{j}"})
        client.xgroup_create(name, "workers", id="0")
        client.xreadgroup("workers", "c", {name: ">"}, count=1)
    args = [arg for p, n in zip(("high", "medium", "low"), names, strict=True)
            for arg in ("--queue", f"{p}={n}")]
    result = queues_run(cluster.urls[0], *args)
    assert result.returncode == 0 and result.stderr == ""
    for i, priority in enumerate(("high", "medium", "low")):
        assert result.value("task_queue_depth", priority=priority) == i + 2
        assert result.value("task_queue_pending", priority=priority, group="workers") == 1
        assert result.value("task_queue_lag", priority=priority, group="workers") == i + 1
    for name in names:
        client.delete(name)


def test_requeue_refused_across_slots(cluster):
    name = _names_on_masters(cluster)[0]
    client = cluster.client()
    if key_slot(name.encode()) == key_slot(b"{tq}:stats"):
        name = _names_on_masters(cluster)[1]
    client.xadd(name, {"payload": "x"})
    client.xgroup_create(name, "workers", id="0")
    hb = Heartbeat(client, name="gone", worker_id="gone-worker", ttl=1, interval=0.5)
    hb.beat()
    client.xreadgroup("workers", "gone-worker", {name: ">"}, count=1)
    time.sleep(1.3)
    result = run_tqmon("--redis-url", cluster.urls[0], "--collectors", "queues",
                       "--heartbeat-ttl", "1", "--queue", f"high={name}", "--requeue-orphans")
    assert result.returncode == 0
    assert result.value("task_queue_orphaned", priority="high", group="workers") == 1
    assert result.value("tqmon_skipped_entries", collector="queues",
                        reason="requeue_refused") == 1
    assert "not requeueing 1 orphaned entries" in result.stderr and "hash tag" in result.stderr
    assert client.xpending(name, "workers")["pending"] == 1  # untouched
    client.delete(name)
    hb.stop()


def test_xpending_refused_leaves_orphans_unknown_not_zero():
    """A user whose ACL lacks XPENDING: who holds what is unknown, so no orphan or pending-idle
    series (never a reassuring 0), the refusal counted and said once on stderr."""
    server = devcluster.start_standalone(["--user", "tqmon", "on", ">pw", "~*", "+@all",
                                          "-xpending"])
    try:
        admin = server.client()
        queues = TaskStreams(admin)
        queues.ensure_groups()
        queues.enqueue("high", {"payload": "x"})
        queues.next("gone-worker")  # held by a worker that is dead
        admin.zadd("{tq}:workers", {"gone-worker": 1.0})
        result = run_tqmon("--redis-url", f"redis://tqmon@{server.address}", "--collectors",
                           "queues", "--heartbeat-ttl", TTL, "--read-only",
                           env={"TQMON_REDIS_PASSWORD": "pw"})
        assert result.returncode == 0
        assert result.stderr.count("\n") == 1 and "XPENDING refused" in result.stderr
        assert result.series("task_queue_orphaned") == []
        assert result.series("task_queue_oldest_pending_idle_seconds") == []
        assert result.value("task_queue_pending", priority="high", group="workers") == 1
        assert result.value("tqmon_skipped_entries", collector="queues", reason="refused") == 3
        full = run_tqmon("--redis-url", server.url, "--collectors", "queues", "--heartbeat-ttl",
                         TTL, "--read-only")
        assert full.value("task_queue_orphaned", priority="high", group="workers") == 1
    finally:
        server.stop()
