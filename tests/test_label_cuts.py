"""Label values cut to 256 characters stay distinct (issue 22): two worker ids or queue names
that share their first 256 characters are two series, each ending in `~` and 8 hex digits of
the whole value's SHA-256 (docs/operations.md)."""

from __future__ import annotations

import hashlib

from helpers import run_tqmon
from tqmon.heartbeat import Heartbeat

from devtools import devcluster

LONG = "w" * 300


def _cut(value: str) -> str:
    return value[:247] + "~" + hashlib.sha256(value.encode()).hexdigest()[:8]


def test_long_worker_ids_and_queue_names_stay_distinct():
    server = devcluster.start_standalone()
    try:
        client = server.client()
        ids = [f"{LONG}-{i}" for i in range(17)] + ["short-1"]
        for worker_id in ids:
            Heartbeat(client, name=worker_id, worker_id=worker_id, ttl=30, interval=10).beat()
        native = run_tqmon("--redis-url", server.url, "--collectors", "workers")
        series = native.series("worker_up")
        assert len(series) == 18, len(series)
        assert {s["worker_id"] for s in series} == {_cut(i) if len(i) > 256 else i for i in ids}
        assert all(len(s["worker_id"]) <= 256 for s in series)

        queues = [f"q{'x' * 300}{i}" for i in range(3)]
        for queue in queues:
            client.sadd("rq:queues", f"rq:queue:{queue}")
            client.rpush(f"rq:queue:{queue}", "job")
        rq = run_tqmon("--redis-url", server.url, "--schema", "rq", "--collectors", "queues")
        assert {s["priority"] for s in rq.series("task_queue_depth")} == {
            _cut(q) for q in queues}
    finally:
        server.stop()
