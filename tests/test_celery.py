"""--schema celery against real `celery worker` processes (threads pool) on a real redis-server."""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from adapter_helpers import (
    Process,
    check_signals,
    digest,
    poll_tqmon,
    started_processes,
    system_digest,
    wait_for,
)
from helpers import TQMON, Result, read_textfile, run_tqmon
from prometheus_client.parser import text_string_to_metric_families

from devtools import devcluster

CELERY = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "threads",
          "-c", "2", "--without-mingle", "--without-gossip", "-l", "WARNING"]
NAMES = ("w1@tqmon", "w2@tqmon", "w3@tqmon")


@pytest.fixture
def processes():
    yield from started_processes()


def _start(url: str, name: str, queues: str) -> Process:
    return Process([*CELERY, "-n", name, "-Q", queues], url)


def _up(result: Result, name: str) -> float:
    return result.value("worker_up", worker_id=name, worker_name=name)


def _ours(client: redis.Redis) -> dict:
    """The digest of every key but tqmon's own {tq}:celery:* memory."""
    return {k: v for k, v in digest(client).items() if not k.startswith(b"{tq}")}


def test_celery_workers_queues_death_and_read_only(standalone, processes, monkeypatch):
    url = standalone.url
    monkeypatch.setenv("TQMON_TEST_REDIS_URL", url)
    import celery_app  # the producer: its app reads the URL when imported

    client = redis.Redis.from_url(url)
    # Only w1 serves "slow", so it is the one holding the long tasks.
    processes += [_start(url, NAMES[0], "work,slow"), _start(url, NAMES[1], "work"),
                  _start(url, NAMES[2], "work")]
    for i in range(6):
        celery_app.add.apply_async((i, 1), queue="work")
    for priority in (0, 3, 5, 9):  # nobody serves "backlog": one message in each step's list
        celery_app.add.apply_async((1, 1), queue="backlog", priority=priority)
    celery_app.hold.apply_async((60,), queue="slow")
    celery_app.hold.apply_async((60,), queue="slow")
    # the one kind of message that tells its age: sent with an eta (here 30 s ago)
    eta = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=30)
    celery_app.add.apply_async((1, 1), queue="later", eta=eta)
    assert client.exists("backlog", "backlog\x06\x163", "backlog\x06\x169") == 3

    args = ["--schema", "celery", "--redis-url", url, "--collectors", "workers,queues"]
    result = poll_tqmon(args, lambda r: r.total("workers_alive") == 3
                        and sum(r.values("worker_tasks_processed_total")) == 8
                        and r.value("task_queue_pending", priority="slow", group="celery") == 2,
                        60, "three workers, the tasks done and the long ones held")
    assert all(_up(result, name) == 1 for name in NAMES)
    # Celery's `processed` counts tasks a worker accepted: the two it still runs included
    assert result.value("worker_tasks_processed_total", worker_id=NAMES[0],
                        worker_name=NAMES[0]) >= 2
    assert result.value("worker_current_status", worker_id=NAMES[0], worker_name=NAMES[0]) == 1
    assert all(0 <= v <= 4 for v in result.values("worker_heartbeat_age_seconds"))
    assert {s["hostname"] for s in result.series("worker_info")} == {"tqmon"}
    assert result.value("dead_workers_detected_total") == 0
    assert {s["priority"] for s in result.series("task_queue_depth")} == {
        "work", "slow", "backlog", "later"}  # found in kombu's bindings; celery's own skipped
    assert result.value("task_queue_depth", priority="backlog") == 4  # every priority list
    assert result.value("task_queue_depth", priority="work") == 0
    assert result.value("task_queue_orphaned", priority="slow", group="celery") == 0
    assert 0 < result.value("task_queue_oldest_pending_idle_seconds", priority="slow",
                            group="celery") < 30
    # Celery's messages carry no send time: observed (first seen at a list's head), 0 when
    # empty; a message sent with an eta is at least as old as its eta
    assert result.value("task_queue_oldest_waiting_age_seconds", priority="work",
                        group="celery") == 0
    assert 0 <= result.value("task_queue_oldest_waiting_age_seconds", priority="backlog",
                             group="celery") < 60
    assert 30 <= result.value("task_queue_oldest_waiting_age_seconds", priority="later",
                              group="celery") < 120
    assert sum(result.values("tqmon_skipped_entries")) == 0

    # --read-only exec mode: no memory, the live workers only, no observed waiting age
    result = run_tqmon(*args, "--read-only")
    assert all(_up(result, name) == 1 for name in NAMES)
    assert not result.values("dead_workers_detected_total")
    ages = {s["priority"] for s in result.series("task_queue_oldest_waiting_age_seconds")}
    assert ages == {"work", "slow", "later"}  # backlog waits: its age is unknown here

    # SIGKILL w1 while it holds both long tasks (late ack: they stay in `unacked`)
    killed_at = time.monotonic()
    processes[0].signal(signal.SIGKILL)
    result = poll_tqmon(args, lambda r: _up(r, NAMES[0]) == 0, 20, "w1's death")
    # its last heartbeat was before the kill: no run begun 10 s after it saw it up
    assert (result.last_miss_started or killed_at) - killed_at < 10
    assert result.total("workers_alive") == 2 and result.total("workers_dead") == 1
    assert result.value("dead_workers_detected_total") == 1
    # two collectors at once (an HA pair): the death is still counted once
    with ThreadPoolExecutor(2) as pool:
        pair = list(pool.map(lambda _: run_tqmon(*args), range(2)))
    assert [r.value("dead_workers_detected_total") for r in pair] == [1, 1]
    check_signals("celery", *pair)
    assert all(_up(r, NAMES[0]) == 0 and _up(r, NAMES[1]) == 1 for r in pair)
    # taken more than the visibility timeout ago: orphaned
    result = run_tqmon(*args, "--collectors", "queues", "--celery-visibility-timeout", "0.5")
    assert result.value("task_queue_orphaned", priority="slow", group="celery") == 2
    assert result.value("task_queue_pending", priority="slow", group="celery") == 2

    # Collecting never writes Celery's keys: freeze the workers (kombu writes), digest.
    for process in processes[1:]:
        process.signal(signal.SIGSTOP)
    before = _ours(client)
    run_tqmon(*args)
    assert _ours(client) == before
    before = digest(client)
    run_tqmon(*args, "--read-only")
    assert digest(client) == before


