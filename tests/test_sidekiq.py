"""--schema sidekiq against real Sidekiq processes (Debian's ruby-sidekiq 6.4) on a real
redis-server: jobs that finish, fail, wait and sleep; a process SIGKILLed while it runs one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from adapter_helpers import (
    TESTS,
    Process,
    check_signals,
    digest,
    poll_tqmon,
    started_processes,
    wait_for,
)
from helpers import run_tqmon
from tqmon import pools

pytestmark = pytest.mark.skipif(not shutil.which("sidekiq"),
                                reason="needs Debian's ruby-sidekiq (.ci/system-deps)")
APP = str(TESTS / "sidekiq_app.rb")
TIMEOUT = "3"  # --sidekiq-heartbeat-timeout: sidekiq_app.rb makes Sidekiq beat every second


@pytest.fixture
def processes():
    yield from started_processes()


def _sidekiq(url: str, concurrency: int, *queues: str) -> Process:
    command = ["sidekiq", "-r", APP, "-c", str(concurrency)]
    for queue in queues:
        command += ["-q", queue]
    return Process(command, url, env={"REDIS_URL": url})


def _enqueue(url: str, job: str, queue: str, count: int, *args: str) -> None:
    """Through Sidekiq's own client (sidekiq_app.rb), as an application would."""
    subprocess.run(["ruby", APP, job, queue, str(count), *args], check=True, timeout=30,
                   env={**os.environ, "REDIS_URL": url}, capture_output=True)


def _identity(client: redis.Redis, pid: int) -> bytes:
    return next(i for i in client.smembers("processes") if i.split(b":")[1] == str(pid).encode())


def _theirs(client: redis.Redis) -> dict:
    """The digest of Sidekiq's keys (tqmon's own `{tq}:` ones left out)."""
    return {k: v for k, v in digest(client).items() if not k.startswith(b"{tq}:")}


