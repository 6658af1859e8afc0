"""--schema rq against real `rq worker` processes running real jobs on a real redis-server."""

from __future__ import annotations

import signal
import sys
import time

import pytest
import redis
import rq_jobs
from adapter_helpers import (
    Process,
    check_signals,
    digest,
    poll_tqmon,
    started_processes,
    system_digest,
    wait_for,
)
from helpers import run_tqmon
from rq import Queue

RQ = [sys.executable, "-m", "rq.cli", "worker"]
TTL = 3  # --worker-ttl: a killed worker is dead ~4.3 s after its last heartbeat


@pytest.fixture
def processes():
    yield from started_processes()


def _start(url: str, name: str, *queues: str) -> Process:
    return Process([*RQ, "--url", url, "--name", name, "--worker-ttl", str(TTL),
                    "--job-monitoring-interval", "1", "--path", ".", *queues], url)


def _up(result, name: str) -> float:
    return result.value("worker_up", worker_id=name, worker_name=name)


def test_rq_workers_jobs_death_and_read_only(standalone, processes):
    url = standalone.url
    client = redis.Redis.from_url(url)
    processes += [_start(url, "w1", "work"), _start(url, "w2", "work"),
                  _start(url, "w3", "work", "other")]
    wait_for(lambda: client.scard("rq:workers") == 3, 30, "three registered workers")

    work, backlog = Queue("work", connection=client), Queue("backlog", connection=client)
    for i in range(6):
        work.enqueue(rq_jobs.add, i, 1)
    for _ in range(3):
        work.enqueue(rq_jobs.fail)
    for i in range(4):
        backlog.enqueue(rq_jobs.add, i, 2)  # no worker listens to backlog
    wait_for(lambda: work.finished_job_registry.count == 6 and work.failed_job_registry.count
             == 3, 30, "the jobs to finish")

    args = ["--schema", "rq", "--redis-url", url, "--collectors", "workers,queues"]
    result = poll_tqmon(args, lambda r: sum(r.values("worker_tasks_processed_total")) == 9,
                        10, "the workers' counters")
    assert sorted(s["worker_id"] for s in result.series("worker_up")) == ["w1", "w2", "w3"]
    assert all(_up(result, name) == 1 for name in ("w1", "w2", "w3"))
    assert sum(result.values("worker_tasks_failed_total")) == 3
    # named w1..w3 listening to `work`: one deployment, one pool; its counters kept by tqmon
    assert result.value("workers_alive", pool="w") == 3
    assert result.value("worker_pool_tasks_processed_total", pool="w") == 9
    assert result.value("worker_pool_tasks_failed_total", pool="w") == 3
    assert result.total("workers_alive") == 3 and result.total("workers_dead") == 0
    assert set(result.values("worker_current_status")) <= {0.0, 1.0}
    assert all(0 <= v < 60 for v in result.values("worker_uptime_seconds"))
    assert all(0 <= v <= TTL for v in result.values("worker_heartbeat_age_seconds"))
    assert {(s["worker_id"], s["priority"]) for s in result.series("worker_queue_info")} == {
        ("w1", "work"), ("w2", "work"), ("w3", "work"), ("w3", "other")}
    assert result.value("task_queue_depth", priority="backlog") == 4
    assert result.value("task_queue_depth", priority="work") == 0
    assert result.value("task_queue_registry_jobs", priority="work", registry="finished") == 6
    assert result.value("task_queue_registry_jobs", priority="work", registry="failed") == 3
    assert result.value("task_queue_orphaned", priority="work", group="rq") == 0
    assert result.value("tqmon_collector_up", collector="workers") == 1
    assert result.value("tqmon_collector_up", collector="queues") == 1
    assert sum(result.values("tqmon_skipped_entries")) == 0

    # SIGKILL w1 in the middle of a job: no deregistration, its hash lives on for TTL + 60 s
    work.enqueue(rq_jobs.sleep, 30)
    wait_for(lambda: work.started_job_registry.count == 1, 30, "the long job to start")
    busy = next(p for p, name in zip(processes, ("w1", "w2", "w3"), strict=True)
                if client.hget(f"rq:worker:{name}", "state") == b"busy")
    busy_name = ("w1", "w2", "w3")[processes.index(busy)]
    killed_at = time.monotonic()
    busy.signal(signal.SIGKILL)
    result = poll_tqmon(args, lambda r: _up(r, busy_name) == 0, 30, "the killed worker's death")
    # no run begun ttl (1 s job monitoring interval while busy) + allowance after it saw it up
    assert (result.last_miss_started or killed_at) - killed_at < 1 + 2.1
    assert all(_up(result, n) == 1 for n in ("w1", "w2", "w3") if n != busy_name)
    assert result.total("workers_dead") == 1 and result.total("workers_alive") == 2
    assert sum(result.values("worker_tasks_processed_total")) == 9  # the dead one's count stays
    assert result.value("worker_pool_tasks_processed_total", pool="w") == 9
    assert result.value("task_queue_registry_jobs", priority="work", registry="started") == 1
    assert client.sismember("rq:workers", f"rq:worker:{busy_name}")

    # A started job whose score has passed is abandoned. RQ gives a job up at least 60 s after
    # its worker's last heartbeat, too long to wait here: add an entry the way RQ 2+ scores
    # it (member job_id:execution_id, score = when to give up), already past.
    client.zadd("rq:wip:work", {"abandoned-job:execution": time.time() - 5})
    # Collecting writes none of RQ's keys, and with --read-only nothing at all: freeze the
    # workers (they would write), digest every key.
    for process in processes:
        process.signal(signal.SIGSTOP)
    before = system_digest(client)
    result = run_tqmon(*args)
    assert system_digest(client) == before
    everything = digest(client)
    assert run_tqmon(*args, "--read-only").value(
        "worker_pool_tasks_processed_total", pool="w") == 9  # read from tqmon's totals
    assert digest(client) == everything
    assert result.value("task_queue_orphaned", priority="work", group="rq") == 1
    assert result.value("task_queue_registry_jobs", priority="work", registry="started") == 2
    check_signals("rq", result)