def _publish(client: redis.Redis, channel: str, event: dict) -> None:
    """A worker-heartbeat in kombu's envelope, as Celery publishes it."""
    body = base64.b64encode(json.dumps(event).encode()).decode()
    client.publish(channel, json.dumps({
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"hostname": event["hostname"]},
        "properties": {"body_encoding": "base64", "delivery_info": {
            "exchange": "celeryev", "routing_key": event["type"].replace("-", ".")}}}))


def test_celery_listen_mode_remembers_in_the_process():
    """--listen keeps what it heard in the process: a worker heard in one scrape and silent in
    the next, its pidbox binding left behind (a SIGKILL), is down and counted; one whose binding
    is gone (a clean stop) is forgotten; nothing but tqmon's pool counters is written to Redis;
    garbage on the channel is counted, not fatal. (Heartbeats published by the test: a freq of
    0.5 s keeps it short.)"""
    server = devcluster.start_standalone()
    port = devcluster.free_port()
    listener = Process([sys.executable, "-m", "tqmon", "--schema", "celery", "--redis-url",
                        f"{server.url}/2", "--celery-heartbeat-interval", "0.5", "--listen",
                        f"127.0.0.1:{port}", "--collectors", "workers"], server.url)
    client = server.client()
    db2 = server.client(db=2)
    db2.sadd("_kombu.binding.celery.pidbox", "\x06\x16\x06\x16fake@host.celery.pidbox")
    before = system_digest(db2)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.2):
            for name in ("fake@host", "gone@host"):
                _publish(client, "/2.celeryev/worker.heartbeat", {
                    "hostname": name, "type": "worker-heartbeat", "freq": 0.5,
                    "active": 0, "processed": 7})
            client.publish("/2.celeryev/worker.heartbeat", b"\x80not json")

    def scrape() -> Result:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        return Result(0, text, "", 0.0, samples)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        wait_for(lambda: _reachable(port), 30, "tqmon --listen")
        result = scrape()
        assert _up(result, "fake@host") == 1
        assert result.value("worker_tasks_processed_total", worker_id="fake@host",
                            worker_name="fake@host") == 7
        assert result.value("tqmon_skipped_entries", collector="workers",
                            reason="bad_value") > 0
        stop.set()
        beater.join()
        deadline = time.monotonic() + 10
        while _up(result := scrape(), "fake@host") == 1:  # until past 2 x freq
            assert time.monotonic() < deadline, result.stdout
        assert result.value("dead_workers_detected_total") == 1
        result = scrape()
        assert result.value("dead_workers_detected_total") == 1
        assert not result.values("worker_up", worker_id="gone@host", worker_name="gone@host")
        assert client.dbsize() == 0 and system_digest(db2) == before
        assert {k for k in db2.scan_iter() if k.startswith("{tq}")} == {
            "{tq}:celery:pool_seen", "{tq}:celery:pool_last", "{tq}:celery:pool_stats"}
    finally:
        stop.set()
        listener.stop()
        server.stop()