def test_sidekiq_processes_queues_death_and_orphans(standalone, processes):
    url = standalone.url
    client = redis.Redis.from_url(url)
    processes += [_sidekiq(url, 2, "default", "slow"), _sidekiq(url, 3, "default", "other")]
    wait_for(lambda: client.scard("processes") == 2, 20, "two Sidekiq processes")
    _enqueue(url, "AddJob", "default", 5)
    _enqueue(url, "FailJob", "default", 2)
    _enqueue(url, "AddJob", "backlog", 4)  # no process listens to it
    _enqueue(url, "AddJob", "default", 1, "0", "3600")  # scheduled in an hour

    args = ["--schema", "sidekiq", "--redis-url", url, "--collectors", "workers,queues",
            "--sidekiq-heartbeat-timeout", TIMEOUT]
    result = first = poll_tqmon(
        args, lambda r: r.values("worker_pool_tasks_processed_total", pool="sidekiq") == [7.0],
        30, "the fleet's counters")
    assert result.value("worker_pool_tasks_failed_total", pool="sidekiq") == 2
    assert result.values("worker_tasks_processed_total") == []  # counted per fleet only
    # two processes of one host (one deployment): one pool, whatever their pids and nonces
    host = socket.gethostname()
    assert result.value("workers_alive", pool=pools.deployment(host)) == 2
    assert result.total("workers_alive") == 2
    ids = [_identity(client, p.proc.pid).decode() for p in processes]
    for identity, threads in zip(ids, (2, 3), strict=True):
        labels = {"worker_id": identity, "worker_name": identity}
        assert result.value("worker_up", **labels) == 1
        assert result.value("worker_concurrency", **labels) == threads
        assert result.value("worker_quiet", **labels) == 0
        assert result.value("worker_jobs_running", **labels) == 0
        assert 0 <= result.value("worker_uptime_seconds", **labels) < 60
        assert 0 <= result.value("worker_heartbeat_age_seconds", **labels) <= 2
    assert {(s["worker_id"], s["priority"]) for s in result.series("worker_queue_info")} == {
        (ids[0], "default"), (ids[0], "slow"), (ids[1], "default"), (ids[1], "other")}
    assert result.total("workers_alive") == 2 and result.total("workers_dead") == 0
    assert result.value("task_queue_depth", priority="backlog") == 4
    assert result.value("task_queue_lag", priority="backlog", group="sidekiq") == 4
    assert result.value("task_queue_depth", priority="default") == 0
    oldest = json.loads(client.lindex("queue:backlog", -1))["enqueued_at"]
    age = result.value("task_queue_oldest_waiting_age_seconds", priority="backlog",
                       group="sidekiq")
    assert age > 0 and abs(age - (time.time() - oldest)) < 3
    assert result.value("task_queue_oldest_waiting_age_seconds", priority="default",
                        group="sidekiq") == 0
    for registry, count in (("scheduled", 1), ("retry", 0), ("dead", 2)):
        assert result.value("task_queue_registry_jobs", priority="",
                            registry=registry) == count
    assert result.value("task_queue_orphaned", priority="default", group="sidekiq") == 0
    assert result.value("dead_workers_detected_total") == 0
    assert sum(result.values("tqmon_skipped_entries")) == 0

    # a job that sleeps on the first process, which is then SIGKILLed: nothing cleans up
    _enqueue(url, "SleepJob", "slow", 1, "60")
    busy = {"worker_id": ids[0], "worker_name": ids[0]}
    poll_tqmon(args, lambda r: r.values("worker_jobs_running", **busy) == [1.0], 30,
               "the sleeping job")
    processes[0].signal(signal.SIGKILL)
    result = poll_tqmon(args, lambda r: r.values("worker_up", **busy) == [0.0], 30,
                        "the killed process's death")
    assert result.value("worker_up", worker_id=ids[1], worker_name=ids[1]) == 1
    assert result.total("workers_dead") == 1 and result.total("workers_alive") == 1
    assert result.value("task_queue_orphaned", priority="slow", group="sidekiq") == 1
    assert result.value("dead_workers_detected_total") == 1
    assert client.sismember("processes", ids[0])  # Sidekiq's UI would prune it; tqmon does not

    # N collectors at once count the death once
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run_tqmon(*args), range(4)))
    assert {r.value("dead_workers_detected_total") for r in results} == {1.0}

    # a collection that records a death writes none of Sidekiq's keys: the live process,
    # frozen so that it writes nothing either, is dead once its last beat is TIMEOUT old (how
    # soon a loaded machine runs tqmon after the SIGSTOP decides nothing)
    frozen = {"worker_id": ids[1], "worker_name": ids[1]}
    processes[1].signal(signal.SIGSTOP)
    poll_tqmon([*args, "--read-only"], lambda r: r.values("worker_up", **frozen) == [0.0], 30,
               "the frozen process's beat to time out")
    before = _theirs(client)
    result = run_tqmon(*args)
    assert _theirs(client) == before
    assert result.value("dead_workers_detected_total") == 2
    # --read-only writes nothing at all, tqmon's keys included
    everything = digest(client)
    run_tqmon(*args, "--read-only")
    assert digest(client) == everything
    # beating again, it is alive and its death forgotten (the counter keeps it: never falls)
    processes[1].signal(signal.SIGCONT)
    result = poll_tqmon(args, lambda r: r.values("worker_up", **frozen) == [1.0], 30,
                        "the thawed process's beat")
    assert result.total("workers_dead") == 1 and result.value("dead_workers_detected_total") == 2
    assert client.zscore("{tq}:sidekiq:dead", ids[1]) is None
    # a clean stop deregisters (no death), and leaves no live Sidekiq to prune members
    processes[1].terminate()
    processes[1].proc.wait(30)

    # Sidekiq's hashes expire 60 s after the last beat; the orphan page outlives them
    client.delete(ids[0], f"{ids[0]}:workers")  # what the expiry does, without the wait
    result = run_tqmon(*args)
    assert result.value("task_queue_orphaned", priority="slow", group="sidekiq") == 1
    assert result.value("worker_up", **busy) == 0
    assert result.values("worker_up", worker_id=ids[1], worker_name=ids[1]) == []
    assert result.total("workers_dead") == 1 and result.total("workers_alive") == 0
    assert result.value("tqmon_skipped_entries", collector="workers",
                        reason="missing_hash") == 1
    # a live Sidekiq's poller prunes the member: tqmon still reports the death it recorded
    client.srem("processes", ids[0])  # what the prune does, without the wait
    result = run_tqmon(*args)
    assert result.value("worker_up", **busy) == 0 and result.total("workers_dead") == 1
    assert result.value("task_queue_orphaned", priority="slow", group="sidekiq") == 1
    # a short retention forgets it
    result = run_tqmon(*args, "--dead-retention", "0.001")
    result = run_tqmon(*args, "--dead-retention", "0.001")
    assert result.value("task_queue_orphaned", priority="slow", group="sidekiq") == 0
    assert result.value("dead_workers_detected_total") == 2
    assert result.values("worker_up", **busy) == [] and result.total("workers_dead") == 0
    check_signals("sidekiq", first, result)


