"""--schema arq against a real `arq` worker (from build/arq-venv) on a real redis-server."""

from __future__ import annotations

import signal
import subprocess
import time

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

from devtools import sidevenv

QUEUES = "arq:queue,arq:backlog"


@pytest.fixture(scope="module")
def arq_python() -> str:
    return str(sidevenv.arq_python())


@pytest.fixture
def processes():
    yield from started_processes()


def _args(url: str) -> list[str]:
    return ["--schema", "arq", "--redis-url", url, "--collectors", "workers,queues",
            "--arq-queues", QUEUES, "--arq-health-check-interval", "1"]


def test_arq_queue_in_progress_deferred_health_and_read_only(standalone, processes,
                                                             arq_python):
    url = standalone.url
    client = redis.Redis.from_url(url)
    enqueued_at = time.time()
    subprocess.run([arq_python, "arq_app.py", "enqueue"], cwd=TESTS, check=True, timeout=60,
                   env={"TQMON_TEST_REDIS_URL": url, "PATH": "/usr/bin:/bin"})
    processes.append(Process([arq_python, "-m", "arq", "arq_app.WorkerSettings"], url))
    wait_for(lambda: b"j_complete=3 j_failed=1 " in (client.get("arq:queue:health-check")
                                                     or b""), 30, "the jobs to run")

    def settled(r) -> bool:
        return r.value("task_queue_pending", priority="arq:queue", group="arq") == 1

    result = first = poll_tqmon(_args(url), settled, 30, "the long job in progress")
    assert result.value("task_queue_depth", priority="arq:queue") == 0
    assert result.value("task_queue_registry_jobs", priority="arq:queue",
                        registry="deferred") == 1
    assert result.value("task_queue_oldest_waiting_age_seconds", priority="arq:queue",
                        group="arq") == 0
    assert result.value("task_queue_depth", priority="arq:backlog") == 4
    assert result.value("task_queue_pending", priority="arq:backlog", group="arq") == 0
    waited = result.value("task_queue_oldest_waiting_age_seconds", priority="arq:backlog",
                          group="arq")
    assert 0 < waited <= time.time() - enqueued_at + 1
    worker = {"worker_id": "arq:queue", "worker_name": "arq:queue"}
    assert result.value("worker_up", **worker) == 1
    assert result.value("worker_tasks_processed_total", **worker) == 4
    assert result.value("worker_tasks_failed_total", **worker) == 1
    assert result.value("worker_current_status", **worker) == 1  # the long job
    assert 0 <= result.value("worker_heartbeat_age_seconds", **worker) <= 2
    assert result.value("worker_up", worker_id="arq:backlog", worker_name="arq:backlog") == 0
    assert result.total("workers_alive") == 1 and result.total("workers_dead") == 1
    assert sum(result.values("tqmon_skipped_entries")) == 0
    # pool counters kept by tqmon (one worker: its counts); the running age of the long job,
    # from its in-progress key's life (arq's default job_timeout, 300 s, + 10 s)
    assert result.value("worker_pool_tasks_processed_total", pool="arq:queue") == 4
    assert result.value("worker_pool_tasks_failed_total", pool="arq:queue") == 1
    started = client.pttl("arq:in-progress:" + client.zrange("arq:queue", 0, 0)[0].decode())
    running = {"priority": "arq:queue", "group": "arq"}
    result = poll_tqmon(_args(url), lambda r: r.value(
        "task_queue_oldest_pending_idle_seconds", **running) >= 1.0, 30, "the running age")
    assert result.value("task_queue_oldest_pending_idle_seconds", **running) <= (
        time.time() - enqueued_at + 1)
    assert 0 < started <= 310_000
    assert result.value("task_queue_oldest_pending_idle_seconds", priority="arq:backlog",
                        group="arq") == 0

    # SIGKILL: the health check (1 s interval, 2 s expiry) lapses; the job's in-progress key
    # lives on until the job timeout (300 s + 10 s), so arq, and tqmon, still count it running
    killed_at = time.monotonic()
    processes[0].signal(signal.SIGKILL)
    result = poll_tqmon(_args(url), lambda r: r.value("worker_up", **worker) == 0, 10,
                        "the health check to lapse")
    # no run begun 2 s (+ 1 s: the check's interval) after the kill saw it alive
    assert (result.last_miss_started or killed_at) - killed_at < 2 + 1
    assert result.value("task_queue_pending", priority="arq:queue", group="arq") == 1

    # Collecting writes nothing (the worker is dead: nothing else writes either)
    before = digest(client)
    result = run_tqmon(*_args(url))
    assert result.returncode == 0 and digest(client) == before
    assert result.value("tqmon_collector_up", collector="queues") == 1
    check_signals("arq", first, result)


def test_arq_bad_data_is_counted_not_fatal(standalone):
    """Keys arq would never write: the queue as a string, a garbled health check."""
    client = standalone.client()
    client.set("arq:broken", "x")
    client.set("arq:queue:health-check", "yesterday, all fine")
    result = run_tqmon("--schema", "arq", "--redis-url", standalone.url,
                       "--arq-queues", "arq:queue,arq:broken")
    assert result.returncode == 0, result.stderr
    assert result.value("worker_up", worker_id="arq:queue", worker_name="arq:queue") == 1
    assert result.value("tqmon_skipped_entries", collector="workers", reason="bad_value") == 1
    assert result.value("tqmon_skipped_entries", collector="queues", reason="wrong_type") == 1
    assert result.value("task_queue_depth", priority="arq:queue") == 0
    assert result.value("tqmon_collector_up", collector="queues") == 1


def test_arq_and_celery_config_errors():
    for args, message in ((["--schema", "arq", "--arq-queues", ""], "at least one queue"),
                          (["--schema", "celery", "--requeue-orphans"], "read-only"),
                          (["--schema", "celery", "--celery-visibility-timeout", "0"],
                           "positive")):
        result = run_tqmon(*args)
        assert result.returncode == 2
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
