"""The worker-side helper: API, asyncio variant, resilience to Redis failures."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis
import redis.asyncio
from helpers import run_tqmon
from tqmon.heartbeat import AsyncHeartbeat, Heartbeat

from devtools import devcluster


def test_context_manager_registers_and_deregisters(standalone):
    client = standalone.client()
    with Heartbeat(client, name="ctx", ttl=5, interval=1) as hb:
        assert client.zscore("{tq}:workers", hb.worker_id) is not None
        fields = client.hgetall(f"{{tq}}:worker:{hb.worker_id}")
        assert fields["name"] == "ctx" and fields["status"] == "idle"
        assert abs(float(fields["started_at"]) - float(client.time()[0])) < 2
        hb.task_started("job-1")
        assert client.hget(f"{{tq}}:worker:{hb.worker_id}", "current_task") == "job-1"
    assert client.zcard("{tq}:workers") == 0 and client.dbsize() == 0


def test_task_type_text_round_trips_into_labels(standalone):
    client = standalone.client()
    odd = 'pipe|"quote"\\back\nnew línea ✓'
    hb = Heartbeat(client, name="rt", worker_id="rt", ttl=5, interval=1)
    hb.beat()
    hb.task_finished(0.02, task_type=odd, priority="high")
    hb.task_finished(700, ok=False, task_type=odd, priority="high")
    result = run_tqmon("--redis-url", standalone.url, "--collectors", "workers")
    assert result.value("task_processing_latency_seconds_count", task_type=odd,
                        priority="high") == 2
    assert result.value("task_processing_latency_seconds_bucket", task_type=odd,
                        priority="high", le="0.025") == 1
    assert result.value("task_processing_latency_seconds_bucket", task_type=odd,
                        priority="high", le="600.0") == 1
    assert result.value("task_processing_latency_seconds_sum", task_type=odd,
                        priority="high") == pytest.approx(700.02)
    assert result.value("worker_tasks_failed_total", worker_id="rt") == 1


def test_async_heartbeat(standalone):
    async def scenario() -> tuple[dict, int]:
        client = redis.asyncio.Redis(port=standalone.port, decode_responses=True)
        async with AsyncHeartbeat(client, name="aio", ttl=2, interval=0.2) as hb:
            await hb.task_started()
            await hb.task_finished(0.5, ok=False, task_type="a", priority="low")
            await asyncio.sleep(0.5)  # the background beat runs meanwhile
            fields = await client.hgetall(f"{{tq}}:worker:{hb.worker_id}")
            beat = await client.zscore("{tq}:workers", hb.worker_id)
            now = await client.time()
        remaining = await client.zcard("{tq}:workers")
        await client.aclose()
        assert now[0] - beat < 0.5
        return fields, remaining

    fields, remaining = asyncio.run(scenario())
    assert fields["tasks_processed"] == "1" and fields["tasks_failed"] == "1"
    assert fields["status"] == "idle" and remaining == 0


def test_redis_errors_never_reach_the_worker(caplog):
    server = devcluster.start_standalone()
    try:
        client = redis.Redis(port=server.port, socket_timeout=1, socket_connect_timeout=1)
        hb = Heartbeat(client, name="tough", ttl=3, interval=0.2).start()
        hb.task_finished(0.1)
        server.kill()
        with caplog.at_level(logging.WARNING, logger="tqmon.heartbeat"):
            hb.task_started()  # Redis is gone: logged, not raised
            hb.task_finished(0.2, ok=False)
            time.sleep(0.5)  # background beats fail meanwhile, and keep trying
        assert any("tqmon heartbeat" in r.getMessage() for r in caplog.records)
        server.restart()  # same port, empty data: the next beat registers again
        devcluster.wait_for(lambda: server.client().zscore("{tq}:workers", hb.worker_id),
                            30, "re-registration")
        fields = server.client().hgetall(f"{{tq}}:worker:{hb.worker_id}")
        assert fields["tasks_processed"] == "2" and fields["tasks_failed"] == "1"
        hb.stop()
    finally:
        server.stop()


def test_interval_must_be_shorter_than_ttl(standalone):
    with pytest.raises(ValueError, match="interval < ttl"):
        Heartbeat(standalone.client(), name="x", ttl=5, interval=5)
    with pytest.raises(ValueError, match="prefix"):
        Heartbeat(standalone.client(), name="x", prefix="a{b}")


def test_cluster_client_errors_never_reach_the_worker(caplog):
    """A RedisCluster client raises RedisClusterException, not a RedisError, when no node
    answers: the helper must swallow that too."""
    cluster = devcluster.start_cluster()
    try:
        client = redis.RedisCluster(host="127.0.0.1", port=cluster.servers[0].port,
                                    socket_timeout=1, socket_connect_timeout=1)
        hb = Heartbeat(client, name="clustered", ttl=3, interval=0.2).start()
        hb.task_finished(0.1)
    finally:
        cluster.stop()
    with caplog.at_level(logging.WARNING, logger="tqmon.heartbeat"):
        hb.task_started()
        hb.task_finished(0.2, ok=False)
        time.sleep(0.6)
        hb.stop()
    assert any("tqmon heartbeat" in r.getMessage() for r in caplog.records)
