"""Node metrics against real servers: values equal what INFO / CLUSTER INFO say."""

from __future__ import annotations

import contextlib
import signal
import time

import redis
from helpers import run_tqmon

from devtools import devcluster


def test_standalone_metrics_match_info(standalone):
    client = standalone.client()
    client.config_set("maxmemory", 64 * 1024 * 1024)
    before = client.info("memory")["used_memory"]
    result = run_tqmon("--redis-url", standalone.url, "--cluster-name", "prod")
    assert result.returncode == 0, result.stderr
    labels = {"node_id": standalone.address, "role": "master", "cluster_name": "prod"}
    assert result.value("redis_cluster_node_up", **labels) == 1
    assert result.value("redis_cluster_maxmemory_bytes", **labels) == 64 * 1024 * 1024
    info = client.info()
    # used_memory moves with every connection's buffers: it lies around what INFO said
    # just before and just after the run
    low, high = sorted((before, info["used_memory"]))
    assert 0.75 * low <= result.value("redis_cluster_memory_bytes", **labels) <= 1.25 * high
    assert result.value("redis_cluster_connected_clients", **labels) >= 1
    assert result.value("redis_cluster_evicted_keys_total", **labels) == 0
    info_labels = result.series("redis_cluster_node_info")
    assert info_labels == [{**labels, "redis_version": info["redis_version"],
                            "cluster_node_id": ""}]
    assert result.value("tqmon_collector_up", collector="nodes") == 1
    assert result.series("redis_cluster_state_ok") == []  # not a cluster
    assert result.stderr == ""


def test_evictions_and_rejected_connections_are_counted(standalone):
    client = standalone.client()
    client.config_set("maxmemory", 2 * 1024 * 1024)
    client.config_set("maxmemory-policy", "allkeys-lru")
    pipe = client.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"k{i}", "x" * 1000)
    pipe.execute()
    client.config_set("maxmemory", 0)  # stop evicting so the counter holds still
    client.config_set("maxclients", 3)
    held = [standalone.client() for _ in range(3)]
    extra = standalone.client()
    for c in [*held, extra]:  # the fourth connection is turned away
        with contextlib.suppress(redis.RedisError):
            c.ping()
    for c in [*held, extra]:
        c.close()
    client.close()
    client = standalone.client()  # the server frees the closed ones in its own time: retried
    devcluster.wait_for(lambda: client.config_set("maxclients", 100), 30, "a connection slot")
    info = client.info("stats")
    assert info["evicted_keys"] > 0 and info["rejected_connections"] > 0
    result = run_tqmon("--redis-url", standalone.url)
    labels = {"node_id": standalone.address}
    assert result.value("redis_cluster_evicted_keys_total", **labels) == info["evicted_keys"]
    assert result.value("redis_cluster_rejected_connections_total", **labels) == \
        info["rejected_connections"]


def test_replica_discovered_from_master_with_lag_and_offsets(replicated):
    master, replica = replicated
    result = run_tqmon("--redis-url", master.url)
    assert result.returncode == 0
    assert result.value("redis_cluster_node_up", node_id=master.address, role="master") == 1
    assert result.value("redis_cluster_node_up", node_id=replica.address, role="replica") == 1
    pair = {"master_id": master.address, "replica_id": replica.address,
            "cluster_name": "default"}
    assert result.series("redis_cluster_replication_lag_seconds") == [pair]
    assert result.value("redis_cluster_replication_lag_seconds", **pair) <= 1
    assert result.value("redis_cluster_replication_offset_lag_bytes", **pair) >= 0
    assert result.value("redis_cluster_replica_master_link_up", **pair) == 1


def test_replica_seed_finds_its_master(replicated):
    master, replica = replicated
    result = run_tqmon("--redis-url", replica.url)
    assert result.value("redis_cluster_node_up", node_id=master.address, role="master") == 1
    assert result.value("redis_cluster_node_up", node_id=replica.address, role="replica") == 1


def test_stalled_replica_shows_growing_lag(fresh_replicated):
    """SIGSTOP the replica while the master takes writes: lag in seconds and bytes grow."""
    master, replica = fresh_replicated
    replica.signal(signal.SIGSTOP)
    try:
        client = master.client()
        client.set("payload", "x" * 50_000)
        time.sleep(3)
        before = client.info("replication")
        result = run_tqmon("--redis-url", master.url, "--timeout", "2")
        after = client.info("replication")
    finally:
        replica.signal(signal.SIGCONT)
    pair = {"master_id": master.address, "replica_id": replica.address}
    assert result.value("redis_cluster_replication_lag_seconds", **pair) >= 2
    # the master keeps sending PINGs down the link, so the lag can only grow while we look
    low, high = (i["master_repl_offset"] - i["slave0"]["offset"] for i in (before, after))
    reported = result.value("redis_cluster_replication_offset_lag_bytes", **pair)
    assert 50_000 <= low <= reported <= high
    # the stopped replica itself cannot answer
    assert result.value("redis_cluster_node_up", node_id=replica.address) == 0
    assert result.value("redis_cluster_node_up", node_id=master.address) == 1


def test_cluster_all_six_nodes_roles_and_slots(cluster):
    result = run_tqmon("--redis-url", cluster.urls[0], "--cluster-name", "tq")
    assert result.returncode == 0, result.stderr
    roles = cluster.roles()
    up = {s["node_id"]: s["role"] for s in result.series("redis_cluster_node_up")}
    assert up == roles
    assert sorted(roles.values()) == ["master"] * 3 + ["replica"] * 3
    for server in cluster.servers:
        labels = {"node_id": server.address, "role": roles[server.address], "cluster_name": "tq"}
        assert result.value("redis_cluster_node_up", **labels) == 1
        assert result.value("redis_cluster_state_ok", **labels) == 1
        assert result.value("redis_cluster_known_nodes", **labels) == 6
        assert result.value("redis_cluster_slots", state="ok", **labels) == 16384
        assert result.value("redis_cluster_slots", state="assigned", **labels) == 16384
        assert result.value("redis_cluster_slots", state="fail", **labels) == 0
        assert result.value("redis_cluster_slots", state="pfail", **labels) == 0
        node_id = server.client().cluster("myid")
        info = result.series("redis_cluster_node_info")
        assert {**labels, "cluster_node_id": node_id, "redis_version": "7.0.15"} in info or \
            any(i["cluster_node_id"] == node_id and i["node_id"] == server.address for i in info)
    # each replica: one master/replica pair seen from the master and link up from the replica
    pairs = result.series("redis_cluster_replica_master_link_up")
    assert len(pairs) == 3
    lag_pairs = result.series("redis_cluster_replication_lag_seconds")
    assert sorted(p["replica_id"] for p in lag_pairs) == sorted(p["replica_id"] for p in pairs)
    for pair in pairs:
        assert roles[pair["master_id"]] == "master" and roles[pair["replica_id"]] == "replica"


def test_any_seed_describes_the_cluster_and_dead_seed_is_skipped(cluster):
    dead = f"redis://127.0.0.1:{devcluster.free_port()}"
    result = run_tqmon("--redis-url", dead, "--redis-url", cluster.urls[3])
    assert result.returncode == 0
    up = result.series("redis_cluster_node_up")
    assert len(up) == 7  # six cluster nodes plus the unreachable seed
    assert result.value("redis_cluster_node_up", node_id=dead.removeprefix("redis://"),
                        role="unknown") == 0
    assert "Connection refused" in result.stderr and result.stderr.count("\n") == 1
