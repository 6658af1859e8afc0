"""--schema dramatiq against real `dramatiq` worker processes on a real redis-server."""

from __future__ import annotations

import signal
import sys
import time

import pytest
import redis
from adapter_helpers import Process, check_signals, digest, poll_tqmon, started_processes, wait_for

DRAMATIQ = [sys.executable, "-m", "dramatiq", "dramatiq_app", "--processes", "1",
            "--threads", "1"]


@pytest.fixture
def processes():
    yield from started_processes()


def _start(url: str, *queues: str) -> Process:
    return Process([*DRAMATIQ, "--queues", *queues], url)


def test_dramatiq_workers_queues_death_and_read_only(standalone, processes, monkeypatch):
    url = standalone.url
    monkeypatch.setenv("TQMON_TEST_REDIS_URL", url)
    import dramatiq_app  # the producer: its broker reads the URL when imported

    client = redis.Redis.from_url(url)
    # Only the first worker serves "slow", so it is the one holding the slow messages.
    processes += [_start(url, "work", "slow"), _start(url, "work"), _start(url, "work")]
    wait_for(lambda: client.zcard("dramatiq:__heartbeats__") >= 3, 20, "three workers' beats")
    workers = {m.decode() for m in client.zrange("dramatiq:__heartbeats__", 0, -1)}

    for i in range(5):
        dramatiq_app.add.send(i, 1)
    for _ in range(2):
        dramatiq_app.fail.send()
    for _ in range(4):
        dramatiq_app.never_run.send()  # nobody serves "idle"
    dramatiq_app.add.send_with_options(args=(1, 2), delay=600_000)  # due in 10 minutes
    producer = dramatiq_app.broker.broker_id  # enqueueing beats too: Dramatiq's producers
    wait_for(lambda: client.zcard("dramatiq:work.XQ") == 2 and client.llen("dramatiq:work") == 0
             and client.hlen("dramatiq:work.msgs") == 0, 30, "the messages to be processed")

    args = ["--schema", "dramatiq", "--redis-url", url, "--collectors", "workers,queues",
            "--dramatiq-heartbeat-timeout", "2", "--dramatiq-queues", "work,slow,idle"]
    result = run_checked(args)
    up = _up(result)
    # the producer beat when it enqueued: alive until silent, then forgotten, never dead
    assert workers <= set(up) <= workers | {producer}
    assert all(v == 1 for v in up.values())
    assert result.value("task_queue_depth", priority="idle") == 4
    assert result.value("task_queue_depth", priority="work") == 0
    assert result.value("task_queue_registry_jobs", priority="work", registry="dead_letter") == 2
    assert result.value("task_queue_registry_jobs", priority="work", registry="delayed") == 1
    assert result.value("task_queue_orphaned", priority="slow", group="dramatiq") == 0
    assert all(0 <= v < 3 for w, v in zip(result.series("worker_heartbeat_age_seconds"),
               result.values("worker_heartbeat_age_seconds"), strict=True)
               if w["worker_id"] in workers)

    # A clean stop (SIGTERM, idle): its id stays in the heartbeats, silent, with no ack set
    # left (it gives back the delayed message it may have prefetched): forgotten, not dead.
    # SIGTERM to the CLI's main process, as Kubernetes or docker stop do: it forwards one to
    # its worker process. A second SIGTERM sent to the worker too (the whole session, or
    # systemd's KillMode=control-group) makes Dramatiq kill it without giving messages back.
    processes[2].terminate()
    assert processes[2].proc.wait(30) == 0  # 1: Dramatiq's "killed", not a clean stop
    result = poll_tqmon(args, lambda r: len(workers & _alive(r)) == 2
                        and producer not in _up(r), 30, "the stopped worker silent")
    (stopped,) = workers - _alive(result)
    assert client.zscore("dramatiq:__heartbeats__", stopped) is not None  # still there
    assert stopped not in _up(result)  # forgotten: no series at all
    assert result.total("workers_dead") == 0, "a clean stop counted as a death"
    assert 0.0 not in result.values("worker_up")
    workers -= {stopped}

    # Two slow messages: the slow worker runs one and has prefetched the other; kill it.
    dramatiq_app.hold.send(30)
    dramatiq_app.hold.send(30)
    wait_for(lambda: client.llen("dramatiq:slow") == 0, 30, "the slow worker to fetch both")
    holder = next(w for w in workers if client.scard(f"dramatiq:__acks__.{w}.slow"))
    killed_at = time.monotonic()
    processes[0].signal(signal.SIGKILL)
    result = poll_tqmon(args, lambda r: r.value("worker_up", worker_id=holder,
                                                worker_name=holder) == 0,
                        10, "the killed worker's death")
    # no run begun a timeout + the last beat's age after the kill saw it alive
    assert (result.last_miss_started or killed_at) - killed_at < 2 + 1
    assert all(result.value("worker_up", worker_id=w, worker_name=w) == 1
               for w in workers - {holder})
    assert result.value("task_queue_orphaned", priority="slow", group="dramatiq") == 2
    # broker ids are uuids: every worker is in the one pool of the queues watched
    assert [s["pool"] for s in result.series("workers_dead")] == ["work,slow,idle"]
    assert result.value("workers_dead", pool="work,slow,idle") == 1  # the holder alone
    assert _up(result) == {holder: 0.0, **{w: 1.0 for w in workers - {holder}}}
    # ...and the delayed message, if this worker is the one that prefetched it
    held = sum(client.scard(f"dramatiq:__acks__.{holder}.{q}") for q in ("work", "work.DQ"))
    assert result.value("task_queue_orphaned", priority="work", group="dramatiq") == held

    # Collecting writes nothing: freeze the live workers (they would write), digest every key.
    for process in processes[1:]:
        process.signal(signal.SIGSTOP)
    before = digest(client)
    check_signals("dramatiq", run_checked(args))
    assert digest(client) == before


def _up(result) -> dict[str, float]:
    return {s["worker_id"]: v for s, v in zip(result.series("worker_up"),
                                              result.values("worker_up"), strict=True)}


def _alive(result) -> set[str]:
    return {w for w, v in _up(result).items() if v == 1}


def run_checked(args: list[str]):
    from helpers import run_tqmon

    result = run_tqmon(*args)
    assert result.returncode == 0, result.stderr
    assert result.value("tqmon_collector_up", collector="workers") == 1
    assert result.value("tqmon_collector_up", collector="queues") == 1
    assert sum(result.values("tqmon_skipped_entries")) == 0
    return result
