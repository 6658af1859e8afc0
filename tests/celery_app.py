"""Tasks the real `celery worker` processes of tests/test_celery.py run.

The broker URL comes from TQMON_TEST_REDIS_URL, kombu's transport options (sep, priority_steps,
queue_order_strategy, global_keyprefix: the layouts users configure) from
TQMON_TEST_CELERY_TRANSPORT (JSON), if set. Tasks are acknowledged late, so a task a
worker holds sits in kombu's `unacked` hash until it finishes (or the visibility timeout
passes): what a SIGKILL leaves behind.
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery

app = Celery("tqmon_test", broker=os.environ["TQMON_TEST_REDIS_URL"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1,
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                broker_transport_options=json.loads(
                    os.environ.get("TQMON_TEST_CELERY_TRANSPORT", "{}")))


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def hold(seconds: float) -> None:
    time.sleep(seconds)


@app.task
def fail() -> None:
    raise RuntimeError("a failing task (tests/test_conformance.py)")
