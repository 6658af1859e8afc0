"""`tqmon doctor`: check the set-up and say what is wrong and how to fix it, a finding a line.

When tqmon is set up wrong the exec plugin can only say `..._up 0` or nothing at all; doctor
looks where the cause usually is, in the order a person would: can each node be reached (and
how fast), does TLS verify and for which name and how long, who are we, may that user run what
each enabled collector runs (never running a write to find out), is the clock right, is the
cluster healthy, are there keys where the schema and prefix say, do the streams and groups
exist, and how many series a collection makes. Each check runs under its own deadline of
--timeout, so doctor ends; it writes nothing to Redis, and every text passes the password
redaction.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import redis

from . import acl, connection, contract
from .collectors.celery import layout as celery_layout
from .config import Config, Target
from .model import describe_error
from .parallel import Deadline, run_parallel
from .redaction import redact
from .run import collect_once
from .screen import Captured, Style, style_for
from .topology import Node, Topology, discover

DATADOG_LIMIT = 2000  # the Datadog OpenMetrics check's default max_returned_metrics
CLOCK_WARN = 1.0  # seconds between this host's clock and Redis's TIME
CERT_WARN_DAYS = 14
MAX_NODE_LINES = 20  # per-node lines before "and N more"
WIDTH = 80
PREFIX_SCAN_CALLS, PREFIX_SCAN_COUNT = 10, 1000  # a bounded look for other prefixes


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warning | problem
    topic: str
    text: str
    fixes: tuple[str, ...] = ()


def ok(topic: str, text: str) -> Finding:
    return Finding("ok", topic, text)


def warning(topic: str, text: str, *fixes: str) -> Finding:
    return Finding("warning", topic, text, fixes)


def problem(topic: str, text: str, *fixes: str) -> Finding:
    return Finding("problem", topic, text, fixes)


# ---- reachability, TLS, auth ---------------------------------------------------------------

@dataclass
class Reach:
    rtt: float = 0.0
    offset: float | None = None  # Redis TIME minus this host's clock, mid round trip
    whoami: str | None = None
    cluster_info: dict[str, str] | None = None
    error: BaseException | None = None


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


def check_reach(config: Config, topology: Topology) -> tuple[list[Finding], dict[str, Reach]]:
    nodes = _nodes_to_check(config, topology)
    deadline = Deadline(config.timeout)
    try:
        answers = run_parallel({n.address: (lambda n=n: _reach(config, n, deadline,
                                                               topology.cluster))
                                for n in nodes}, deadline)
    finally:
        deadline.abandon()
    findings, reached = [], {}
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
    return findings, reached


def _handshake(config: Config, target: Target, deadline: Deadline, name: str | None
               ) -> dict[str, Any]:
    """One TLS handshake that verifies the chain; the name too when `name` is given."""
    context = ssl.create_default_context(cafile=config.tls_ca_file)
    context.check_hostname = name is not None
    if config.tls_cert_file:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    raw = socket.create_connection((target.host, target.port),
                                   timeout=max(0.05, deadline.remaining()))
    with raw, context.wrap_socket(raw, server_hostname=name or target.host) as tls:
        return tls.getpeercert() or {}


def _names(cert: dict[str, Any]) -> list[str]:
    return [value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS",
                                                                                "IP Address")]


def check_tls(config: Config) -> Iterator[Finding]:
    tls_seeds = [t for t in config.targets if t.tls]
    if not tls_seeds:
        yield warning("tls", "no TLS: commands, data and the password cross the network in "
                      "clear", "use rediss:// URLs where the network is not trusted")
        return
    if config.tls_insecure:
        yield warning("tls", "--tls-insecure: the server's certificate is not verified",
                      "give --tls-ca-file (and --tls-server-name) instead")
    for target in tls_seeds[:MAX_NODE_LINES]:
        yield from _check_one_tls(config, target)


def _check_one_tls(config: Config, target: Target) -> Iterator[Finding]:
    deadline = Deadline(config.timeout)
    where = target.address
    # with --tls-insecure the run does not verify: what verification would say is a warning
    bad = warning if config.tls_insecure else problem
    try:
        cert = _handshake(config, target, deadline, None)
    except ssl.SSLCertVerificationError as exc:
        yield bad("tls", f"{where}: certificate not verified: {exc.verify_message}",
                  "give the CA that signed it: --tls-ca-file PATH")
        return
    except (ssl.SSLError, OSError) as exc:
        yield problem("tls", f"{where}: TLS handshake failed: {describe_error(exc)}")
        return
    name = config.tls_server_name or target.host
    names = _names(cert)
    try:
        _handshake(config, target, deadline, name)
    except ssl.SSLCertVerificationError:
        fixes = [f"--tls-server-name {names[0]}"] if names else []
        yield bad("tls", f"{where}: the certificate names {', '.join(names) or 'no host'}, "
                      f"not {name!r}", *fixes)
    except (ssl.SSLError, OSError) as exc:
        yield problem("tls", f"{where}: TLS handshake failed: {describe_error(exc)}")
    else:
        yield ok("tls", f"{where}: certificate verified for {name!r}")
    if "notAfter" in cert:
        days = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400
        if days < 0:
            yield problem("tls", f"{where}: the certificate expired {-days:.0f} days ago")
        elif days < CERT_WARN_DAYS:
            yield warning("tls", f"{where}: the certificate expires in {days:.0f} days")
        else:
            yield ok("tls", f"{where}: the certificate expires in {days:.0f} days")


def check_auth(config: Config, reached: dict[str, Reach]) -> Iterator[Finding]:
    who = next((r.whoami for r in reached.values() if r.whoami), None)
    user = who or config.username or "default"
    if not config.password:
        yield warning("auth", f"no password: connected as {user!r}; anyone who reaches the "
                      "port can read and write", "give the ACL user a password: "
                      "TQMON_REDIS_PASSWORD or --password-file")
    else:
        yield ok("auth", f"authenticated as {user!r}")


# ---- ACL -----------------------------------------------------------------------------------

def check_acl(config: Config, topology: Topology, reached: dict[str, Reach]) -> Iterator[Finding]:
    needs = acl.needs(config)
    node = _master(topology, reached, needs)
    if node is None:
        return
    user = next((r.whoami for r in reached.values() if r.whoami), None) \
        or config.username or "default"
    deadline = Deadline(config.timeout)
    client = connection.client(config, node.host, node.port, deadline, tls=node.tls)
    try:
        result, how = acl.check(client, user, needs)
    except redis.RedisError as exc:
        yield warning("acl", f"could not check permissions: {describe_error(exc)}")
        return
    finally:
        client.close()
        deadline.abandon()
    for collector in config.collectors:
        mine = [n for n in needs if n.collector == collector]
        denied = [n for n in mine if result.get(n)]
        unchecked = [n for n in mine if result.get(n) == ""]
        if not denied:
            yield ok("acl", f"{collector}: {user!r} may run all {len(mine)} it needs ({how})"
                     if not unchecked else
                     f"{collector}: allowed, {len(unchecked)} command(s) not checked")
            continue
        lacking = list(dict.fromkeys(n.rule for n in denied if "key" not in result[n]))
        keys = [n for n in denied if "key" in (result[n] or "") or "channel" in
                (result[n] or "")]
        rules = lacking[:]
        if any(n.argv[0] == "EVAL" for n in denied):
            rules += [n.rule for n in unchecked]  # the script's commands could not be asked
        rules += list(dict.fromkeys(n.key_pattern for n in keys if n.key_pattern))
        if any(n.argv[0] == "PSUBSCRIBE" for n in keys):
            rules.append("&*")
        what = []
        if lacking:
            what.append("may not run " + " ".join(r.lstrip("+") for r in lacking))
        if keys:
            what.append("may not touch " + ", ".join(dict.fromkeys(
                n.argv[1] if n.argv[0] != "XINFO" else n.argv[2] for n in keys)))
        yield problem("acl", f"{collector}: user {user!r} " + "; ".join(what),
                      acl.fix_line(user, rules))


def _master(topology: Topology, reached: dict[str, Reach], needs: list[acl.Need]
            ) -> Node | None:
    """The node to ask: the one holding the schema's first key, if it answered."""
    key = next((n.argv[1] for n in needs if n.key_pattern and len(n.argv) > 1), "")
    node = topology.node_for(key) if key else None
    if node is not None and node.address in reached:
        return node
    return next((n for n in topology.nodes if n.address in reached and n.role == "master"),
                next((n for n in topology.nodes if n.address in reached), None))