def _reachable(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
    except OSError:
        return False
    return True


def test_celery_bad_data_is_counted_not_fatal(standalone):
    """Keys kombu would never write: a queue of the wrong type, a garbled binding, unacked
    entries that are not JSON or route to no known queue; and a user without write access
    to tqmon's memory (NOPERM): reported, not fatal."""
    client = standalone.client()
    client.sadd("_kombu.binding.jobs", "jobs\x06\x16\x06\x16jobs", "garbage")
    client.set("jobs\x06\x166", "not a list")
    client.rpush("jobs", "not json either")
    client.hset("unacked", mapping={"t1": "{nope", "t2": '[{}, "elsewhere", "elsewhere"]',
                                    "t3": '[{}, "jobs", "jobs"]'})
    client.zadd("unacked_index", {"t1": 1, "t2": 2, "t3": time.time() - 10})
    client.execute_command("ACL", "SETUSER", "reader", "on", ">secret", "~*", "&*", "+@read",
                           "+@connection", "+psubscribe", "+time", "+scan", "+info")
    before = digest(client)
    result = run_tqmon("--schema", "celery", "--redis-url", standalone.url, "--username",
                       "reader", "--collectors", "workers,queues", "--timeout", "1.5",
                       "--celery-heartbeat-interval", "0.5",
                       env={"TQMON_REDIS_PASSWORD": "secret"}, secret="secret")
    assert result.returncode == 0, result.stderr
    assert digest(client) == before
    assert "worker memory not recorded" in result.stderr
    assert result.value("tqmon_collector_up", collector="workers") == 1
    assert result.total("workers_alive") == 0
    assert result.value("task_queue_depth", priority="jobs") == 1
    assert result.value("task_queue_pending", priority="jobs", group="celery") == 1
    skipped = {s["reason"]: v for s, v in zip(result.series("tqmon_skipped_entries"),
               result.values("tqmon_skipped_entries"), strict=True)
               if s["collector"] == "queues"}
    # bad values: the garbled binding, the unacked t1, the waiting message (no delivery tag)
    assert skipped == {"bad_value": 3, "wrong_type": 1, "unknown_queue": 1, "not_scanned": 0}
    # never silent: what it cannot read, named, with the option that would fix it
    assert "celery: cannot read binding members that do not split" in result.stderr
    assert "_kombu.binding.jobs garbage; set --celery-sep" in result.stderr
    assert "queue keys that are not lists: jobs\\x06\\x166" in result.stderr
    assert "observed waiting age not recorded" in result.stderr

    # tqmon's own memory, garbled: the entry is skipped (its death still counted once: its
    # pidbox binding is left, as a SIGKILL leaves it)
    client.sadd("_kombu.binding.celery.pidbox", "\x06\x16\x06\x16ghost@host.celery.pidbox")
    client.zadd("{tq}:celery:workers", {"ghost@host": 1})
    client.hset("{tq}:celery:info", "ghost@host", "garbage")
    result = run_tqmon("--schema", "celery", "--redis-url", standalone.url, "--collectors",
                       "workers", "--timeout", "1.5", "--celery-heartbeat-interval", "0.5")
    assert result.value("tqmon_skipped_entries", collector="workers", reason="bad_value") == 1
    assert not result.values("worker_up") and result.value("dead_workers_detected_total") == 1


def test_celery_deaths_counted_however_many_are_retained(standalone):
    """1,200 dead workers retained (within --dead-retention), then one new death: counted.
    The dead set is read from a cursor (lua/dead_set.lua), not from its lowest score."""
    client = standalone.client()
    seconds, micros = client.time()
    now = seconds + micros / 1e6
    names = [f"old{i}@host" for i in range(1200)]
    # SIGKILLed workers leave their pidbox binding: each of them died
    client.sadd("_kombu.binding.celery.pidbox",
                *(f"\x06\x16\x06\x16{n}.celery.pidbox" for n in [*names, "new@host"]))
    client.zadd("{tq}:celery:workers", {n: now - 100 + i / 100 for i, n in enumerate(names)})
    args = ["--schema", "celery", "--redis-url", standalone.url, "--collectors", "workers",
            "--celery-heartbeat-interval", "0.5"]
    assert run_tqmon(*args).value("dead_workers_detected_total") == 1000  # a run's limit
    assert run_tqmon(*args).value("dead_workers_detected_total") == 1200
    assert client.zcard("{tq}:celery:dead") == 1200  # all retained

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.1):
            _publish(client, "/0.celeryev/worker.heartbeat", {
                "hostname": "new@host", "type": "worker-heartbeat", "freq": 0.5})

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        result = run_tqmon(*args)
    finally:
        stop.set()
        beater.join()
    assert _up(result, "new@host") == 1
    result = poll_tqmon(args, lambda r: _up(r, "new@host") == 0, 30, "new@host's death")
    assert result.value("dead_workers_detected_total") == 1201


