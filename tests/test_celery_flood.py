"""A flood on Celery's event channel makes Redis drop tqmon's subscription (its pub/sub output
buffer limit): said on stderr, the window reported incomplete, the workers collector still up,
and no worker turned dead by it (issue 22)."""

from __future__ import annotations

import threading

from helpers import run_tqmon
from test_celery import _publish

CHANNEL = "/0.celeryev/worker.heartbeat"
ARGS = ("--schema", "celery", "--collectors", "workers", "--timeout", "2",
        "--celery-heartbeat-interval", "0.5")


def test_dropped_subscription_is_said_and_kills_nobody(standalone):
    client = standalone.client()
    stop, flood = threading.Event(), threading.Event()

    def publish() -> None:
        publisher = standalone.client()
        while not stop.is_set():
            _publish(publisher, CHANNEL, {"hostname": "good@h", "type": "worker-heartbeat",
                                          "freq": 0.5})
            if flood.is_set():
                publisher.publish(CHANNEL, b"x" * 100_000)
            stop.wait(0.1)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        first = run_tqmon(*ARGS, "--redis-url", standalone.url)
        assert first.value("worker_up", worker_id="good@h", worker_name="good@h") == 1
        assert first.stderr == ""
        # what a flood does to a subscriber: past the limit, Redis disconnects it
        client.config_set("client-output-buffer-limit", "pubsub 1kb 1kb 0")
        flood.set()
        flooded = run_tqmon(*ARGS, "--redis-url", standalone.url)
        assert flooded.returncode == 0
        assert flooded.value("tqmon_collector_up", collector="workers") == 1, flooded.stderr
        lines = flooded.stderr.splitlines()
        assert len(lines) == 1 and "dropped the event subscription" in lines[0], lines
        assert flooded.value("tqmon_skipped_entries", collector="workers",
                             reason="incomplete_window") == 1
        assert 0 not in flooded.values("worker_up")
        flood.clear()
        after = run_tqmon(*ARGS, "--redis-url", standalone.url)
        assert after.value("worker_up", worker_id="good@h", worker_name="good@h") == 1
        assert after.value("dead_workers_detected_total") == 0
    finally:
        stop.set()
        thread.join(5)
