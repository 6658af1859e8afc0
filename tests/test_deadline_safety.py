"""Deadlines and partial results hold under many failures (issue 11, defects 10-13): any number
of stuck nodes, a node that dribbles bytes, odd replies during discovery or from INFO, and one
stderr line per failure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

from helpers import TQMON, run_tqmon
from hostile import Scripted, Silent, bulk

from devtools import devcluster


def test_healthy_nodes_are_up_whatever_the_number_of_stuck_ones(standalone):
    silent = [Silent() for _ in range(40)]
    try:
        args = [a for s in silent for a in ("--redis-url", s.url)]
        result = run_tqmon(*args, "--redis-url", standalone.url, "--collectors", "nodes",
                           "--timeout", "2", timed=True)
    finally:
        for s in silent:
            s.close()
    assert result.returncode == 0
    assert result.value("redis_cluster_node_up", node_id=standalone.address) == 1
    assert len(result.values("redis_cluster_node_up")) == 41
    assert sum(result.values("redis_cluster_node_up")) == 1
    assert result.run_seconds < 2 + 1.5


def _fds_and_threads(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def test_a_dribbling_node_leaks_no_socket_or_thread(standalone):
    """Every read gets a byte within the socket timeout, so only closing the sockets when the
    run answers frees them."""
    dribbler = Scripted(dribble=0.2)
    port = devcluster.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    proc = subprocess.Popen([*TQMON, "--listen", f"127.0.0.1:{port}", "--redis-url",
                             standalone.url, "--redis-url", dribbler.url, "--timeout", "1",
                             "--collectors", "nodes"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}/metrics"
    try:
        devcluster.wait_for(lambda: _scrape(base), 30, "the listener")
        _scrape(base)
        time.sleep(0.3)
        first = _fds_and_threads(proc.pid)
        for _ in range(6):
            assert "redis_cluster_node_up" in _scrape(base)
        time.sleep(0.3)
        last = _fds_and_threads(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        dribbler.close()
    assert "Traceback" not in err
    assert last[0] <= first[0] + 1, (first, last)  # sockets
    assert last[1] <= first[1] + 1, (first, last)  # threads


def _scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
    except OSError:
        return ""


def _odd_reply(words: list[bytes]) -> bytes:
    command = b" ".join(words).upper()
    if command == b"INFO REPLICATION":
        return bulk("# Replication\r\nrole:master\r\nconnected_slaves:1\r\n"
                    "slave0:garbage\r\n")
    if command.startswith(b"CLUSTER NODES"):
        return bulk("this is not\ncluster nodes output at all\n")
    if command == b"INFO":
        return bulk("# Server\r\nredis_version:7.0.0\r\nrole:master\r\nused_memory:lots\r\n"
                    "connected_clients:-\r\nmaster_repl_offset:x\r\nslave0:ip=,port=q\r\n")
    if command.startswith(b"CLUSTER INFO"):
        return bulk("cluster_state:ok\r\ncluster_slots_ok:many\r\n")
    return b"-ERR unknown command\r\n"


def test_odd_replies_cost_only_their_node(standalone):
    odd = Scripted(_odd_reply)
    try:
        for order in ((odd.url, standalone.url), (standalone.url, odd.url)):
            result = run_tqmon("--redis-url", order[0], "--redis-url", order[1],
                               "--collectors", "nodes", "--timeout", "2")
            assert result.returncode == 0, result.stderr
            assert result.value("tqmon_collector_up", collector="nodes") == 1
            assert result.value("redis_cluster_node_up", node_id=standalone.address) == 1
            assert result.value("redis_cluster_node_up", node_id=f"127.0.0.1:{odd.port}") == 1
            assert result.values("redis_cluster_memory_bytes",
                                 node_id=f"127.0.0.1:{odd.port}") == []
    finally:
        odd.close()


def test_one_down_node_prints_one_line(fresh_replicated):
    master, replica = fresh_replicated
    replica.kill()
    for urls in ((master.url, replica.url), (replica.url,)):
        result = run_tqmon(*(a for u in urls for a in ("--redis-url", u)), "--timeout", "1")
        assert result.returncode == 0
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert replica.address in lines[0]
    master.signal(signal.SIGSTOP)
    try:
        result = run_tqmon("--redis-url", master.url, "--timeout", "1")
    finally:
        master.signal(signal.SIGCONT)
    assert result.returncode == 0
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_an_abandoned_collection_does_not_requeue(standalone):
    """Defect 11: once the run has answered (its deadline abandoned), the requeue step of a
    collection still running must not move anything."""
    from collections import Counter

    from tqmon import config as tqconfig
    from tqmon.collectors.base import Context
    from tqmon.collectors.native import act, queues
    from tqmon.heartbeat import Heartbeat
    from tqmon.parallel import Deadline
    from tqmon.streams import TaskStreams
    from tqmon.topology import discover

    client = standalone.client()
    streams = TaskStreams(client)
    streams.ensure_groups()
    streams.enqueue("high", {"payload": "x"})
    Heartbeat(client, name="gone", worker_id="gone", ttl=1, interval=0.5).beat()
    client.xreadgroup("workers", "gone", {"{tq}:queue:high": ">"}, count=1)
    time.sleep(1.2)
    cfg = tqconfig.load(["--redis-url", standalone.url, "--heartbeat-ttl", "1",
                         "--requeue-orphans"], {})
    deadline = Deadline(5)
    ctx = Context(config=cfg, topology=discover(cfg, deadline), deadline=deadline)
    node = ctx.topology.node_for("{tq}:queue:high")
    read, _ = queues._read_node(ctx, node, list(cfg.streams))
    names = {c["name"] for s in read for g in s.groups.values() for c in g.consumers}
    dead = queues._dead_consumers(ctx, names)
    assert dead.dead == {b"gone"}
    deadline.abandon()  # the answer was given
    act.act(ctx, read, dead, Counter())
    assert client.xpending("{tq}:queue:high", "workers")["pending"] == 1
    assert client.xlen("{tq}:queue:high") == 1
