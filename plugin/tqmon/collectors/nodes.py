"""Node health: one round trip per node (INFO, plus CLUSTER INFO in cluster mode), in parallel.

Every node the topology knows gets `redis_cluster_node_up`, 0 when it cannot be reached, does
not answer before the deadline, or refuses us; the rest of its metrics only when it answered.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import connection
from ..model import Samples, describe_error
from ..parallel import run_parallel
from ..topology import Node, format_address
from .base import Context

log = logging.getLogger(__name__)

SLOT_STATES = ("assigned", "ok", "pfail", "fail")
_NODE_GAUGES = {  # INFO field -> metric, all labelled by node
    "used_memory": "redis_cluster_memory_bytes",
    "maxmemory": "redis_cluster_maxmemory_bytes",
    "connected_clients": "redis_cluster_connected_clients",
    "instantaneous_ops_per_sec": "redis_cluster_ops_per_sec",
    "evicted_keys": "redis_cluster_evicted_keys_total",
    "rejected_connections": "redis_cluster_rejected_connections_total",
}


def _query(ctx: Context, node: Node) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if not node.host:
        raise ConnectionError("the cluster knows no address for this node")
    client = connection.client(ctx.config, node.host, node.port, ctx.deadline, tls=node.tls,
                               db=0)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("INFO")
        if ctx.topology.cluster:
            pipe.execute_command("CLUSTER INFO")
        replies = pipe.execute(raise_on_error=False)
    finally:
        client.close()
    info = replies[0]
    if isinstance(info, Exception):
        raise info
    cluster_info = replies[1] if len(replies) > 1 else None
    if isinstance(cluster_info, Exception):
        log.warning("node %s: CLUSTER INFO: %s", node.address, describe_error(cluster_info))
        cluster_info = None
    return info, cluster_info


def _node_samples(
    out: Samples, node: Node, cluster_name: str, info: dict[str, Any],
    cluster_info: dict[str, Any] | None,
) -> None:
    role = "replica" if info.get("role") == "slave" else "master"
    labels = {"node_id": node.address, "role": role, "cluster_name": cluster_name}
    out.add("redis_cluster_node_up", labels, 1.0)
    for field, metric in _NODE_GAUGES.items():
        if field in info:
            out.add(metric, labels, float(info[field]))
    out.add("redis_cluster_node_info", {
        **labels, "redis_version": str(info.get("redis_version", "")),
        "cluster_node_id": node.cluster_node_id,
    }, 1.0)

    if role == "master":
        master_offset = float(info.get("master_repl_offset", 0))
        for key, replica in info.items():
            if not (key.startswith("slave") and key[5:].isdigit() and isinstance(replica, dict)):
                continue
            pair = {"master_id": node.address,
                    "replica_id": format_address(str(replica["ip"]), int(replica["port"])),
                    "cluster_name": cluster_name}
            out.add("redis_cluster_replication_lag_seconds", pair, float(replica.get("lag", 0)))
            out.add("redis_cluster_replication_offset_lag_bytes", pair,
                    max(0.0, master_offset - float(replica.get("offset", 0))))
    elif info.get("master_host"):
        pair = {"master_id": format_address(str(info["master_host"]), int(info["master_port"])),
                "replica_id": node.address, "cluster_name": cluster_name}
        out.add("redis_cluster_replica_master_link_up", pair,
                1.0 if info.get("master_link_status") == "up" else 0.0)

    if cluster_info is not None:
        out.add("redis_cluster_state_ok", labels,
                1.0 if cluster_info.get("cluster_state") == "ok" else 0.0)
        for state in SLOT_STATES:
            value = cluster_info.get(f"cluster_slots_{state}")
            if value is not None:
                out.add("redis_cluster_slots", {**labels, "state": state}, float(value))
        if "cluster_known_nodes" in cluster_info:
            out.add("redis_cluster_known_nodes", labels,
                    float(cluster_info["cluster_known_nodes"]))


def collect(ctx: Context) -> Samples:
    nodes = ctx.topology.nodes
    answers = run_parallel({n: (lambda n=n: _query(ctx, n)) for n in nodes}, ctx.deadline)
    samples = Samples()
    for node in nodes:
        answer = answers[node]
        if isinstance(answer, BaseException):
            if node.address not in ctx.topology.seed_errors:  # already logged by discovery
                log.warning("node %s: %s", node.address, describe_error(answer))
            labels = {"node_id": node.address, "role": node.role,
                      "cluster_name": ctx.config.cluster_name}
            samples.add("redis_cluster_node_up", labels, 0.0)
        else:
            _node_samples(samples, node, ctx.config.cluster_name, *answer)
    return samples
