"""Threads and connections per run are bounded (issue 22): per-node work runs on at most
parallel.MAX_THREADS threads, and stuck nodes (accepting, never answering) still cannot keep the
healthy ones from being reported, even when there are more stuck nodes than threads."""

from __future__ import annotations

import threading
import time

from helpers import run_in_process
from hostile import Silent
from prometheus_client.parser import text_string_to_metric_families
from tqmon import parallel

from devtools import devcluster

CAP = 8


def test_stuck_nodes_beyond_the_thread_cap_do_not_hold_up_healthy_ones(monkeypatch):
    monkeypatch.setattr(parallel, "MAX_THREADS", CAP, raising=False)
    healthy = [devcluster.start_standalone() for _ in range(2)]
    stuck = [Silent() for _ in range(40)]
    peak, stop = [0], threading.Event()

    def count() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(t.name == "tqmon-worker" for t in threading.enumerate()))
            time.sleep(0.005)

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    try:
        urls = [s.url for s in stuck] + [h.url for h in healthy]  # the healthy ones last
        args = [a for url in urls for a in ("--redis-url", url)]
        started = time.monotonic()
        text = run_in_process(*args, "--collectors", "nodes", "--timeout", "2")
        took = time.monotonic() - started
    finally:
        stop.set()
        counter.join(5)
        for server in healthy:
            server.stop()
        for silent in stuck:
            silent.close()
    up = {s.labels["node_id"]: s.value for f in text_string_to_metric_families(text)
          for s in f.samples if s.name == "redis_cluster_node_up"}
    assert all(up[h.address] == 1 for h in healthy), up
    assert sum(v == 0 for v in up.values()) == len(stuck)
    assert took < 3, took
    # nested calls (collectors, then nodes) each have their own cap
    assert 0 < peak[0] <= 2 * CAP, peak[0]
