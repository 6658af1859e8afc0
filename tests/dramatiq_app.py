"""Actors the real `dramatiq` worker processes of tests/test_dramatiq.py run.

The broker's URL comes from TQMON_TEST_REDIS_URL; its heartbeat timeout is short (2 s) so a
killed worker counts as dead within the test's patience, and maintenance never runs (chance 0)
so the dead worker's ack sets stay in place for tqmon to count as orphaned.
"""

from __future__ import annotations

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

HEARTBEAT_TIMEOUT_MS = 2000

broker = RedisBroker(url=os.environ["TQMON_TEST_REDIS_URL"],
                     heartbeat_timeout=HEARTBEAT_TIMEOUT_MS, maintenance_chance=0)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="work", max_retries=0)
def add(a: int, b: int) -> int:
    return a + b


@dramatiq.actor(queue_name="work", max_retries=0)
def fail() -> None:
    raise RuntimeError("this message fails on purpose")


@dramatiq.actor(queue_name="slow", max_retries=0)
def hold(seconds: float) -> None:
    time.sleep(seconds)


@dramatiq.actor(queue_name="idle", max_retries=0)
def never_run() -> None:
    """On a queue no worker serves: its depth is what was enqueued."""


def main(argv: list[str]) -> None:
    """`send ok|fail|sleep|idle COUNT`: messages sent by Dramatiq itself (test_conformance runs
    this producer in its own process: the broker's URL is read at import). `qsize QUEUE`:
    Dramatiq's own count of a queue's messages (dispatch.lua's `qsize`)."""
    if argv[0] == "send":
        actor, args = {"ok": (add, (1, 2)), "fail": (fail, ()), "sleep": (hold, (60,)),
                       "idle": (never_run, ())}[argv[1]]
        for _ in range(int(argv[2])):
            actor.send(*args)
    elif argv[0] == "qsize":
        print(broker.do_qsize(argv[1]))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
