"""Who are we, and may that user run what each enabled collector runs (asked, never run)."""

from __future__ import annotations

from collections.abc import Iterator

import redis

from .. import acl, connection
from ..model import describe_error
from ..parallel import Deadline
from ..topology import Node, Topology
from .base import Checkup, Finding, Reach, ok, problem, warning


def check_auth(c: Checkup) -> Iterator[Finding]:
    config, reached = c.config, c.reached
    who = next((r.whoami for r in reached.values() if r.whoami), None)
    user = who or config.username or "default"
    if not config.password:
        yield warning("auth", f"no password: connected as {user!r}; anyone who reaches the "
                      "port can read and write", "give the ACL user a password: "
                      "TQMON_REDIS_PASSWORD or --password-file")
    else:
        yield ok("auth", f"authenticated as {user!r}")


def check_acl(c: Checkup) -> Iterator[Finding]:
    config, topology, reached = c.config, c.topology, c.reached
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
