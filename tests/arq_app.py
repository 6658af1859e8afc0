"""Jobs for the real `arq` workers of tests/test_arq.py, and their producer.

Runs in build/arq-venv (arq pins redis-py below tqmon's), never in tqmon's venv. The Redis URL
comes from TQMON_TEST_REDIS_URL. Workers write their health check every second (arq's default
is an hour) so the test sees it, and a killed worker's key expires 2 s later.

`python arq_app.py enqueue`: the test's jobs, sent with arq's own client.
"""

from __future__ import annotations

import asyncio
import os
import sys

from arq import create_pool
from arq.connections import RedisSettings

REDIS = RedisSettings.from_dsn(os.environ["TQMON_TEST_REDIS_URL"])


async def add(ctx: dict, a: int, b: int) -> int:
    return a + b


async def fail(ctx: dict) -> None:
    raise RuntimeError("this job fails on purpose")


async def hold(ctx: dict, seconds: float) -> None:
    await asyncio.sleep(seconds)


class WorkerSettings:
    functions = (add, fail, hold)
    redis_settings = REDIS
    health_check_interval = 1
    poll_delay = 0.1
    max_tries = 1


async def enqueue() -> None:
    pool = await create_pool(REDIS)
    for i in range(3):
        await pool.enqueue_job("add", i, 1)
    await pool.enqueue_job("fail")
    await pool.enqueue_job("hold", 60)
    await pool.enqueue_job("add", 1, 1, _defer_by=600)  # deferred: due in 10 minutes
    for i in range(4):  # a queue no worker serves
        await pool.enqueue_job("add", i, 2, _queue_name="arq:backlog")
    await pool.aclose()


async def send(kind: str, count: int, queue: str) -> None:
    """test_conformance's jobs, sent with arq's own client: ok, fail, sleep (60 s)."""
    function, args = {"ok": ("add", (1, 2)), "fail": ("fail", ()), "sleep": ("hold", (60,))}[kind]
    pool = await create_pool(REDIS)
    for _ in range(count):
        await pool.enqueue_job(function, *args, _queue_name=queue)
    await pool.aclose()


async def queued(queue: str) -> None:
    """arq's own count of a queue's waiting jobs."""
    pool = await create_pool(REDIS)
    print(len(await pool.queued_jobs(queue_name=queue)))
    await pool.aclose()


if __name__ == "__main__" and sys.argv[1:] == ["enqueue"]:
    asyncio.run(enqueue())
elif __name__ == "__main__" and sys.argv[1:2] == ["send"]:
    asyncio.run(send(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
elif __name__ == "__main__" and sys.argv[1:2] == ["queued"]:
    asyncio.run(queued(sys.argv[2]))
