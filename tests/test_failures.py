"""Real failures: SIGSTOP, CLIENT PAUSE, kill -9 of a cluster master and the failover after it."""

from __future__ import annotations

import signal
import threading

import pytest
from helpers import run_tqmon

from devtools import devcluster


@pytest.mark.parametrize("how", ["sigstop", "client-pause"])
def test_unresponsive_standalone_is_down_within_deadline(standalone, how):
    if how == "sigstop":
        standalone.signal(signal.SIGSTOP)
    else:
        standalone.client().execute_command("CLIENT", "PAUSE", "10000", "ALL")
    try:
        result = run_tqmon("--redis-url", standalone.url, "--timeout", "1.5", timed=True)
    finally:
        standalone.signal(signal.SIGCONT)
    assert result.returncode == 0
    assert result.run_seconds < 1.5 + 1, result.run_seconds  # start-up excluded: measured
    assert result.value("redis_cluster_node_up", node_id=standalone.address) == 0
    assert result.value("tqmon_collector_up", collector="nodes") == 1
    assert "TimeoutError" in result.stderr or "Timeout" in result.stderr


@pytest.fixture(scope="module")
def breakable_cluster():
    """A cluster of its own (short node timeout for a quick failover) that tests may break."""
    cluster = devcluster.start_cluster(node_timeout_ms=1000)
    yield cluster
    cluster.stop()


def test_sigstopped_cluster_replica_is_down_others_intact(breakable_cluster):
    cluster = breakable_cluster
    replica = cluster.replicas()[0]
    seed = cluster.masters()[0]
    replica.signal(signal.SIGSTOP)
    try:
        result = run_tqmon("--redis-url", seed.url, "--timeout", "2", timed=True)
    finally:
        replica.signal(signal.SIGCONT)
    assert result.returncode == 0
    assert result.run_seconds < 3, result.run_seconds
    up = {s["node_id"]: (s["role"], result.value("redis_cluster_node_up", **s))
          for s in result.series("redis_cluster_node_up")}
    assert up.pop(replica.address) == ("replica", 0)
    assert len(up) == 5 and all(v == 1 for _, v in up.values())
    devcluster.wait_for(lambda: devcluster._cluster_ok(cluster.servers), 30, "cluster ok again")


def test_killed_master_is_down_then_failover_promotes_replica(breakable_cluster):
    cluster = breakable_cluster
    victim = cluster.masters()[0]
    victim_id = victim.client().cluster("myid")
    seed = next(s for s in cluster.servers if s is not victim)
    victim_replica = next(
        s for s in cluster.replicas()
        if s.client().info("replication")["master_port"] == victim.port
    )
    victim.kill()

    result = run_tqmon("--redis-url", seed.url, "--timeout", "2", timed=True)
    assert result.returncode == 0 and result.run_seconds < 3
    assert result.value("redis_cluster_node_up", node_id=victim.address, role="master") == 0
    others = [s for s in result.series("redis_cluster_node_up") if s["node_id"] != victim.address]
    assert len(others) == 5
    assert all(result.value("redis_cluster_node_up", **s) == 1 for s in others)

    def promoted() -> bool:
        return victim_replica.client().info("replication")["role"] == "master" and all(
            s.client().cluster("info")["cluster_state"] == "ok"
            for s in cluster.servers if s is not victim
        )

    devcluster.wait_for(promoted, 30, "failover", 0.2)
    result = run_tqmon("--redis-url", seed.url, "--timeout", "2")
    assert result.value("redis_cluster_node_up", node_id=victim_replica.address,
                        role="master") == 1
    assert result.value("redis_cluster_node_up", node_id=victim.address) == 0
    labels = {"node_id": victim_replica.address, "role": "master"}
    assert result.value("redis_cluster_state_ok", **labels) == 1
    assert result.value("redis_cluster_slots", state="ok", **labels) == 16384
    # the dead node is still listed (flagged fail), so it is reported, not dropped
    assert any(s["node_id"] == victim.address for s in result.series("redis_cluster_node_up"))
    assert victim_id not in {
        i["cluster_node_id"] for i in result.series("redis_cluster_node_info")
    }


def test_concurrent_runs_all_finish(breakable_cluster):
    """Several agents at once (an HA pair, a retry) each get a full answer."""
    results: list = []

    def one() -> None:
        results.append(run_tqmon("--redis-url", breakable_cluster.urls[1], "--timeout", "2"))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results)
    counts = {len(r.series("redis_cluster_node_up")) for r in results}
    assert counts == {6}
