"""Workers through a Redis Cluster: the contract keys on one node, and a failover of its master."""

from __future__ import annotations

import signal
import time

from helpers import Worker, run_tqmon
from redis.crc import key_slot
from tqmon import contract

from devtools import devcluster


def _owner(cluster: devcluster.Cluster, key: str) -> devcluster.RedisServer:
    slot = key_slot(key.encode())
    for master in cluster.masters():
        for lo, hi, *_ in master.client().execute_command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return cluster.by_address(f"{_[0][0]}:{_[0][1]}")
    raise AssertionError("slot not served")


def test_workers_through_the_cluster(cluster):
    workers = [Worker(cluster.urls[i], f"cw{i}", "--tasks", "3", cluster=True) for i in range(3)]
    try:
        for worker in workers:
            assert worker.wait_done() == (3, 0)
        result = run_tqmon("--redis-url", cluster.urls[4], "--heartbeat-ttl", "2")
        assert result.total("workers_alive") == 3
        assert sum(result.values("worker_tasks_processed_total")) == 9
        keys = contract.Keys()
        owner = _owner(cluster, keys.workers)
        # every contract key of the fleet is on that one node
        assert owner.client().exists(keys.workers, keys.latency,
                                     *(keys.worker(w.worker_id) for w in workers)) == 5
    finally:
        for worker in workers:
            worker.signal(signal.SIGTERM)
            worker.proc.wait(10)


def test_worker_collection_survives_failover_of_the_slot_master():
    cluster = devcluster.start_cluster(node_timeout_ms=1000)
    workers: list[Worker] = []
    try:
        workers = [Worker(cluster.urls[0], f"fw{i}", cluster=True, ttl=6, interval=0.3)
                   for i in range(2)]
        owner = _owner(cluster, contract.Keys().workers)
        seed = next(s for s in cluster.servers if s is not owner)
        args = ("--redis-url", seed.url, "--heartbeat-ttl", "6", "--timeout", "2")
        assert run_tqmon(*args).total("workers_alive") == 2
        replica_of_owner = next(s for s in cluster.replicas()
                                if s.client().info("replication")["master_port"] == owner.port)
        owner.kill()
        during = run_tqmon(*args, timed=True)  # the slot's master is gone: reported, not hung
        assert during.returncode == 0 and during.run_seconds < 3
        assert during.value("tqmon_collector_up", collector="workers") == 0
        assert during.value("tqmon_collector_up", collector="nodes") == 1
        devcluster.wait_for(
            lambda: replica_of_owner.client().info("replication")["role"] == "master", 30,
            "failover", 0.2)
        end = time.monotonic() + 15
        while True:  # the seed learns the new master within a few node timeouts
            after = run_tqmon(*args)
            if after.value("tqmon_collector_up", collector="workers") == 1 \
                    and after.total("workers_alive") == 2:
                break
            assert time.monotonic() < end, after.stderr
            time.sleep(0.3)
        assert {s["worker_name"] for s in after.series("worker_up")} == {"fw0", "fw1"}
    finally:
        for worker in workers:
            worker.stop()
        cluster.stop()
