"""With --sentinel: does each sentinel answer, do they agree on the master, can they reach their
quorum, and may tqmon's sentinel user run what it needs (sentinels keep ACLs of their own)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ..parallel import Deadline
from ..sentinel import COMMANDS, Answer
from .base import MAX_NODE_LINES, Checkup, Finding, ok, problem, warning

WHY = {
    "auth": ("authentication failed: wrong sentinel password or user name",
             "set TQMON_SENTINEL_PASSWORD or --sentinel-password-file (and "
             "--sentinel-username for an ACL user): the sentinels' password, not Redis's"),
    "unknown_master": ("it monitors no master named {name!r}",
                       "--sentinel-master NAME: `redis-cli -p PORT SENTINEL MASTERS` lists the "
                       "names it monitors"),
    "timeout": ("{detail}",
                "a stopped or overloaded sentinel, a firewall, or raise --timeout"),
    "unreachable": ("not reachable ({detail})",
                    "is redis-sentinel running and listening on this address?"),
}


def fix_line(user: str, refused: list[str]) -> str:
    rules = " ".join(f"+sentinel|{c.lower()}" for c in refused)
    return f"ACL SETUSER {user} {rules}   (on every sentinel: each keeps its own ACL)"


def check_sentinels(c: Checkup) -> Iterator[Finding]:
    options, view = c.config.sentinel, c.topology.sentinel
    if options is None or view is None:
        return
    answers: dict[str, Answer] = view.settle(Deadline(0.0))  # settled during discovery
    user = options.username or "default"
    for n, (address, answer) in enumerate(answers.items()):
        if n == MAX_NODE_LINES:
            yield ok("sentinel", f"... and {len(answers) - n} more sentinel(s)")
            break
        if answer.master is not None:
            yield ok("sentinel", f"{address} answers: master {answer.master.address} "
                     f"(config epoch {answer.epoch if answer.epoch is not None else '?'})")
        elif answer.reason == "no_permission":
            yield problem("sentinel", f"{address}: user {user!r} may not run SENTINEL MASTER",
                          fix_line(user, list(COMMANDS)))
        else:
            text, fix = WHY.get(answer.reason, ("{detail}", ""))
            yield problem("sentinel", f"{address}: " + text.format(
                name=options.master, detail=answer.detail), *([fix] if fix else []))
    named = [a for a in answers.values() if a.master is not None]
    if not named:
        return
    refused = sorted({r for a in named for r in a.refused}, key=COMMANDS.index)
    if refused:
        yield problem("sentinel", f"user {user!r} may not run SENTINEL "
                      f"{', '.join(r.lower() for r in refused)}: replicas, other sentinels or "
                      "the quorum stay unknown", fix_line(user, refused))
    else:
        yield ok("sentinel", f"user {user!r} may run the {len(COMMANDS)} SENTINEL subcommands "
                 "tqmon needs")
    master, agreeing = view.master(answers)
    assert master is not None
    votes = Counter(a.master.address for a in named if a.master is not None)
    if len(votes) > 1:
        others = ", ".join(f"{count} name {address}" for address, count in votes.items()
                           if address != master.address)
        yield problem("sentinel", f"the sentinels disagree: {len(agreeing)} name "
                      f"{master.address} (followed), {others}",
                      "a partition or a failover in progress: check the sentinels' logs "
                      "(+switch-master) and their network")
    else:
        yield ok("sentinel", f"all {len(named)} sentinel(s) that answered agree: master "
                 f"{master.address}")
    verdicts = [a.quorum_ok for a in agreeing if a.quorum_ok is not None]
    if not verdicts:
        yield warning("sentinel", "the quorum is unknown: no sentinel answered CKQUORUM")
    elif any(verdicts):
        quorum = next((a.quorum for a in agreeing if a.quorum), "?")
        yield ok("sentinel", f"quorum ({quorum}) and failover authorisation reachable")
    else:
        yield problem("sentinel", "the sentinels cannot reach their quorum: no failover "
                      "would happen now (SENTINEL CKQUORUM: NOQUORUM)",
                      "bring the down sentinels back (see docs/runbook.md#sentinelquorumlost)")
    # by count: sentinels announce IPs where tqmon may have been given host names
    known = max(len(a.sentinels) + 1 for a in named)
    if known > len(answers):
        announced = sorted({p.address for a in named for p in a.sentinels} - set(answers))
        yield warning("sentinel", f"the sentinels know {known} sentinels, tqmon asks "
                      f"{len(answers)}: if the others fail, tqmon loses the master",
                      "give every sentinel: " + " ".join(f"--sentinel {u}"
                                                         for u in announced[:5]))
