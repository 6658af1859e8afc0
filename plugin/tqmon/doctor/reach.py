"""Can each node be reached, authenticated, and how fast; what a failure means."""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis

from .. import connection
from ..config import Config
from ..model import describe_error
from ..parallel import Deadline, run_parallel
from ..topology import Node, Topology
from .base import MAX_NODE_LINES, Checkup, Finding, Reach, ok, problem


def _reach(config: Config, node: Node, deadline: Deadline, cluster: bool) -> Reach:
    """Connect (and authenticate), then one timed round trip of commands the collectors need
    anyway; a refused command still proves the node answers (the ACL check says more)."""
    client = connection.client(config, node.host, node.port, deadline, tls=node.tls, db=0)
    try:
        pool = client.connection_pool
        pool.release(pool.get_connection())  # connects and authenticates, or raises
        started = time.time()
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("TIME")
        pipe.execute_command("ACL", "WHOAMI")
        if cluster:
            pipe.execute_command("CLUSTER", "INFO")
        replies = pipe.execute(raise_on_error=False)
        ended = time.time()
        reach = Reach(rtt=ended - started,
                      whoami=replies[1] if isinstance(replies[1], str) else None)
        if isinstance(replies[0], list | tuple) and len(replies[0]) == 2:
            server = float(replies[0][0]) + float(replies[0][1]) / 1e6
            reach.offset = server - (started + ended) / 2
        if cluster and isinstance(replies[2], str):
            reach.cluster_info = dict(line.split(":", 1) for line in replies[2].splitlines()
                                      if ":" in line)
        return reach
    finally:
        client.close()


def _explain(config: Config, exc: BaseException) -> tuple[str, tuple[str, ...]]:
    """What a failed connection means, and what to do about it."""
    text = describe_error(exc)
    low = text.lower()
    if isinstance(exc, redis.AuthenticationError) or "invalid username-password" in low \
            or "wrongpass" in low:
        who = config.username or "default"
        return (f"authentication failed for user {who!r}: wrong user name or password",
                ("check TQMON_REDIS_PASSWORD / --password-file and --username",))
    if "noauth" in low or "authentication required" in low:
        return ("the server wants a password and none was given",
                ("set TQMON_REDIS_PASSWORD or --password-file (and --username for an ACL user)",))
    if "certificate verify failed" in low or "wrong version number" in low:
        return f"TLS failed: {text}", ()
    if "refused" in low:
        return f"not reachable: connection refused ({text})", (
            "is redis-server running and listening on this address?",)
    if isinstance(exc, TimeoutError | redis.TimeoutError) or "timeout" in low \
            or "timed out" in low:
        return f"no answer within --timeout {config.timeout:g}s ({text})", (
            "a paused or overloaded node, a firewall, or raise --timeout",)
    return f"not reachable: {text}", ()


def _nodes_to_check(config: Config, topology: Topology) -> list[Node]:
    """Every node discovery knows (seeds first), each once."""
    seeds = {t.address for t in config.targets}
    nodes = sorted(topology.nodes, key=lambda n: (n.address not in seeds, n.address))
    return [n for n in nodes if n.host]


def check_reach(c: Checkup) -> Iterator[Finding]:
    """Every node discovery knows: does it answer, and how fast; fills `c.reached`."""
    config, topology = c.config, c.topology
    nodes = _nodes_to_check(config, topology)
    deadline = Deadline(config.timeout)
    try:
        answers = run_parallel({n.address: (lambda n=n: _reach(config, n, deadline,
                                                               topology.cluster))
                                for n in nodes}, deadline)
    finally:
        deadline.abandon()
    findings, reached = [], c.reached
    for node in nodes:
        answer = answers[node.address]
        if isinstance(answer, BaseException):
            text, fixes = _explain(config, answer)
            findings.append(problem("reach", f"{node.address} ({node.role}): {text}", *fixes))
        else:
            reached[node.address] = answer
            findings.append(ok("reach", f"{node.address} ({node.role}) answers in "
                                        f"{answer.rtt * 1000:.1f} ms"))
    if len(findings) > MAX_NODE_LINES:
        shown = sorted(findings, key=lambda f: f.level != "problem")[:MAX_NODE_LINES]
        rest = len(findings) - len(shown)
        findings = [*shown, ok("reach", f"... and {rest} more node(s) answer")]
    return iter(findings)