# ---- clock and cluster ---------------------------------------------------------------------

def check_clock(reached: dict[str, Reach]) -> Iterator[Finding]:
    known = {a: r.offset for a, r in reached.items() if r.offset is not None}
    if not known:
        return
    worst = max(known.items(), key=lambda item: abs(item[1]))
    offset = worst[1]
    text = f"this host's clock is {abs(offset):.3f} s {'behind' if offset > 0 else 'ahead of'}" \
        f" Redis ({worst[0]})"
    if abs(offset) >= CLOCK_WARN:
        yield warning("clock", text, "run NTP (chrony, systemd-timesyncd) on this host and on "
                      "the Redis hosts; heartbeats use Redis's clock, ages on this host's")
    else:
        yield ok("clock", text)


def check_cluster(topology: Topology, reached: dict[str, Reach]) -> Iterator[Finding]:
    if topology.mode == "unknown":
        why = next(iter(topology.seed_errors.values()), "no seed answered INFO replication")
        yield warning("cluster", f"cannot tell a cluster from a standalone Redis: {why}",
                      "the nodes collector needs +info +cluster|info +cluster|nodes")
        return
    if not topology.cluster:
        yield ok("cluster", f"{topology.mode} Redis: {len(topology.nodes)} node(s) known")
        return
    info = next((r.cluster_info for r in reached.values() if r.cluster_info), None)
    if info is None:
        yield problem("cluster", "no node answered CLUSTER INFO")
        return
    state = info.get("cluster_state", "?")
    slots = {k: info.get(f"cluster_slots_{k}", "?") for k in ("assigned", "ok", "pfail", "fail")}
    text = (f"state {state}; slots assigned {slots['assigned']}, ok {slots['ok']}, "
            f"pfail {slots['pfail']}, fail {slots['fail']}; "
            f"{info.get('cluster_known_nodes', '?')} nodes known")
    bad = state != "ok" or slots["assigned"] != "16384" or slots["fail"] not in ("0", "?")
    yield problem("cluster", text) if bad else ok("cluster", text)
    for node in topology.nodes:
        flagged = [f for f in node.flags if f in ("fail", "fail?", "handshake", "noaddr")]
        if flagged:
            yield problem("cluster", f"{node.address} is flagged {','.join(flagged)} by the "
                          "cluster")


