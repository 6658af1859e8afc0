"""Data other programs write cannot take a collector down (issue 22): one deeply nested JSON
value in each place an adapter parses one (a Celery event, a kombu `unacked` value, a queued
Celery message, a Sidekiq process `info`, a work-hash entry, a queued Sidekiq job) is a bad
value, counted in tqmon_skipped_entries, and everything else is still reported. arq's separate
reads never make a count negative while jobs come and go."""

from __future__ import annotations

import base64
import json
import threading
import time

from helpers import run_in_process, run_tqmon
from prometheus_client.parser import text_string_to_metric_families

from devtools import devcluster

BOMB = "[" * 50_000 + "]" * 50_000  # far past Python's recursion limit: a RecursionError


def _skipped(result, collector: str) -> float:
    return sum(v for s, v in zip(result.series("tqmon_skipped_entries"),
                                 result.values("tqmon_skipped_entries"), strict=True)
               if s["collector"] == collector and s["reason"] == "bad_value")


def _envelope(event: dict | str) -> str:
    body = event if isinstance(event, str) else json.dumps(event)
    return json.dumps({
        "body": base64.b64encode(body.encode()).decode(), "content-encoding": "utf-8",
        "content-type": "application/json", "headers": {},
        "properties": {"body_encoding": "base64", "delivery_info": {}}})


def test_celery_json_bombs_are_bad_values():
    server = devcluster.start_standalone()
    client = server.client()
    try:
        client.sadd("_kombu.binding.jobs", "jobs\x06\x16\x06\x16jobs")
        client.rpush("jobs", BOMB)  # a waiting message (its eta header is read)
        client.hset("unacked", mapping={"t1": BOMB, "t2": '[{}, "jobs", "jobs"]'})
        client.zadd("unacked_index", {"t1": time.time() - 5, "t2": time.time() - 5})
        stop = threading.Event()

        def publish() -> None:
            while not stop.is_set():
                channel = "/0.celeryev/worker.heartbeat"
                client.publish(channel, _envelope({"hostname": "good@h", "type":
                                                   "worker-heartbeat", "freq": 0.5}))
                client.publish(channel, _envelope(BOMB))  # the event inside the envelope
                client.publish(channel, BOMB)  # the envelope itself
                stop.wait(0.1)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        try:
            result = run_tqmon("--schema", "celery", "--redis-url", server.url, "--read-only",
                               "--timeout", "2", "--celery-heartbeat-interval", "0.5")
        finally:
            stop.set()
            publisher.join(5)
        assert result.returncode == 0, result.stderr
        assert result.value("tqmon_collector_up", collector="workers") == 1, result.stderr
        assert result.value("tqmon_collector_up", collector="queues") == 1, result.stderr
        assert result.value("worker_up", worker_id="good@h", worker_name="good@h") == 1
        assert _skipped(result, "workers") >= 2
        assert result.value("task_queue_depth", priority="jobs") == 1
        assert result.value("task_queue_pending", priority="jobs", group="celery") == 1
        assert _skipped(result, "queues") >= 1
    finally:
        server.stop()


def test_sidekiq_json_bombs_are_bad_values():
    server = devcluster.start_standalone()
    client = server.client()
    try:
        now = client.time()[0]
        info = json.dumps({"hostname": "h", "started_at": now - 10, "queues": ["q"]})
        client.sadd("processes", "good:1:aa", "bomb:2:bb", "dead:3:cc")
        client.hset("good:1:aa", mapping={"beat": now, "busy": 0, "info": info})
        client.hset("bomb:2:bb", mapping={"beat": now, "busy": 0, "info": BOMB})
        client.hset("dead:3:cc", mapping={"beat": now - 600, "busy": 1, "info": info})
        client.hset("dead:3:cc:work", mapping={"t1": BOMB, "t2": json.dumps(
            {"queue": "q", "payload": "{}", "run_at": 1})})
        client.sadd("queues", "q", "ok")
        client.rpush("queue:q", BOMB)
        client.rpush("queue:ok", json.dumps({"class": "X", "enqueued_at": now - 5}))
        result = run_tqmon("--schema", "sidekiq", "--redis-url", server.url, "--read-only")
        assert result.returncode == 0, result.stderr
        assert result.value("tqmon_collector_up", collector="workers") == 1, result.stderr
        assert result.value("tqmon_collector_up", collector="queues") == 1, result.stderr
        up = {s["worker_id"]: v for s, v in zip(result.series("worker_up"),
                                                result.values("worker_up"), strict=True)}
        assert up == {"good:1:aa": 1, "bomb:2:bb": 1, "dead:3:cc": 0}
        assert _skipped(result, "workers") == 1  # the info
        assert result.value("task_queue_orphaned", priority="q", group="sidekiq") == 1
        assert result.value("task_queue_depth", priority="q") == 1
        assert 4 <= result.value("task_queue_oldest_waiting_age_seconds", priority="ok",
                                 group="sidekiq") < 30
        assert _skipped(result, "queues") == 2  # the queued job, the work-hash entry
    finally:
        server.stop()


def test_arq_counts_never_negative_while_jobs_come_and_go():
    """A writer enqueues and takes jobs as fast as it can while tqmon reads: ZCARD, ZCOUNT and
    ZRANGE are separate reads, and a difference between them must not go below 0."""
    server = devcluster.start_standalone()
    stop = threading.Event()

    def churn() -> None:
        writer = server.client()
        n = 0
        while not stop.is_set():
            batch = {f"j{n}-{i}": 1000 + i for i in range(300)}
            writer.zadd("arq:queue", batch)
            writer.zrem("arq:queue", *batch)
            n += 1

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        lowest: dict[str, float] = {}
        for _ in range(40):
            text = run_in_process("--schema", "arq", "--redis-url", server.url,
                                  "--collectors", "queues")
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name in ("task_queue_depth", "task_queue_registry_jobs",
                                       "tqmon_skipped_entries"):
                        lowest[sample.name] = min(lowest.get(sample.name, 0), sample.value)
        assert all(v >= 0 for v in lowest.values()), lowest
    finally:
        stop.set()
        worker.join(5)
        server.stop()


def test_bullmq_job_data_is_never_parsed():
    """BullMQ: tqmon reads a waiting job's `timestamp` and `delay` only, never its `data` or
    `opts` (JSON): a bomb there changes nothing (a guard: it held before issue 22 too)."""
    server = devcluster.start_standalone()
    client = server.client()
    try:
        now_ms = client.time()[0] * 1000
        client.rpush("bull:q:wait", "1")
        client.hset("bull:q:1", mapping={"data": BOMB, "opts": BOMB, "name": "x",
                                         "timestamp": now_ms - 5000, "delay": 0})
        result = run_tqmon("--schema", "bullmq", "--redis-url", server.url, "--bullmq-queues",
                           "q", "--collectors", "queues")
        assert result.value("tqmon_collector_up", collector="queues") == 1, result.stderr
        assert result.value("task_queue_depth", priority="q") == 1
    finally:
        server.stop()
