"""Big fleets: per-worker series capped (dead first, the same workers every run), pools always
reported with task counters that never fall, and only the chosen workers' hashes read."""

from __future__ import annotations

import pytest
from bench import command_stats
from helpers import run_tqmon
from redis import Redis
from tqmon.heartbeat import Heartbeat

TTL = "30"


@pytest.fixture
def client(standalone):
    client = Redis.from_url(standalone.url)
    yield client
    client.flushall()
    client.close()


def _fleet(client: Redis, pools: dict[str, int]) -> list[Heartbeat]:
    """Registered workers (no background threads: they beat when told)."""
    fleet = []
    for pool, size in pools.items():
        for n in range(size):
            beat = Heartbeat(client, name=f"{pool}_{n}", worker_id=f"{pool}-{n:03d}")
            beat._call("register", *beat._register_args())
            fleet.append(beat)
    return fleet


def _kill(client: Redis, worker_ids: list[str]) -> None:
    """Their last beat long ago, in the registry and their pool's (as a worker that stopped
    beating leaves them): dead for the collector."""
    for worker_id in worker_ids:
        pool = worker_id.rsplit("-", 1)[0]
        client.zadd("{tq}:workers", {worker_id: 1.0})
        client.zadd(f"{{tq}}:pool:{pool}:workers", {worker_id: 1.0})


def _run(url: str, *args: str):
    result = run_tqmon("--redis-url", url, "--heartbeat-ttl", TTL, "--collectors", "workers",
                       *args)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result


def _reported(result) -> set[str]:
    return {s["worker_id"] for s in result.series("worker_up")}


def test_the_cap_keeps_dead_workers_first_and_the_same_ones_every_run(standalone, client):
    _fleet(client, {"billing": 8, "reports": 4})
    dead = ["billing-001", "billing-005", "reports-002"]
    _kill(client, dead)
    first = _run(standalone.url, "--max-worker-series", "5")
    chosen = _reported(first)
    assert len(chosen) == 5 and set(dead) <= chosen
    assert first.value("tqmon_worker_series_omitted") == 7
    for metric in ("worker_heartbeat_age_seconds", "worker_info", "worker_tasks_processed_total"):
        assert {s["worker_id"] for s in first.series(metric)} == chosen, metric
    # pools count every worker, whatever the cap
    assert first.value("workers_alive", pool="billing") == 6
    assert first.value("workers_dead", pool="billing") == 2
    assert first.value("workers_alive", pool="reports") == 3
    assert first.value("workers_dead", pool="reports") == 1
    for _ in range(3):  # run after run, agent after agent: the same workers
        assert _reported(_run(standalone.url, "--max-worker-series", "5")) == chosen


def test_more_dead_workers_than_the_cap_and_the_cap_values(standalone, client):
    _fleet(client, {"w": 10})
    _kill(client, [f"w-{n:03d}" for n in range(6)])
    capped = _run(standalone.url, "--max-worker-series", "4")
    assert len(_reported(capped)) == 4
    assert all(s.value == 0 for s in capped.samples if s.name == "worker_up")
    none = _run(standalone.url, "--max-worker-series", "0")
    assert none.series("worker_up") == [] and none.value("tqmon_worker_series_omitted") == 10
    assert none.value("workers_dead", pool="w") == 6
    everyone = _run(standalone.url, "--max-worker-series", "all")
    assert len(_reported(everyone)) == 10 and everyone.value("tqmon_worker_series_omitted") == 0


def test_only_the_chosen_workers_hashes_are_read(standalone, client):
    _fleet(client, {"big": 3000})
    before = command_stats(standalone)
    result = _run(standalone.url, "--max-worker-series", "10")
    calls = command_stats(standalone) - before
    assert len(_reported(result)) == 10 and result.value("workers_alive", pool="big") == 3000
    assert calls["hmget"] == 10 + 1  # one per chosen worker, and the stats hash
    assert calls["hget"] == 1  # the detection cursor: no name read, every pool is recorded


def test_pools_of_workers_that_recorded_none(standalone, client):
    """Workers of a helper before pools: their pool comes from their name, read only for them;
    --worker-pool-pattern picks another part of it."""
    for n in range(4):
        client.hset(f"{{tq}}:worker:old-{n}", mapping={"name": f"eu.scraper.{n}",
                                                       "status": "idle"})
        client.zadd("{tq}:workers", {f"old-{n}": float(client.time()[0])})
    _fleet(client, {"billing": 2})
    capped = _run(standalone.url, "--max-worker-series", "1")
    assert capped.value("workers_alive", pool="eu.scraper") == 4
    assert capped.value("workers_alive", pool="billing") == 2
    every = _run(standalone.url, "--max-worker-series", "all")
    assert every.value("workers_alive", pool="eu.scraper") == 4
    region = _run(standalone.url, "--max-worker-series", "1",
                  "--worker-pool-pattern", r"^(\w+)\.")
    assert region.value("workers_alive", pool="eu") == 4
    assert region.value("workers_alive", pool="billing") == 2  # recorded by the worker


def test_pool_counters_never_fall_when_workers_come_and_go(standalone, client):
    first = Heartbeat(client, name="billing_1", pool="billing")
    first.start()
    for n in range(5):
        first.task_started(f"t{n}")
        first.task_finished(0.1, ok=n != 2)
    before = _run(standalone.url)
    assert before.value("worker_pool_tasks_processed_total", pool="billing") == 5
    assert before.value("worker_pool_tasks_failed_total", pool="billing") == 1
    assert before.value("worker_pool_busy", pool="billing") == 0
    first.stop()  # its own counters go with it; the pool's stay
    second = Heartbeat(client, name="payments-7", pool="billing")
    second.start()
    second.task_finished(0.1)
    second.task_started("long")
    after = _run(standalone.url)
    assert after.value("worker_pool_tasks_processed_total", pool="billing") == 6
    assert after.value("worker_pool_tasks_failed_total", pool="billing") == 1
    assert after.value("worker_pool_busy", pool="billing") == 1
    assert after.value("workers_alive", pool="billing") == 1
    second.stop()


def test_other_schemas_are_capped_and_pooled_too(standalone, client):
    """Dramatiq reports every worker; the same cap and pools apply."""
    now_ms = int(client.time()[0]) * 1000
    client.zadd("dramatiq:__heartbeats__", {f"dq-{n}": now_ms for n in range(7)}
                | {f"dq-{n}": now_ms - 3_600_000 for n in range(7, 9)})
    for n in (7, 8):  # silent while holding a message: dead (without it, a clean stop)
        client.sadd(f"dramatiq:__acks__.dq-{n}.default", f"message-{n}")
    result = _run(standalone.url, "--schema", "dramatiq", "--max-worker-series", "3")
    assert len(_reported(result)) == 3 and {"dq-7", "dq-8"} <= _reported(result)
    assert result.value("tqmon_worker_series_omitted") == 6
    assert result.value("workers_alive", pool="dq") == 7
    assert result.value("workers_dead", pool="dq") == 2
