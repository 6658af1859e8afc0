"""Jobs the real `rq worker` processes of tests/test_rq.py run (imported by the workers)."""

from __future__ import annotations

import time


def add(a: int, b: int) -> int:
    return a + b


def fail() -> None:
    raise RuntimeError("this job fails on purpose")


def sleep(seconds: float) -> None:
    time.sleep(seconds)