def test_rq_bad_data_is_counted_not_fatal(standalone):
    """Hashes RQ would never write: missing, wrong type, garbage dates and counts."""
    client = standalone.client()
    client.sadd("rq:workers", "rq:worker:gone", "rq:worker:garbled", "rq:worker:string",
                "rq:worker:old", "not-a-worker-key")
    client.hset("rq:worker:garbled", mapping={
        "last_heartbeat": "yesterday", "birth": "2026-13-45", "successful_job_count": "many",
        "failed_job_count": "-1", "state": "dancing"})
    client.set("rq:worker:string", "x")
    # RQ 1.x-style dates without microseconds, hash without an expiry: the default TTL applies
    client.hset("rq:worker:old", mapping={
        "last_heartbeat": "2020-01-01T00:00:00Z", "birth": "2020-01-01T00:00:00Z",
        "successful_job_count": "5", "failed_job_count": "1", "state": "idle"})
    client.sadd("rq:queues", "rq:queue:q", "bogus")
    client.set("rq:queue:q", "not a list")
    before = system_digest(client)
    result = run_tqmon("--schema", "rq", "--redis-url", standalone.url)
    assert result.returncode == 0, result.stderr
    assert system_digest(client) == before
    for name in ("gone", "garbled", "string", "old"):
        assert _up(result, name) == 0
    assert result.value("worker_tasks_processed_total", worker_id="old", worker_name="old") == 6
    assert result.value("worker_heartbeat_age_seconds", worker_id="old", worker_name="old") > 1e8
    skipped = {s["reason"]: v for s, v in zip(result.series("tqmon_skipped_entries"),
               result.values("tqmon_skipped_entries"), strict=True)
               if s["collector"] == "workers"}
    assert skipped["missing_hash"] == 1 and skipped["wrong_type"] == 1
    assert skipped["bad_value"] >= 3
    assert result.value("tqmon_skipped_entries", collector="queues", reason="wrong_type") == 1
    assert result.value("tqmon_skipped_entries", collector="queues", reason="bad_value") == 1
    assert result.value("tqmon_collector_up", collector="workers") == 1


def test_schema_config_errors():
    for args, message in ((["--schema", "nosuch"], "schema must be one of"),
                          (["--schema", "rq", "--requeue-orphans"], "read-only")):
        result = run_tqmon(*args)
        assert result.returncode == 2
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
