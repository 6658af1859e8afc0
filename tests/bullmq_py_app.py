"""Real BullMQ workers and producers from PyPI's `bullmq` (Python), for tests/test_bullmq.py and
tests/test_conformance.py. Runs in build/bullmq-venv (devtools/sidevenv.py), never in tqmon's.

    python bullmq_py_app.py worker QUEUE [NAME] [LOCK_MS]   a Worker, until killed
    python bullmq_py_app.py add QUEUE JOB COUNT             COUNT jobs named JOB (sleep, fail)

Environment: REDIS_URL, BULLMQ_PREFIX (default bull), BULLMQ_METRICS=1 to enable BullMQ's
metrics counters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from bullmq import Queue, Worker

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
PREFIX = os.environ.get("BULLMQ_PREFIX", "bull")


async def process(job, token):
    if job.name == "sleep":
        await asyncio.sleep(600)
    if job.name == "fail":
        raise RuntimeError("failing on purpose")
    return "done"


async def worker(queue: str, name: str = "-", lock_ms: str = "") -> None:
    opts = {"connection": URL, "prefix": PREFIX}
    if name != "-":
        opts["name"] = name
    if lock_ms:
        opts["lockDuration"] = int(lock_ms)
    if os.environ.get("BULLMQ_METRICS") == "1":
        opts["metrics"] = {"maxDataPoints": 60}
    running = Worker(queue, process, opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await running.close()


async def add(queue: str, job: str, count: str) -> None:
    target = Queue(queue, {"connection": URL, "prefix": PREFIX})
    for _ in range(int(count)):
        await target.add(job, {})
    await target.close()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    asyncio.run({"worker": worker, "add": add}[command](*args))
