"""Discover the Redis nodes to monitor from the seed URLs.

Cluster mode: every node CLUSTER NODES lists (masters, replicas, and nodes flagged fail, pfail,
handshake or noaddr), so that a node that is down is still known and reported as down.
Standalone: each seed, its replicas from INFO replication, and its master if it is a replica.
A seed that does not answer stays in the topology with role "unknown".
Sentinel (--sentinel): the master the sentinels' majority names and the replicas they list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from redis.crc import key_slot

from . import connection, sentinel
from .config import Config, Target
from .failures import Failures
from .model import describe_error
from .parallel import Deadline, run_parallel

log = logging.getLogger(__name__)

DISCOVERY_SHARE = 0.5  # of the run's time: a hung seed must leave time to query the other nodes


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Node:
    host: str  # "" when the cluster knows no address for the node (noaddr)
    port: int
    role: str  # master | replica | unknown, as discovery saw it
    tls: bool = False
    cluster_node_id: str = ""
    master_address: str = ""  # a replica's master, when known
    flags: tuple[str, ...] = ()
    slots: tuple[tuple[int, int], ...] = ()  # slot ranges a cluster master serves

    @property
    def address(self) -> str:
        if not self.host:
            return f"noaddr:{self.cluster_node_id}"
        return format_address(self.host, self.port)


@dataclass(frozen=True)
class Topology:
    mode: str  # cluster | standalone | unknown (no seed answered)
    nodes: tuple[Node, ...]
    seed_errors: dict[str, str] = field(default_factory=dict)
    sentinel: sentinel.View | None = None  # the sentinels asked, their answers still arriving

    @property
    def cluster(self) -> bool:
        return self.mode == "cluster"

    def node_for(self, key: str) -> Node | None:
        """The master that holds `key`: by slot in a cluster, else the first master known."""
        if self.cluster:
            slot = key_slot(key.encode())
            return next((n for n in self.nodes if n.role == "master" and n.host
                         and any(lo <= slot <= hi for lo, hi in n.slots)), None)
        return next((n for n in self.nodes if n.role == "master"),
                    self.nodes[0] if self.nodes else None)


def parse_cluster_nodes(text: str, tls: bool) -> list[Node]:
    """Parse CLUSTER NODES output.

    Parsed here rather than by redis-py's callback, which keys nodes by address and so merges
    nodes that share one (several handshake or noaddr nodes all show ":0").
    """
    rows = [line.split() for line in text.splitlines() if line.strip()]
    address_by_id: dict[str, str] = {}
    parsed = []
    for row in rows:
        if len(row) < 8 or ":" not in row[1]:  # not a node line: skipped, not fatal
            continue
        node_id, addr, flags = row[0], row[1], tuple(row[2].split(","))
        hostport = addr.split("@", 1)[0].split(",", 1)[0]
        host, _, port = hostport.rpartition(":")
        host = host.strip("[]")
        if "noaddr" in flags or not host:
            host = ""
        port_number = int(port) if port.isdigit() else 0
        address_by_id[node_id] = format_address(host, port_number) if host else ""
        slots = tuple(r for s in row[8:] if not s.startswith("[")
                      and (r := _slot_range(s)) is not None)
        parsed.append((node_id, host, port_number, flags, row[3], slots))
    if not parsed:
        raise ValueError("no node in the CLUSTER NODES reply")
    nodes = []
    for node_id, host, port, flags, master_id, slots in parsed:
        role = "master" if "master" in flags else "replica" if "slave" in flags else "unknown"
        nodes.append(Node(
            host=host, port=port, role=role, tls=tls, cluster_node_id=node_id,
            master_address=address_by_id.get(master_id, "") if master_id != "-" else "",
            flags=flags, slots=slots,
        ))
    return nodes


def _slot_range(text: str) -> tuple[int, int] | None:
    low, _, high = text.partition("-")
    high = high or low
    if not (low.isascii() and low.isdigit() and high.isascii() and high.isdigit()):
        return None
    return int(low), int(high)


def _port(value: Any) -> int | None:
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 65536 else None


def _standalone_nodes(seed: Target, info: dict[str, Any]) -> list[Node]:
    """The seed, its replicas (INFO replication slaveN), and its master if it is a replica."""
    is_replica = info.get("role") == "slave"
    nodes = []
    master_address = ""
    master_port = _port(info.get("master_port"))
    if is_replica and info.get("master_host") and master_port:
        master = Node(str(info["master_host"]), master_port, "master", tls=seed.tls)
        master_address = master.address
        nodes.append(master)
    seed_node = Node(seed.host, seed.port, "replica" if is_replica else "master", tls=seed.tls,
                     master_address=master_address)
    nodes.insert(0, seed_node)
    for key, value in info.items():
        if key.startswith("slave") and key[5:].isdigit() and isinstance(value, dict):
            port = _port(value.get("port"))
            if value.get("ip") and port:  # a malformed entry is skipped, not fatal
                nodes.append(Node(str(value["ip"]), port, "replica", tls=seed.tls,
                                  master_address=seed_node.address))
    return nodes


def _probe_seed(config: Config, seed: Target, deadline: Deadline) -> tuple[Any, Any]:
    """INFO replication and CLUSTER NODES in one round trip; either may be an error."""
    client = connection.client(config, seed.host, seed.port, deadline, tls=seed.tls, db=0)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("INFO", "replication")
        pipe.execute_command("CLUSTER", "NODES")  # raw text: see parse_cluster_nodes
        info, nodes = pipe.execute(raise_on_error=False)
    finally:
        client.close()
    if isinstance(info, Exception):
        raise info
    return info, nodes


def discover(config: Config, deadline: Deadline, failures: Failures | None = None) -> Topology:
    """Ask every seed in parallel; the first cluster seed (in order) describes the cluster.

    An unexpected reply costs only its seed: odd CLUSTER NODES text makes it a standalone
    seed, malformed replica entries are skipped."""
    failures = failures or Failures()
    budget = deadline.sub(DISCOVERY_SHARE)
    if config.sentinel is not None:
        return _from_sentinels(config, deadline, budget)
    answers = run_parallel(
        {seed: (lambda s=seed: _probe_seed(config, s, budget)) for seed in config.targets},
        budget,
    )
    nodes: dict[str, Node] = {}
    errors: dict[str, str] = {}
    mode = "unknown"
    for seed in config.targets:
        answer = answers[seed]
        if isinstance(answer, BaseException):
            errors[seed.address] = describe_error(answer)
            failures.node(seed.address, answer)
            continue
        info, cluster_nodes = answer
        if isinstance(cluster_nodes, str):
            if mode == "cluster":
                continue
            try:
                listed = parse_cluster_nodes(cluster_nodes, seed.tls)
            except ValueError as exc:
                log.warning("seed %s: unexpected CLUSTER NODES reply (%s): taken as a standalone "
                            "node", seed.address, exc)
            else:
                mode = "cluster"
                for node in listed:
                    nodes.setdefault(node.address, node)
                continue
        if not isinstance(info, dict):
            failures.node(seed.address, ValueError("unexpected INFO replication reply"))
            errors[seed.address] = "unexpected INFO replication reply"
            continue
        mode = "standalone" if mode == "unknown" else mode
        for node in _standalone_nodes(seed, info):
            nodes.setdefault(node.address, node)
    for seed in config.targets:
        if seed.address not in nodes:
            nodes[seed.address] = Node(seed.host, seed.port, "unknown", tls=seed.tls)
    return Topology(mode=mode, nodes=tuple(nodes.values()), seed_errors=errors)



def _from_sentinels(config: Config, deadline: Deadline, budget: Deadline) -> Topology:
    """The master a majority of the sentinels names, and the replicas they list. The sentinels
    are asked under the run's deadline; discovery waits for a majority only (see sentinel)."""
    assert config.sentinel is not None
    view = sentinel.View(config, config.sentinel.addresses).start(deadline)
    answers = view.wait(budget, majority=True)
    master, agreeing = view.master(answers)
    errors = {name: a.reason for name, a in answers.items() if a.master is None}
    if master is None:
        return Topology(mode="unknown", nodes=(), seed_errors=errors, sentinel=view)
    tls = config.sentinel.tls
    head = Node(master.host, master.port, "master", tls=tls)
    newest = max(agreeing, key=lambda a: a.epoch or 0)
    nodes = {head.address: head}
    for replica in newest.replicas:
        nodes.setdefault(replica.address, Node(replica.host, replica.port, "replica", tls=tls,
                                               master_address=head.address,
                                               flags=replica.flags))
    return Topology(mode="standalone", nodes=tuple(nodes.values()), seed_errors=errors,
                    sentinel=view)
