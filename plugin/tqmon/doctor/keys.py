"""Are there keys where the schema and prefix say (read with what the collectors run
anyway, never KEYS), and if not, whose keys are there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from .. import connection, contract
from ..config import Config
from ..parallel import Deadline, run_parallel
from ..topology import Node, Topology
from .base import Checkup, Finding, Reach, ok, problem, warning

PREFIX_SCAN_CALLS, PREFIX_SCAN_COUNT = 10, 1000  # a bounded look for other prefixes


def _schema_keys(config: Config) -> dict[str, list[tuple[str, str]]]:
    """Per schema, keys whose presence shows that queue system writes to this database, each
    with a read its collector runs anyway (so the documented ACLs allow it; never KEYS)."""
    keys = contract.Keys(config.prefix)
    ns, cp = config.dramatiq_namespace, config.celery_key_prefix
    out = {
        "native": [("ZCARD", keys.workers), ("HLEN", keys.stats),
                   *(("XLEN", s) for _, s in config.streams)],
        "rq": [("SCARD", "rq:workers"), ("SCARD", "rq:queues")],
        "dramatiq": [("ZCARD", f"{ns}:__heartbeats__"),
                     *(("LLEN", f"{ns}:{q}") for q in config.dramatiq_queues)],
        "celery": [("SCARD", f"{cp}_kombu.binding.celery"), ("ZCARD", f"{cp}unacked_index")],
        "arq": [*(("ZCARD", q) for q in config.arq_queues),
                *(("GET", f"{q}:health-check") for q in config.arq_queues)],
        "sidekiq": [("SCARD", "processes"), ("SCARD", "queues")],
        "bullmq": [("HGET", f"{config.bullmq_prefix}:{q}:meta", "opts.maxLenEvents")
                   for q in config.bullmq_queues],
    }
    return {schema: list(dict.fromkeys(k)) for schema, k in out.items()}  # type: ignore[misc]


def _present(reply: Any) -> bool | None:
    """True: the key holds something; False: it does not; None: we may not look."""
    if isinstance(reply, redis.exceptions.NoPermissionError):
        return None
    if isinstance(reply, redis.ResponseError):
        return "wrongtype" in str(reply).lower() or None  # a key of another type is there
    if isinstance(reply, BaseException):
        return None
    return bool(reply) if isinstance(reply, int | str | bytes) else None


def _run_on_owners(config: Config, topology: Topology, reached: dict[str, Reach],
                   commands: list[tuple[str, ...]]) -> list[Any]:
    """Each command (whose second word is its key) on the node that holds that key: one round
    trip per node, in parallel; a node that does not answer gives its exception."""
    by_node: dict[str, tuple[Node, list[int]]] = {}
    for index, command in enumerate(commands):
        node = topology.node_for(command[1])
        if node is not None and node.address in reached:
            by_node.setdefault(node.address, (node, []))[1].append(index)
    deadline = Deadline(config.timeout)
    replies: list[Any] = [ConnectionError("no reachable node holds the key")] * len(commands)

    def ask(node: Node, indexes: list[int]) -> list[Any]:
        client = connection.client(config, node.host, node.port, deadline, tls=node.tls)
        try:
            pipe = client.pipeline(transaction=False)
            for i in indexes:
                pipe.execute_command(*commands[i])
            return pipe.execute(raise_on_error=False)
        finally:
            client.close()

    try:
        answers = run_parallel({a: (lambda n=n, i=i: ask(n, i)) for a, (n, i) in by_node.items()},
                               deadline)
    finally:
        deadline.abandon()
    for address, (_, indexes) in by_node.items():
        answer = answers[address]
        for pos, index in enumerate(indexes):
            replies[index] = answer if isinstance(answer, BaseException) else answer[pos]
    return replies


def check_keys(c: Checkup) -> Iterator[Finding]:
    config, topology, reached = c.config, c.topology, c.reached
    if not {"workers", "queues"} & set(config.collectors):
        return  # only Redis itself is watched: no queue keys are expected
    wanted = _schema_keys(config)
    flat = [(schema, command) for schema, commands in wanted.items() for command in commands]
    replies = _run_on_owners(config, topology, reached, [c for _, c in flat])
    found: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    for (schema, command), reply in zip(flat, replies, strict=True):
        present = _present(reply)
        if present:
            found.setdefault(schema, []).append(command[1])
        elif present is None:
            unknown.setdefault(schema, []).append(command[1])
    mine = config.schema
    others = [(s, keys[0]) for s, keys in found.items() if s != mine]
    hints = [f"found `{key}`: try --schema {schema}" for schema, key in others]
    where = f"prefix {contract.Keys(config.prefix).tag}" if mine == "native" else \
        f"--schema {mine}"
    if found.get(mine):
        yield ok("keys", f"{where}: found {', '.join(found[mine][:3])}")
        for hint in hints:
            yield warning("keys", f"another queue system's keys are here too: {hint}")
        return
    if mine == "bullmq" and not config.bullmq_queues:
        yield ok("keys", "--schema bullmq: the queues come from the workers connected now "
                 "(CLIENT LIST); name them with --bullmq-queues to check their keys")
        for hint in hints:
            yield warning("keys", f"another queue system's keys are here: {hint}")
        return
    if unknown.get(mine) and len(unknown[mine]) == len(wanted[mine]):
        yield warning("keys", f"{where}: cannot look at {', '.join(unknown[mine][:3])} "
                      "(see the acl lines above)")
        return
    fixes = [f"try --schema {schema}" for schema, _ in others]
    if mine == "native":
        fixes += [f"try --prefix {p}" for p in _other_prefixes(config, topology, reached)]
    names = ", ".join(c[1] for c in wanted[mine][:3]) or "its keys"
    text = f"{where}: none of {names} exists" + (
        f"; found {', '.join(f'`{k}`' for _, k in others)}" if others else "")
    yield problem("keys", text, *fixes)


def _other_prefixes(config: Config, topology: Topology, reached: dict[str, Reach]) -> list[str]:
    """Contract prefixes in use, from a SCAN for `{*}:workers` bounded to a few calls a master:
    enough to catch a typo'd --prefix on a small database, never a walk of a big one."""
    found: list[str] = []
    deadline = Deadline(config.timeout)
    try:
        for node in topology.nodes:
            if node.address not in reached or node.role == "replica":
                continue
            client = connection.client(config, node.host, node.port, deadline, tls=node.tls)
            cursor: Any = 0
            try:
                for _ in range(PREFIX_SCAN_CALLS):
                    cursor, keys = client.scan(cursor, match="{*}:workers",
                                               count=PREFIX_SCAN_COUNT)
                    for key in keys:
                        tag = key[1:key.index("}")] if "}" in key else ""
                        if tag and tag != config.prefix and contract.Keys(tag).workers == key:
                            found.append(tag)
                    if int(cursor) == 0 or len(found) >= 3:
                        break
            except redis.RedisError:
                pass
            finally:
                client.close()
    finally:
        deadline.abandon()
    return list(dict.fromkeys(found))[:3]
