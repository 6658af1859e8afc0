"""Worker health from real worker processes, and exactly-once dead-worker detection."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time

from adapter_helpers import poll_tqmon, wait_for
from helpers import TQMON, Worker, check_exposition, run_tqmon
from tqmon import contract
from tqmon.heartbeat import Heartbeat

from devtools import devcluster

TTL = "2"


def tqmon(url: str, *args: str, **kwargs):
    return run_tqmon("--redis-url", url, "--heartbeat-ttl", TTL, *args, **kwargs)


def test_alive_workers_counts_uptime_status_and_latency(standalone, workers):
    spawned = time.time()
    a = Worker(standalone.url, "alpha", "--tasks", "7", "--fail-every", "3")
    b = Worker(standalone.url, "beta", "--tasks", "5", "--hold")
    workers += [a, b]
    assert a.wait_done() == (7, 2) and b.wait_done() == (5, 0)
    client = standalone.client()
    wait_for(lambda: client.hget(f"{{tq}}:worker:{b.worker_id}", "current_task") == "held", 30,
             "beta's held task")
    result = tqmon(standalone.url)
    assert result.returncode == 0 and result.stderr == ""
    for worker, processed, failed, status in ((a, 7, 2, 0), (b, 5, 0, 1)):
        labels = {"worker_id": worker.worker_id, "worker_name": worker.name}
        assert result.value("worker_up", **labels) == 1
        assert result.value("worker_tasks_processed_total", **labels) == processed
        assert result.value("worker_tasks_failed_total", **labels) == failed
        assert result.value("worker_current_status", **labels) == status
        assert 0 <= result.value("worker_uptime_seconds", **labels) <= time.time() - spawned
        assert result.value("worker_heartbeat_age_seconds", **labels) < 1
    assert result.total("workers_alive") == 2 and result.total("workers_dead") == 0
    assert result.value("dead_workers_detected_total") == 0
    counts = result.values("task_processing_latency_seconds_count")
    assert sum(counts) == 12
    assert result.value("tqmon_collector_up", collector="workers") == 1


def test_sigkilled_worker_is_dead_within_ttl_and_counted_once(standalone, workers):
    alive = Worker(standalone.url, "survivor")
    victim = Worker(standalone.url, "victim")
    workers += [alive, victim]
    assert tqmon(standalone.url).total("workers_alive") == 2
    victim.signal(signal.SIGKILL)
    deadline, seen_alive = time.monotonic() + 60, []
    while True:
        started = time.time()  # the clock of Redis's TIME: same host
        if tqmon(standalone.url).value("worker_up", worker_name="victim") == 0:
            break
        seen_alive.append(started)
        assert time.monotonic() < deadline, "never dead"
        time.sleep(0.2)
    # dead within the TTL: no run begun a TTL after its last beat (measured, not how long a
    # loaded machine takes to start a run) saw it alive
    last_beat = standalone.client().zscore("{tq}:workers", victim.worker_id)
    assert max(seen_alive, default=last_beat) - last_beat < float(TTL) + 0.01
    for _ in range(3):  # more runs do not count the same death again
        result = tqmon(standalone.url)
        assert result.value("dead_workers_detected_total") == 1
    assert result.value("worker_up", worker_name="survivor") == 1
    assert result.total("workers_dead") == 1
    assert standalone.client().zscore("{tq}:workers:dead", victim.worker_id) is not None


def test_clean_stop_is_not_a_death(standalone, workers):
    worker = Worker(standalone.url, "leaver")
    workers.append(worker)
    worker.signal(signal.SIGTERM)
    worker.proc.wait(10)
    assert worker.proc.returncode == 0
    time.sleep(float(TTL) + 0.5)
    result = tqmon(standalone.url)
    assert result.series("worker_up") == []
    assert result.value("dead_workers_detected_total") == 0
    assert not standalone.client().exists(f"{{tq}}:worker:{worker.worker_id}")


def _register_stale(client, count: int, ttl: float = 1) -> None:
    for i in range(count):
        hb = Heartbeat(client, name=f"ghost{i}", worker_id=f"ghost-{i}", ttl=ttl, interval=0.5)
        hb.beat()  # hash missing: registers; no background thread, so it goes stale


def test_eight_collectors_at_once_count_each_death_exactly_once(standalone):
    client = standalone.client()
    _register_stale(client, 40)
    time.sleep(float(TTL) + 0.2)
    procs = [subprocess.Popen([*TQMON, "--redis-url", standalone.url, "--heartbeat-ttl", TTL],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    outputs = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    for out, err in outputs:
        assert err == ""
        check_exposition(out)
    assert client.hget("{tq}:stats", "dead_workers_detected") == "40"
    assert client.zcard("{tq}:workers:dead") == 40


def _digest(client) -> str:
    h = hashlib.sha256()
    for key in sorted(client.scan_iter(count=1000)):
        h.update(f"{key}\0{client.type(key)}\0{_value(client, key)!r}\0".encode())
    return h.hexdigest()


def _value(client, key):
    kind = client.type(key)
    return {"string": client.get, "hash": client.hgetall, "zset":
            lambda k: client.zrange(k, 0, -1, withscores=True),
            "list": lambda k: client.lrange(k, 0, -1),
            "set": lambda k: sorted(client.smembers(k))}[kind](key)


READER_ACL = "reader on >reader-pw ~* -@all +@read -@write +info +ping +time " \
             "+cluster|info +cluster|nodes"


def _server_now(client) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def _run_right_after_beat(client, live: Heartbeat, *args: str, **kwargs):
    """(digest, result): `live` beats, the digest is taken, tqmon runs; again if the run ended
    a TTL or more after the beat (a loaded machine can take that long to start it): only a run
    inside the TTL must read `live` alive."""
    deadline = time.monotonic() + 60
    while True:
        beat = _server_now(client)  # before the beat: its score is at least this
        live.beat()
        before = _digest(client)
        result = tqmon(*args, **kwargs)
        late = _server_now(client) - beat
        if late < float(TTL):
            return before, result
        assert time.monotonic() < deadline, f"no run within {TTL} s of a beat (last {late:.1f} s)"


def test_read_only_as_acl_user_without_writes():
    server = devcluster.start_standalone(["--user", *READER_ACL.split()])
    try:
        client = server.client()
        _register_stale(client, 3)
        time.sleep(float(TTL) + 0.2)  # the ghosts' last beats are older than TTL from now on
        live = Heartbeat(client, name="live", worker_id="live")  # never started: beats on call
        env = {"TQMON_REDIS_PASSWORD": "reader-pw"}
        before, result = _run_right_after_beat(client, live, server.url, "--username", "reader",
                                               "--read-only", env=env, secret="reader-pw")
        assert result.returncode == 0 and result.stderr == ""
        assert result.total("workers_alive") == 1 and result.total("workers_dead") == 3
        assert result.value("dead_workers_detected_total") == 0  # reported, not recorded
        assert _digest(client) == before
        # without --read-only the same user cannot record deaths: a warning, metrics anyway
        before, result = _run_right_after_beat(client, live, server.url, "--username", "reader",
                                               env=env)
        assert "detection not recorded" in result.stderr
        assert "no permissions to run the 'eval' command" in result.stderr
        assert result.total("workers_alive") == 1 and result.total("workers_dead") == 3
        assert _digest(client) == before
    finally:
        server.stop()


def test_read_only_changes_nothing(standalone):
    client = standalone.client()
    _register_stale(client, 5)
    Heartbeat(client, name="w", worker_id="finished").task_finished(0.2)
    time.sleep(float(TTL) + 0.2)
    before = _digest(client)
    result = tqmon(standalone.url, "--read-only")
    assert result.total("workers_dead") == 5
    assert _digest(client) == before


def test_resurrection_and_second_death_count_twice(standalone, workers):
    worker = Worker(standalone.url, "lazarus")
    workers.append(worker)
    worker.signal(signal.SIGSTOP)
    time.sleep(float(TTL) + 0.5)
    result = tqmon(standalone.url)
    assert result.value("worker_up", worker_name="lazarus") == 0
    assert result.value("dead_workers_detected_total") == 1
    worker.signal(signal.SIGCONT)
    poll_tqmon(["--redis-url", standalone.url, "--heartbeat-ttl", TTL],
               lambda r: r.values("worker_up", worker_name="lazarus") == [1.0], 30,
               "lazarus beating again")
    assert standalone.client().zscore("{tq}:workers:dead", worker.worker_id) is None
    worker.signal(signal.SIGSTOP)
    time.sleep(float(TTL) + 0.5)
    result = tqmon(standalone.url)
    worker.signal(signal.SIGCONT)
    assert result.value("dead_workers_detected_total") == 2


def test_dead_worker_pruned_after_retention(standalone, workers):
    worker = Worker(standalone.url, "goner")
    workers.append(worker)
    worker.signal(signal.SIGKILL)
    time.sleep(float(TTL) + 0.3)
    result = tqmon(standalone.url, "--dead-retention", "1")
    assert result.value("worker_up", worker_name="goner") == 0
    time.sleep(1.2)
    result = tqmon(standalone.url, "--dead-retention", "1")
    assert result.series("worker_up") == []
    client = standalone.client()
    assert not client.exists(f"{{tq}}:worker:{worker.worker_id}")
    assert client.zcard("{tq}:workers") == 0 and client.zcard("{tq}:workers:dead") == 0
    assert result.value("dead_workers_detected_total") == 1  # the counter stays monotonic


def test_wrong_key_types_are_reported_not_crashed(standalone, workers):
    client = standalone.client()
    workers.append(Worker(standalone.url, "ok"))
    client.zadd("{tq}:workers", {"weird": time.time()})  # a member whose hash is a list
    client.rpush("{tq}:worker:weird", "x")
    client.set("{tq}:latency", "not a hash")
    client.set("{tq}:stats", "not a hash")
    result = tqmon(standalone.url, "--read-only")
    assert result.returncode == 0
    assert result.value("tqmon_collector_up", collector="workers") == 1
    assert result.value("worker_up", worker_name="ok") == 1
    assert result.value("tqmon_skipped_entries", collector="workers", reason="wrong_type") == 3
    client.delete("{tq}:workers")
    client.set("{tq}:workers", "registry of the wrong type")
    result = tqmon(standalone.url)
    assert result.returncode == 0 and "WRONGTYPE" in result.stderr
    assert result.value("tqmon_collector_up", collector="workers") == 0
    assert result.value("tqmon_collector_up", collector="nodes") == 1


def test_bad_values_are_skipped_and_counted(standalone):
    client = standalone.client()
    hb = Heartbeat(client, name='quote" back\\slash\nnewline', worker_id="odd", ttl=30,
                   interval=10)
    hb.beat()
    client.hset("{tq}:worker:odd", mapping={"tasks_processed": "lots", "tasks_failed": "-3",
                                            "started_at": "nan", "status": "dancing"})
    client.hset("{tq}:worker:huge", mapping={"name": "h" * 5000, "tasks_processed": "1e400"})
    client.zadd("{tq}:workers", {"huge": float(client.time()[0])})
    client.hset("{tq}:latency", mapping={"bucket|7.5|[\"t\",\"high\"]": "1", "junk": "1",
                                         "bucket|0.5|not json": "2",
                                         "sum|[\"t\",\"high\"]": "x"})
    result = tqmon(standalone.url)
    assert result.value("tqmon_collector_up", collector="workers") == 1
    skipped = {s["reason"]: result.value("tqmon_skipped_entries", **s)
               for s in result.series("tqmon_skipped_entries")}
    assert skipped["bad_value"] == 6  # lots, -3, nan, dancing, 1e400, sum "x"
    assert skipped["bad_latency_field"] == 3  # unknown bound, no kind, bad series JSON
    assert skipped["long_label"] == 1
    assert result.value("worker_up", worker_id="odd") == 1
    assert result.values("worker_tasks_processed_total", worker_id="odd") == []


def test_contract_keys_share_one_slot():
    keys = contract.Keys("fleet-7")
    from redis.crc import key_slot
    slots = {key_slot(k.encode()) for k in (keys.workers, keys.dead, keys.stats, keys.latency,
                                            keys.worker("w1"), keys.queue("high"))}
    assert len(slots) == 1


def _acl(doc_block_start: str) -> list[str]:
    """The ACL SETUSER rules documented in docs/heartbeat-contract.md, as server arguments."""
    from pathlib import Path
    text = Path(__file__).parent.parent.joinpath("docs", "heartbeat-contract.md").read_text()
    block = text[text.index(doc_block_start):]
    block = block[:block.index("```")]
    return block.removeprefix("ACL SETUSER ").replace("PASSWORD", "pw").split()


def test_documented_acls_are_enough(workers):
    worker_rules = _acl("ACL SETUSER worker")
    tqmon_rules = _acl("ACL SETUSER tqmon")
    server = devcluster.start_standalone(["--user", *worker_rules, "--user", *tqmon_rules])
    try:
        url_worker = f"redis://worker:pw@{server.address}"
        worker = Worker(url_worker, "acl-worker", "--tasks", "3", "--fail-every", "2")
        workers.append(worker)
        assert worker.wait_done() == (3, 1)
        ghost = server.client(username="worker", password="pw")
        _register_stale(ghost, 2)
        time.sleep(float(TTL) + 0.2)
        env = {"TQMON_REDIS_PASSWORD": "pw"}
        result = tqmon(server.url, "--username", "tqmon", env=env)
        assert result.stderr == ""
        assert result.total("workers_alive") == 1 and result.total("workers_dead") == 2
        assert result.value("dead_workers_detected_total") == 2
        assert result.value("worker_tasks_failed_total", worker_name="acl-worker") == 1
        read_only = _acl("ACL SETUSER tqmon")[:_acl("ACL SETUSER tqmon").index("+eval")]
        server.client().acl_setuser("tqmon", reset=True)
        server.client().execute_command("ACL", "SETUSER", *read_only)
        result = tqmon(server.url, "--username", "tqmon", "--read-only", env=env)
        assert result.stderr == "" and result.total("workers_dead") == 2
    finally:
        server.stop()


def test_the_urls_database_is_read(standalone):
    client = standalone.client(db=3)
    Heartbeat(client, name="in-db-3", worker_id="db3").beat()
    result = tqmon(f"{standalone.url}/3", "--read-only")
    assert result.value("worker_up", worker_id="db3") == 1
    assert result.value("redis_cluster_node_up", node_id=standalone.address) == 1
    assert tqmon(standalone.url, "--read-only").series("worker_up") == []
