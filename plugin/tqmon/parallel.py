"""One whole-run deadline, and running per-node work in parallel under it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

MAX_THREADS = 32


class Deadline:
    """A point in time every network call of one run must finish by."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def sub(self, fraction: float) -> Deadline:
        """A deadline at `fraction` of the time left, for a phase that must leave room after it."""
        return Deadline(self.remaining() * fraction)


def run_parallel(
    tasks: Mapping[K, Callable[[], T]], deadline: Deadline, max_threads: int = MAX_THREADS
) -> dict[K, T | BaseException]:
    """Run each task on a daemon thread; return its result or exception by key.

    A task still running at the deadline gets a TimeoutError and is abandoned: the threads are
    daemons, so a stuck socket (e.g. a SIGSTOPped server) can never keep the process alive.
    """
    results: dict[K, T | BaseException] = {}
    if not tasks:
        return results
    todo: queue.SimpleQueue[K] = queue.SimpleQueue()
    for key in tasks:
        todo.put(key)
    lock = threading.Lock()
    all_done = threading.Event()

    def worker() -> None:
        while True:
            try:
                key = todo.get_nowait()
            except queue.Empty:
                return
            try:
                outcome: T | BaseException = tasks[key]()
            except BaseException as exc:  # reported per key, never raised into the caller
                outcome = exc
            with lock:
                results[key] = outcome
                if len(results) == len(tasks):
                    all_done.set()

    for _ in range(min(max_threads, len(tasks))):
        threading.Thread(target=worker, daemon=True, name="tqmon-worker").start()
    all_done.wait(deadline.remaining())
    with lock:
        snapshot = dict(results)
    for key in tasks:
        snapshot.setdefault(key, TimeoutError("no answer before the deadline"))
    return snapshot
