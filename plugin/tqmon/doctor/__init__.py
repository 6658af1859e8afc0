"""`tqmon doctor`: check the set-up and say what is wrong and how to fix it, a finding a line.

When tqmon is set up wrong the exec plugin can only say `..._up 0` or nothing at all; doctor
looks where the cause usually is, in the order a person would: can each node be reached (and
how fast), does TLS verify and for which name and how long, who are we, may that user run what
each enabled collector runs (never running a write to find out), is the clock right, is the
cluster healthy, are there keys where the schema and prefix say, do the streams and groups
exist, and how many series a collection makes. Each check runs under its own deadline of
--timeout, so doctor ends; it writes nothing to Redis, and every text passes the password
redaction. One module per concern (reach, tls, auth, cluster, keys, streams, series, sentinel),
each check a function of the Checkup, run from the lists below.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from ..config import Config
from ..parallel import Deadline
from ..redaction import Secret, redact
from ..screen import Captured, Style, style_for
from ..termsafe import clean
from ..topology import discover
from . import auth, cluster, keys, reach, sentinel, series, streams, tls
from .base import Checkup, Finding, warning

__all__ = ["CHECKS", "FIRST", "Finding", "findings", "format_finding", "main"]
WIDTH = 80


Check = Callable[[Checkup], Iterable[Finding]]
# In order. FIRST run whatever answers; CHECKS only once some node answered (reach fills
# `reached`). A new check is a function of a Checkup added to one of these lists.
FIRST: list[Check] = [sentinel.check_sentinels, reach.check_reach, tls.check_tls]
CHECKS: list[Check] = [auth.check_auth, auth.check_acl, cluster.check_clock,
                       cluster.check_cluster, keys.check_keys, streams.check_streams,
                       series.check_collection]


def findings(config: Config, captured: Captured) -> Iterator[Finding]:
    for text in config.warnings:
        yield warning("config", text)
    deadline = Deadline(config.timeout)
    try:
        topology = discover(config, deadline)
        if topology.sentinel is not None:  # every sentinel's answer, for the sentinel check
            topology.sentinel.settle(deadline)
    finally:
        deadline.abandon()
    captured.take()  # discovery's stderr lines: the findings say the same, better
    checkup = Checkup(config, topology, captured)
    for check in FIRST:
        yield from check(checkup)
    if not checkup.reached:
        return
    for check in CHECKS:
        yield from check(checkup)


def format_finding(finding: Finding, style: Style, secret: Secret) -> str:
    """`MARK topic    text`, wrapped to 80 columns; each fix on its own line below. A fix that
    is a command to paste (ACL SETUSER) is never wrapped."""
    mark = style.mark(finding.level)
    pad = " " if style.color else " " * (5 - len(mark))
    indent = " " * 14
    # cleaned before wrapping: key and worker names in a finding come from Redis
    body = textwrap.wrap(clean(redact(finding.text, secret)), WIDTH - 14) or [""]
    lines = [f"{mark}{pad}{clean(finding.topic):<8} {body[0]}", *(indent + b for b in body[1:])]
    for fix in finding.fixes:
        fix = clean(redact(fix, secret))
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
        out.write(format_finding(finding, style, config.secrets))
        out.flush()
    summary = (f"{counts['problem']} problem(s), {counts['warning']} warning(s), "
               f"{counts['ok']} ok")
    out.write("\n" + (style.bad(summary) if counts["problem"] else style.ok(summary)) + "\n")
    return 1 if counts["problem"] else 0