# ---- keys, streams, groups -----------------------------------------------------------------

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


def check_keys(config: Config, topology: Topology, reached: dict[str, Reach]
               ) -> Iterator[Finding]:
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


def check_streams(config: Config, topology: Topology, reached: dict[str, Reach]
                  ) -> Iterator[Finding]:
    if config.schema != "native" or "queues" not in config.collectors:
        return
    streams = config.streams
    replies = _run_on_owners(config, topology, reached,
                             [("XINFO", "GROUPS", s) for _, s in streams])
    for (name, stream), reply in zip(streams, replies, strict=True):
        if isinstance(reply, redis.ResponseError) and "no such key" in str(reply).lower():
            yield warning("streams", f"{name}: stream {stream} does not exist (nothing queued "
                          "yet, or the wrong --queue / --prefix)")
        elif isinstance(reply, BaseException):
            yield warning("streams", f"{name}: {stream}: {describe_error(reply)}")
        else:
            present = [str(_fields(g).get("name")) for g in reply]
            missing = [g for g in config.groups if g not in present]
            if missing:
                yield problem("streams", f"{name}: {stream} has no group {', '.join(missing)}"
                              f" (groups: {', '.join(map(str, present)) or 'none'})",
                              *(f"--group {g}" for g in present[:1]))
            else:
                yield ok("streams", f"{name}: {stream} with group(s) {', '.join(config.groups)}")


