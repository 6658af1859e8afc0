"""Tasks are never lost or duplicated under real failures (issue 11, defects 1-4 and 6):
orphans outlive the pruning of their dead worker, requeue never copies into a stream another
group reads, a task that keeps killing workers goes to the dead-letter stream, consumers leave
their group, and one malformed latency field costs only itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import redis
from helpers import TQMON, Worker, run_tqmon
from tqmon.heartbeat import Heartbeat
from tqmon.streams import TaskStreams

from devtools import devcluster

TTL = "1"
HIGH = "{tq}:queue:high"


def _dead_worker(client: redis.Redis, worker_id: str) -> Heartbeat:
    """A registered worker that stops beating, as a SIGKILLed one does."""
    hb = Heartbeat(client, name=worker_id, worker_id=worker_id, ttl=1, interval=0.5)
    hb.beat()  # registers (no hash yet)
    return hb


def _skipped(result, reason: str) -> float:
    return result.value("tqmon_skipped_entries", collector="queues", reason=reason)


def test_orphans_outlive_the_pruning_of_their_dead_worker(standalone, workers):
    """Defect 1: a SIGKILLed worker is pruned after --dead-retention; its entries stay orphaned
    and requeueable."""
    client = standalone.client()
    queues = TaskStreams(client)
    queues.ensure_groups()
    for i in range(3):
        queues.enqueue("high", {"type": "job", "payload": f"p{i}"})
    victim = Worker(standalone.url, "victim", "--consume", "--prefetch", "3",
                    "--task-seconds", "30", ttl=1, interval=0.3)
    workers.append(victim)
    devcluster.wait_for(lambda: client.xpending(HIGH, "workers")["pending"] == 3, 30,
                        "the victim to take 3 entries")
    victim.signal(signal.SIGKILL)
    victim.proc.wait(5)
    time.sleep(1.2)
    args = ("--redis-url", standalone.url, "--heartbeat-ttl", TTL, "--dead-retention", "0.2")
    first = run_tqmon(*args)
    assert first.value("task_queue_orphaned", priority="high", group="workers") == 3
    time.sleep(0.3)
    run_tqmon(*args)  # prunes the worker
    assert client.zscore("{tq}:workers", victim.worker_id) is None
    after = run_tqmon(*args)
    assert after.value("task_queue_orphaned", priority="high", group="workers") == 3
    moved = run_tqmon(*args, "--requeue-orphans")
    assert moved.returncode == 0
    assert client.xpending(HIGH, "workers")["pending"] == 0
    assert client.hget("{tq}:stats", "tasks_reassigned") == "3"
    # requeued entries are new for the group: a plain XREADGROUP > delivers them
    got = client.xreadgroup("workers", "fresh", {HIGH: ">"}, count=10)
    assert sorted(f["payload"] for _, f in got[0][1]) == ["p0", "p1", "p2"]


def test_requeue_refuses_a_stream_read_by_two_groups(standalone):
    """Defect 2: copying into a shared stream would hand finished tasks to the other group
    again and delete the fields of its own pending entries."""
    client = standalone.client()
    for i in range(4):
        client.xadd(HIGH, {"payload": f"p{i}"})
    client.xgroup_create(HIGH, "workers", id="0")
    client.xgroup_create(HIGH, "audit", id="0")
    dead = _dead_worker(client, "dead-1")
    client.xreadgroup("workers", "dead-1", {HIGH: ">"}, count=2)
    audited = client.xreadgroup("audit", "auditor", {HIGH: ">"}, count=4)[0][1]
    client.xack(HIGH, "audit", audited[0][0], audited[1][0])  # audit finished two
    time.sleep(1.2)
    before = client.xrange(HIGH)
    result = run_tqmon("--redis-url", standalone.url, "--collectors", "queues",
                       "--heartbeat-ttl", TTL, "--group", "workers", "--group", "audit",
                       "--requeue-orphans")
    assert result.returncode == 0
    assert client.xrange(HIGH) == before  # nothing copied, nothing deleted
    assert client.xpending(HIGH, "workers")["pending"] == 2
    assert client.xpending(HIGH, "audit")["pending"] == 2
    assert client.xreadgroup("audit", "auditor", {HIGH: ">"}) == []  # no second delivery
    assert result.value("task_queue_orphaned", priority="high", group="workers") == 2
    assert _skipped(result, "requeue_refused") == 2
    assert result.stderr.count("\n") == 1 and "more than one consumer group" in result.stderr
    assert client.hget("{tq}:stats", "tasks_reassigned") is None
    dead.stop()


def test_a_task_requeued_too_often_goes_to_the_dead_letter_stream(standalone):
    """Defect 3: --max-redeliveries N moves a task requeued N times to <stream>:dead."""
    client = standalone.client()
    queues = TaskStreams(client)
    queues.ensure_groups()
    queues.enqueue("high", {"type": "poison", "payload": "x", "tqmon_redeliveries": "2"})
    queues.enqueue("high", {"type": "fine", "payload": "y", "tqmon_redeliveries": "1"})
    _dead_worker(client, "dead-2")
    taken = client.xreadgroup("workers", "dead-2", {HIGH: ">"}, count=2)[0][1]
    time.sleep(1.2)
    args = ("--redis-url", standalone.url, "--heartbeat-ttl", TTL, "--max-redeliveries", "2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    procs = [subprocess.Popen([*TQMON, *args, "--requeue-orphans"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
    for proc in procs:  # four collectors at once: each entry moved exactly once
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and err == "", err
    assert client.xpending(HIGH, "workers")["pending"] == 0
    dead = client.xrange(HIGH + ":dead")
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields["type"] == "poison" and fields["payload"] == "x"
    assert fields["tqmon_dead_reason"].startswith("redelivered 2 times")
    assert fields["tqmon_dead_from"] == taken[0][0]
    assert abs(float(fields["tqmon_dead_at"]) - time.time()) < 30
    live = client.xrange(HIGH)
    assert [(f["type"], f["tqmon_redeliveries"]) for _, f in live] == [("fine", "2")]
    assert client.hget("{tq}:stats", "tasks_reassigned") == "1"
    assert client.hget("{tq}:stats", "tasks_dead_lettered") == "1"
    again = run_tqmon(*args)
    assert again.value("task_queue_dead_letter_depth", priority="high") == 1
    assert again.value("task_queue_dead_letter_depth", priority="low") == 0
    assert again.value("tasks_dead_lettered_total") == 1


def test_consumers_leave_their_group(standalone):
    """Defect 4: a clean stop removes the consumer (the helper)."""
    client = standalone.client()
    queues = TaskStreams(client)
    queues.ensure_groups()
    queues.enqueue("high", {"payload": "a"})
    clean = Heartbeat(client, name="clean", worker_id="clean-1", ttl=1, interval=0.5,
                      queues=queues).start()
    for priority, entry_id, _ in queues.next("clean-1"):
        queues.ack(priority, entry_id)
    assert [c["name"] for c in client.xinfo_consumers(HIGH, "workers")] == ["clean-1"]
    clean.stop()
    assert client.xinfo_consumers(HIGH, "workers") == []


def test_consumers_of_workers_pruned_holding_nothing_leave(standalone):
    """Defect 4: a worker pruned as dead while holding nothing leaves its group; one still
    holding entries stays (deleting it would drop them)."""
    client = standalone.client()
    queues = TaskStreams(client)
    queues.ensure_groups()
    queues.enqueue("high", {"payload": "b"})
    queues.enqueue("high", {"payload": "c"})
    _dead_worker(client, "idle-dead")
    _dead_worker(client, "busy-dead")
    ((_, (first,)),) = client.xreadgroup("workers", "idle-dead", {HIGH: ">"}, count=1)
    queues.ack("high", first[0])  # idle-dead holds nothing
    client.xreadgroup("workers", "busy-dead", {HIGH: ">"}, count=1)
    time.sleep(1.2)
    args = ("--redis-url", standalone.url, "--heartbeat-ttl", TTL, "--dead-retention", "0.2")
    run_tqmon(*args)
    time.sleep(0.3)
    run_tqmon(*args)  # prunes both
    result = run_tqmon(*args)
    assert result.returncode == 0
    names = [c["name"] for c in client.xinfo_consumers(HIGH, "workers")]
    assert names == ["busy-dead"]
    assert result.value("task_queue_consumers", priority="high", group="workers") == 1
    assert result.value("task_queue_orphaned", priority="high", group="workers") == 1


def test_malformed_latency_fields_cost_only_themselves(standalone):
    """Defect 6: null, a number, deep nesting: each skipped and counted, the rest reported."""
    client = standalone.client()
    Heartbeat(client, name="alive", worker_id="alive-1", ttl=30, interval=10).beat()
    client.hset("{tq}:latency", mapping={
        "sum|null": 1, "sum|5": 1, "sum|" + "[" * 100_000: 1, "bucket|0.5|null": 2,
        'sum|["ok","high"]': 0.3, 'bucket|0.5|["ok","high"]': 1,
        'sum|{"a":1}': 1, 'sum|["a"]': 1, 'sum|["a",1]': 1,
    })
    result = run_tqmon("--redis-url", standalone.url, "--collectors", "workers")
    assert result.returncode == 0
    assert result.value("tqmon_collector_up", collector="workers") == 1
    assert result.value("worker_up", worker_id="alive-1", worker_name="alive") == 1
    assert result.value("task_processing_latency_seconds_count", task_type="ok",
                        priority="high") == 1
    assert result.value("tqmon_skipped_entries", collector="workers",
                        reason="bad_latency_field") == 6


def test_documented_acl_prunes_leaves_and_requeues(workers):
    """The tqmon ACL of docs/heartbeat-contract.md (plus the --requeue-orphans commands) is
    enough for pruning, consumers leaving and requeue with dead letters: no warning at all."""
    from test_workers import _acl

    rules = [*_acl("ACL SETUSER tqmon"), "+xadd", "+xack", "+xdel"]
    server = devcluster.start_standalone(["--user", *rules,
                                          "--user", *_acl("ACL SETUSER worker")])
    try:
        client = server.client()
        queues = TaskStreams(client)
        queues.ensure_groups()
        queues.enqueue("high", {"payload": "poison", "tqmon_redeliveries": "5"})
        queues.enqueue("high", {"payload": "fine"})
        _dead_worker(client, "holder")
        _dead_worker(client, "idle")
        client.xreadgroup("workers", "holder", {HIGH: ">"}, count=2)
        client.xreadgroup("workers", "idle", {HIGH: ">"}, count=1)
        time.sleep(1.2)
        env = {"TQMON_REDIS_PASSWORD": "pw"}
        args = ("--redis-url", server.url, "--username", "tqmon", "--heartbeat-ttl", TTL,
                "--dead-retention", "0.2", "--requeue-orphans")
        assert run_tqmon(*args, env=env).stderr == ""
        time.sleep(0.3)
        for _ in range(2):
            result = run_tqmon(*args, env=env)
            assert result.stderr == ""
        assert client.xlen(HIGH + ":dead") == 1
        assert [f["payload"] for _, f in client.xrange(HIGH)] == ["fine"]
        assert client.xinfo_consumers(HIGH, "workers") == []
        worker = server.client(username="worker", password="pw")
        streams = TaskStreams(worker)
        streams.ensure_groups()
        streams.next("w-acl")
        assert streams.leave("w-acl") == 2  # medium and low: high holds the entry
    finally:
        server.stop()