def test_celery_layout_options_from_flags_and_the_config_file(standalone, tmp_path):
    """--celery-sep and --celery-priority-steps, as flags and as config-file keys; bad values
    are one line and exit 2."""
    client = standalone.client()
    client.sadd("_kombu.binding.jobs", "jobs::jobs")  # kombu's sep ':' (a direct binding)
    client.rpush("jobs", "{}")
    client.rpush("jobs:12", "{}", "{}")  # a step beyond 0..9: only the option finds it
    config = tmp_path / "tqmon.yaml"
    config.write_text(f"redis_url: {standalone.url}\nschema: celery\ncollectors: queues\n"
                      "celery_sep: ':'\ncelery_priority_steps: [0, 12]\n")
    result = run_tqmon("--config", str(config))
    assert result.value("task_queue_depth", priority="jobs") == 3, result.stderr
    args = ["--schema", "celery", "--redis-url", standalone.url, "--collectors", "queues"]
    assert run_tqmon(*args).value("task_queue_depth", priority="jobs") == 1  # sep detected
    result = run_tqmon(*args, "--celery-sep", ":", "--celery-priority-steps", "0,6,12")
    assert result.value("task_queue_depth", priority="jobs") == 3
    for bad in (["--celery-priority-steps", "1,x"], ["--celery-priority-steps", "300"],
                ["--celery-sep", ""]):
        result = run_tqmon(*args, *bad)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    config.write_text("celery_priority_steps: [true]\n")
    result = run_tqmon("--config", str(config), *args)
    assert result.returncode == 2 and "celery_priority_steps" in result.stderr


def test_celery_unreadable_pidbox_binding_is_said_and_deaths_still_count(tmp_path):
    """--interval with a user that may not run SMISMEMBER: the pidbox binding cannot be read,
    so a stop cannot be told from a death. Said on stderr, the silent worker counted dead (a
    death is never missed), the collector still up."""
    server = devcluster.start_standalone()
    client = server.client()
    client.execute_command("ACL", "SETUSER", "nobox", "on", ">pw", "~*", "&*", "+@all",
                           "-smismember")
    path, err = tmp_path / "celery.prom", (tmp_path / "stderr").open("w")
    proc = subprocess.Popen([*TQMON, "--schema", "celery", "--redis-url", server.url,
                             "--username", "nobox", "--read-only", "--collectors", "workers",
                             "--celery-heartbeat-interval", "0.5", "--interval", "0.5",
                             "--textfile", str(path)], stderr=err,
                            env={**os.environ, "TQMON_REDIS_PASSWORD": "pw"})
    try:
        deadline = time.monotonic() + 15
        while not (path.exists() and "fake@host" in path.read_text()):
            _publish(client, "/0.celeryev/worker.heartbeat", {
                "hostname": "fake@host", "type": "worker-heartbeat", "freq": 0.5})
            assert time.monotonic() < deadline, "fake@host never heard"
            time.sleep(0.1)
        wait_for(lambda: 'dead_workers_detected_total 1.0' in path.read_text(), 30,
                 "the silent worker counted dead")
        result = read_textfile(path)
        assert result.value("tqmon_collector_up", collector="workers") == 1
        assert _up(result, "fake@host") == 0
    finally:
        proc.terminate()
        proc.wait(10)
        err.close()
        server.stop()
    stderr = (tmp_path / "stderr").read_text()
    assert "celery: cannot read the pidbox binding _kombu.binding.celery.pidbox" in stderr
    assert "grant read access to it" in stderr and "Traceback" not in stderr