def _fields(reply: Any) -> dict[Any, Any]:
    """A RESP2 map (a flat list of names and values) as a dict."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=False)) if isinstance(reply, list) else {}


# ---- one collection: collectors and series -------------------------------------------------

def check_collection(config: Config, captured: Captured) -> Iterator[Finding]:
    """One collection as the plugin would run it, read-only (doctor writes nothing)."""
    quiet = dataclasses.replace(config, read_only=True, requeue_orphans=False)
    captured.take()
    samples = collect_once(quiet)
    errors = captured.take()
    for labels, value in samples.rows.get("tqmon_collector_up", []):
        name = labels[0]
        if value == 1.0:
            yield ok("collect", f"collector {name} ok")
        else:
            why = next((e for e in errors if name in e), errors[0] if errors else "")
            text = why if why.startswith(f"collector {name}") else \
                f"collector {name} failed" + (f": {why}" if why else "")
            yield problem("collect", text)
    yield from check_celery_layout(errors)
    series = samples.exposed()
    omitted = sum(v for _, v in samples.rows.get("tqmon_worker_series_omitted", []))
    cap = config.max_worker_series
    text = f"a collection emits {series:,} series (Datadog's default limit: {DATADOG_LIMIT:,})"
    if omitted:
        text += f"; --max-worker-series {cap} leaves {omitted:,.0f} workers to their pools"
    if series > DATADOG_LIMIT:
        yield warning("series", text, "Datadog: raise max_returned_metrics in the openmetrics "
                      "check, or lower --max-worker-series")
    else:
        yield ok("series", text + (f"; --max-worker-series {'all' if cap is None else cap}"
                                   if not omitted else ""))


def check_celery_layout(errors: list[str]) -> Iterator[Finding]:
    """Celery keys the collection could not read (a separator, a key prefix, a list of another
    type), each with the option that fixes it."""
    for text, fix in celery_layout.unreadable(errors):
        yield warning("celery", text, fix)


# ---- the command ---------------------------------------------------------------------------

def findings(config: Config, captured: Captured) -> Iterator[Finding]:
    for text in config.warnings:
        yield warning("config", text)
    deadline = Deadline(config.timeout)
    try:
        topology = discover(config, deadline)
    finally:
        deadline.abandon()
    captured.take()  # discovery's stderr lines: the reach findings say the same, better
    reach, reached = check_reach(config, topology)
    yield from reach
    yield from check_tls(config)
    if not reached:
        return
    yield from check_auth(config, reached)
    yield from check_acl(config, topology, reached)
    yield from check_clock(reached)
    yield from check_cluster(topology, reached)
    yield from check_keys(config, topology, reached)
    yield from check_streams(config, topology, reached)
    yield from check_collection(config, captured)


def format_finding(finding: Finding, style: Style, secret: str | None) -> str:
    """`MARK topic    text`, wrapped to 80 columns; each fix on its own line below. A fix that
    is a command to paste (ACL SETUSER) is never wrapped."""
    mark = style.mark(finding.level)
    pad = " " if style.color else " " * (5 - len(mark))
    indent = " " * 14
    body = textwrap.wrap(redact(finding.text, secret), WIDTH - 14) or [""]
    lines = [f"{mark}{pad}{finding.topic:<8} {body[0]}", *(indent + b for b in body[1:])]
    for fix in finding.fixes:
        fix = redact(fix, secret)
        if fix.startswith("ACL SETUSER"):
            lines.append(f"{indent}{style.dim('fix:')} {fix}")
        else:
            wrapped = textwrap.wrap(fix, WIDTH - 19) or [""]
            lines.append(f"{indent}{style.dim('fix:')} {wrapped[0]}")
            lines += [f"{indent}     {w}" for w in wrapped[1:]]
    return "\n".join(lines) + "\n"


def main(config: Config, captured: Captured, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    style = style_for(out)
    counts = {"ok": 0, "warning": 0, "problem": 0}
    for finding in findings(config, captured):
        counts[finding.level] += 1
        out.write(format_finding(finding, style, config.password))
        out.flush()
    summary = (f"{counts['problem']} problem(s), {counts['warning']} warning(s), "
               f"{counts['ok']} ok")
    out.write("\n" + (style.bad(summary) if counts["problem"] else style.ok(summary)) + "\n")
    return 1 if counts["problem"] else 0
