"""Is this host's clock right against Redis's, and is the cluster healthy."""

from __future__ import annotations

from collections.abc import Iterator

from .base import Checkup, Finding, ok, problem, warning

CLOCK_WARN = 1.0  # seconds between this host's clock and Redis's TIME


def check_clock(c: Checkup) -> Iterator[Finding]:
    reached = c.reached
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


def check_cluster(c: Checkup) -> Iterator[Finding]:
    topology, reached = c.topology, c.reached
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
