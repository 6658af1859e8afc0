"""The Redis ACLs in docs/operations.md and docs/heartbeat-contract.md, generated from
plugin/tqmon/acl.py (what each collector runs, which `tqmon doctor` checks against): the text
between `<!-- acl:NAME -->` and `<!-- /acl:NAME -->` is rewritten. `make acl-docs`; a test
fails when the docs are stale, and runs tqmon as exactly each user they give."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tqmon import acl
from tqmon.config import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = {"nodes": ROOT / "docs" / "operations.md",
        "collector": ROOT / "docs" / "heartbeat-contract.md"}


def _fence(text: str) -> str:
    return f"```\n{text}\n```"


def blocks() -> dict[str, str]:
    """Each generated region's text, by name."""
    nodes_patterns, nodes = acl.grants(Config(collectors=("nodes",)))
    patterns, reads = acl.grants(Config(read_only=True))
    _, everything = acl.grants(Config())
    _, requeue = acl.grants(Config(requeue_orphans=True))
    writes = [r for r in everything if r not in reads]
    extra = [r for r in requeue if r not in everything]
    node_rules = [r for r in reads if r in nodes]
    others = [r for r in reads if r not in nodes]
    read_only = acl.setuser("tqmon", patterns, [node_rules, others])
    return {
        "nodes": _fence(acl.setuser("tqmon", nodes_patterns, [nodes])),
        "collector": (
            "Collector, default mode (records deaths and prunes through one `EVAL`; removes "
            "the consumers\nof pruned workers that hold nothing):\n\n"
            + _fence(acl.setuser("tqmon", patterns, [node_rules, others, writes])) + "\n\n"
            f"Collector, `--read-only`: the first {read_only.count(chr(10)) + 1} lines only; "
            "it writes "
            "nothing at all (no `EVAL`, no\n`SCRIPT LOAD`). The tests also run it as a user "
            "with `+@read -@write`.\n\n"
            "With `--requeue-orphans`, add what the requeue script runs beyond that: "
            + f"`{' '.join(extra)}`."),
    }


def render(name: str, text: str) -> str:
    """`text` with region `name` replaced by its generated content."""
    pattern = re.compile(rf"(<!-- acl:{name} -->\n)(?:.*?\n)?(<!-- /acl:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- acl:{name} --> region in the docs")
    return pattern.sub(lambda m: m.group(1) + blocks()[name] + "\n" + m.group(2), text)


def main() -> int:
    for name, path in DOCS.items():
        text = path.read_text()
        new = render(name, text)
        if new != text:
            path.write_text(new)
            print(f"rewrote the {name} ACL in {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
