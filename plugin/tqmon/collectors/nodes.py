"""Node health: one round trip per node (INFO, plus CLUSTER INFO in cluster mode), in parallel.

Every node the topology knows gets `redis_cluster_node_up`, 0 when it cannot be reached, does
not answer before the deadline, or refuses us; the rest of its metrics only when it answered.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from .. import connection
from ..model import Samples, describe_error
from ..parallel import run_parallel
from ..topology import Node, format_address
from .base import Context, no_node

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


def _num(value: Any) -> float | None:
    """A finite number from an INFO field, or None: one odd field costs only itself."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _peer(host: Any, port: Any) -> str | None:
    """host:port of a replica or master named in INFO, or None when it is malformed."""
    number = _num(port)
    if not host or number is None or not 0 < number < 65536:
        return None
    return format_address(str(host), int(number))


def _node_samples(
    out: Samples, node: Node, cluster_name: str, info: dict[str, Any],
    cluster_info: dict[str, Any] | None,
) -> None:
    role = "replica" if info.get("role") == "slave" else "master"
    labels = {"node_id": node.address, "role": role, "cluster_name": cluster_name}
    out.add("redis_cluster_node_up", labels, 1.0)
    for field, metric in _NODE_GAUGES.items():
        if (value := _num(info.get(field))) is not None:
            out.add(metric, labels, value)
    out.add("redis_cluster_node_info", {
        **labels, "redis_version": str(info.get("redis_version", "")),
        "cluster_node_id": node.cluster_node_id,
    }, 1.0)

    if role == "master":
        master_offset = _num(info.get("master_repl_offset", 0))
        for key, replica in info.items():
            if not (key.startswith("slave") and key[5:].isdigit() and isinstance(replica, dict)):
                continue
            replica_id = _peer(replica.get("ip"), replica.get("port"))
            if replica_id is None:
                continue
            pair = {"master_id": node.address, "replica_id": replica_id,
                    "cluster_name": cluster_name}
            if (lag := _num(replica.get("lag", 0))) is not None:
                out.add("redis_cluster_replication_lag_seconds", pair, lag)
            offset = _num(replica.get("offset", 0))
            if master_offset is not None and offset is not None:
                out.add("redis_cluster_replication_offset_lag_bytes", pair,
                        max(0.0, master_offset - offset))
    elif (master_id := _peer(info.get("master_host"), info.get("master_port"))) is not None:
        pair = {"master_id": master_id, "replica_id": node.address,
                "cluster_name": cluster_name}
        out.add("redis_cluster_replica_master_link_up", pair,
                1.0 if info.get("master_link_status") == "up" else 0.0)

    if cluster_info is not None:
        out.add("redis_cluster_state_ok", labels,
                1.0 if cluster_info.get("cluster_state") == "ok" else 0.0)
        for state in SLOT_STATES:
            if (value := _num(cluster_info.get(f"cluster_slots_{state}"))) is not None:
                out.add("redis_cluster_slots", {**labels, "state": state}, value)
        if (known := _num(cluster_info.get("cluster_known_nodes"))) is not None:
            out.add("redis_cluster_known_nodes", labels, known)


def collect(ctx: Context) -> Samples:
    nodes = ctx.topology.nodes
    if not nodes:  # nothing read is not "every node fine"
        raise no_node(ctx, "no Redis node is known")
    answers = run_parallel({n: (lambda n=n: _query(ctx, n)) for n in nodes}, ctx.deadline)
    samples = Samples()
    for node in nodes:
        answer = answers[node]
        labels = {"node_id": node.address, "role": node.role,
                  "cluster_name": ctx.config.cluster_name}
        if isinstance(answer, BaseException):
            ctx.failures.node(node.address, answer)  # once, even if discovery met it too
            samples.add("redis_cluster_node_up", labels, 0.0)
            continue
        one = Samples()
        try:
            _node_samples(one, node, ctx.config.cluster_name, *answer)
        except Exception as exc:  # an odd reply costs only this node's details
            log.warning("node %s: unexpected INFO reply: %s", node.address, describe_error(exc))
            one = Samples()
            one.add("redis_cluster_node_up", labels, 1.0)
        samples.extend(one)
    return samples
