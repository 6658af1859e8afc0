"""The Redis ACLs the docs give are generated from acl.py (issue 22): docs/operations.md (the
nodes collector) and docs/heartbeat-contract.md (the collector: default, --read-only,
--requeue-orphans) are current, and tqmon runs as exactly each documented user with nothing
refused: no line on stderr, every collector up, the writes done."""

from __future__ import annotations

import re
import time
from pathlib import Path

from helpers import run_tqmon
from tqmon.heartbeat import Heartbeat
from tqmon.streams import TaskStreams

from devtools import acl_docs, devcluster

PASSWORD = "acl-pw-9"


def _block(name: str) -> str:
    text = acl_docs.DOCS[name].read_text()
    region = re.search(rf"<!-- acl:{name} -->\n(.*?)<!-- /acl:{name} -->", text, re.S)
    assert region, f"no generated {name} ACL in {acl_docs.DOCS[name]}"
    return region.group(1)


def _user(block: str, user: str, upto: int | None = None) -> list[str]:
    """`ACL SETUSER` arguments of the first fenced block, its first `upto` lines."""
    fenced = block[block.index("```\n") + 4:]
    lines = fenced[:fenced.index("```")].splitlines()[:upto]
    words = " ".join(lines).split()
    assert words[:3] == ["ACL", "SETUSER", "tqmon"], words
    return [user, *(w.replace("PASSWORD", PASSWORD) for w in words[3:])]


def test_acl_docs_are_generated_and_current():
    for name, path in acl_docs.DOCS.items():
        text = Path(path).read_text()
        assert acl_docs.render(name, text) == text, f"stale: run make acl-docs ({path})"
    assert "+ping" not in _block("nodes")  # nothing sends PING


def _run(server, user: str, *args: str):
    result = run_tqmon("--redis-url", server.url, "--username", user, "--heartbeat-ttl", "1",
                       *args,
                       env={"TQMON_REDIS_PASSWORD": PASSWORD}, secret=PASSWORD)
    assert result.returncode == 0 and result.stderr == "", (user, result.stderr)
    assert set(result.values("tqmon_collector_up")) == {1.0}, (user, result.stdout)
    return result


def test_tqmon_runs_as_exactly_each_documented_user():
    collector = _block("collector")
    read_lines = int(re.search(r"the first (\d+) lines only", collector).group(1))
    extra = re.search(r"beyond that: `([^`]*)`", collector).group(1).split()
    full = _user(collector, "full")
    users = [_user(_block("nodes"), "nodes"), full, _user(collector, "reader", read_lines),
             ["requeuer", *full[1:], *extra]]
    server = devcluster.start_standalone([arg for u in users for arg in ("--user", *u)])
    try:
        client = server.client()
        streams = TaskStreams(client)
        streams.ensure_groups()
        streams.enqueue("high", {"n": 1})
        Heartbeat(client, name="ghost-1", worker_id="ghost-1", ttl=1, interval=0.5).beat()
        streams.next("ghost-1", 1)  # the ghost dies holding a task
        time.sleep(1.2)

        nodes = _run(server, "nodes", "--collectors", "nodes")
        assert nodes.value("redis_cluster_node_up", node_id=server.address) == 1
        reader = _run(server, "reader", "--read-only")
        assert reader.total("workers_dead") == 1
        written = _run(server, "full")
        assert written.value("dead_workers_detected_total") == 1
        high = streams.streams["high"]
        assert client.xpending(high, "workers")["pending"] == 1
        _run(server, "requeuer", "--requeue-orphans")
        assert client.xpending(high, "workers")["pending"] == 0  # put back on the stream
    finally:
        server.stop()
