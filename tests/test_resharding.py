"""Defect 5: while the `{P}` slot migrates (CLUSTER SETSLOT MIGRATING / IMPORTING and MIGRATE of
some of its keys), tqmon follows ASK redirects and still reads every worker and queue."""

from __future__ import annotations

from helpers import run_tqmon
from redis.crc import key_slot
from tqmon import contract
from tqmon.heartbeat import Heartbeat
from tqmon.streams import TaskStreams

from devtools import devcluster


def _owner_and_other(cluster: devcluster.Cluster, slot: int):
    source = None
    for server in cluster.servers:
        for lo, hi, *_ in server.client().execute_command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                source = cluster.by_address(f"{_[0][0]}:{_[0][1]}")
        break
    target = next(s for s in cluster.servers if s is not source)
    return source, target


def test_workers_read_through_ask_redirects():
    with devcluster.running_cluster(masters=3, replicas_per_master=0) as cluster:
        client = cluster.client()
        keys = contract.Keys()
        ids = [f"w{i}" for i in range(20)]
        for worker_id in ids:
            Heartbeat(client, name=worker_id, worker_id=worker_id, ttl=30, interval=10).beat()
        queues = TaskStreams(client)
        queues.ensure_groups()
        for i in range(5):
            queues.enqueue("high", {"payload": str(i)})
            queues.enqueue("low", {"payload": str(i)})
        queues.next("w0", count=2)  # two pending on high
        slot = key_slot(keys.workers.encode())
        source, target = _owner_and_other(cluster, slot)
        source_id = source.client().execute_command("CLUSTER", "MYID")
        target_id = target.client().execute_command("CLUSTER", "MYID")
        target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = [keys.worker(w) for w in ids[::2]] + [keys.queue("high")]
        source.client().execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000,
                                        "KEYS", *moved)
        assert target.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 11
        for seed in (source, target):
            result = run_tqmon("--redis-url", seed.url, "--collectors", "workers,queues",
                               "--heartbeat-ttl", "30")
            assert result.returncode == 0
            assert result.value("tqmon_collector_up", collector="queues") == 1, result.stderr
            assert result.value("task_queue_depth", priority="high") == 5
            assert result.value("task_queue_depth", priority="low") == 5
            assert result.value("task_queue_pending", priority="high", group="workers") == 2
            assert result.value("task_queue_lag", priority="high", group="workers") == 3
            assert result.value("tqmon_skipped_entries", collector="queues",
                                reason="wrong_type") == 0
            assert result.stderr == "" or "detection not recorded" in result.stderr
            assert result.value("tqmon_collector_up", collector="workers") == 1, result.stderr
            assert sorted(s["worker_id"] for s in result.series("worker_up")) == sorted(ids)
            assert result.value("workers_alive") == 20
            assert result.value("tqmon_skipped_entries", collector="workers",
                                reason="wrong_type") == 0
            assert result.value("tqmon_skipped_entries", collector="workers",
                                reason="missing_hash") == 0