def test_sidekiq_7_and_8_layouts_and_bad_data(standalone):
    """Layouts the Debian package cannot run: Sidekiq 7's `:work` hash and `concurrency` field,
    Sidekiq 8's millisecond `enqueued_at`; and values Sidekiq would never write."""
    client = standalone.client()
    now = client.time()[0]
    info = {"hostname": "h7", "started_at": now - 100, "pid": 7, "queues": ["q"], "tag": ""}
    client.sadd("processes", "h7:7:aa", "h6:6:bb", "garbled:1:cc", "gone:1:dd")
    client.hset("h7:7:aa", mapping={"beat": now, "busy": 2, "quiet": "true", "concurrency": 5,
                                    "info": json.dumps(info)})
    client.hset("h6:6:bb", mapping={"beat": now - 600, "busy": 1, "info": "{}"})
    client.hset("h6:6:bb:work", "tid", json.dumps({"queue": "q", "payload": "{}", "run_at": 1}))
    # Sidekiq 8: the busy 7+ process runs a job started 40 s ago, `run_at` in milliseconds
    client.hset("h7:7:aa:work", "t1", json.dumps({"queue": "q", "payload": "{}",
                                                  "run_at": (now - 40) * 1000}))
    client.hset("garbled:1:cc", mapping={"beat": "yesterday", "info": "not json"})
    client.sadd("queues", "q", "ms", "broken")
    client.lpush("queue:ms", json.dumps({"class": "X", "enqueued_at": (now - 50) * 1000}))
    client.lpush("queue:broken", "not json")
    client.set("stat:processed", "many")
    before = digest(client)
    args = ["--schema", "sidekiq", "--redis-url", standalone.url, "--read-only"]
    result = run_tqmon(*args)
    assert result.returncode == 0 and digest(client) == before
    up = {s["worker_id"]: v for s, v in zip(result.series("worker_up"),
                                            result.values("worker_up"), strict=True)}
    assert up == {"h7:7:aa": 1, "h6:6:bb": 0, "garbled:1:cc": 0, "gone:1:dd": 0}
    seven = {"worker_id": "h7:7:aa", "worker_name": "h7:7:aa"}
    assert result.value("worker_concurrency", **seven) == 5
    assert result.value("worker_jobs_running", **seven) == 2
    assert result.value("worker_quiet", **seven) == 1
    assert 99 <= result.value("worker_uptime_seconds", **seven) < 110
    assert result.value("task_queue_orphaned", priority="q", group="sidekiq") == 1
    assert 39 <= result.value("task_queue_oldest_pending_idle_seconds", priority="q",
                              group="sidekiq") < 50  # the running age, from its work hash
    assert 49 <= result.value("task_queue_oldest_waiting_age_seconds", priority="ms",
                              group="sidekiq") < 60
    assert result.value("tqmon_skipped_entries", collector="queues", reason="bad_value") == 1
    assert result.value("tqmon_skipped_entries", collector="workers", reason="bad_value") >= 2
    assert result.value("tqmon_collector_up", collector="workers") == 1
    assert result.value("tqmon_collector_up", collector="queues") == 1

    # a user who may not run scripts: deaths are reported, not recorded, and nothing fails
    client.execute_command("ACL", "SETUSER", "mon", "on", ">pw-7", "~*", "+@read",
                           "+@connection", "+info", "+time", "-eval")
    result = run_tqmon("--schema", "sidekiq", "--redis-url", standalone.url, "--username",
                       "mon", env={"TQMON_REDIS_PASSWORD": "pw-7"}, secret="pw-7")
    assert result.returncode == 0 and digest(client) == before
    assert "Sidekiq deaths not recorded" in result.stderr
    assert result.value("tqmon_collector_up", collector="workers") == 1
    assert result.total("workers_dead") == 3


def test_adapter_config():
    """Sidekiq may write tqmon's own keys (unless --read-only), BullMQ never writes; neither
    moves jobs."""
    from tqmon import config

    assert not config.load(["--schema", "sidekiq"], {}).read_only
    assert config.load(["--schema", "sidekiq", "--read-only"], {}).read_only
    bull = config.load(["--schema", "bullmq", "--bullmq-queues", "a, b,a",
                        "--bullmq-prefix", "{bull}"], {})
    assert bull.read_only and bull.bullmq_queues == ("a", "b") and bull.bullmq_prefix == "{bull}"
    assert config.load(["--schema", "sidekiq"], {}).sidekiq_heartbeat_timeout == 30
    for args, message in ((["--schema", "sidekiq", "--requeue-orphans"], "read-only"),
                          (["--schema", "bullmq", "--requeue-orphans"], "read-only"),
                          (["--schema", "bullmq", "--bullmq-prefix", ""], "must not be empty"),
                          (["--sidekiq-heartbeat-timeout", "0"], "positive")):
        with pytest.raises(config.ConfigError, match=message):
            config.load(args, {})
