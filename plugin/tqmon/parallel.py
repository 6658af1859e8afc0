"""One whole-run deadline, and running per-node work in parallel under it.

A run's Deadline also owns the clients opened under it: when the run gives its answer
(`abandon()`), every socket still open is shut down, so a node that dribbles a byte at a time
(each read within the socket timeout) cannot keep a thread and a socket past the run, and
nothing left running acts on Redis afterwards (`live()` is False).

Per-node work runs on at most MAX_THREADS threads a call (so one connection per thread at a
time): every node of a realistic cluster at once. With more nodes than that (a huge cluster, or
a CLUSTER NODES reply that lists thousands), each task gets a slice of the time left, the
larger the fewer tasks still wait, so stuck nodes end by their slice and cannot hold the
threads the healthy ones after them need; all of it within the run's deadline.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

MAX_THREADS = 128  # threads (and so connections at once) per run_parallel call
_slice = threading.local()  # .end: when the task this thread runs must end (monotonic)


class Deadline:
    """A point in time every network call of one run must finish by."""

    def __init__(self, seconds: float, _owner: Deadline | None = None) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._owner = _owner
        self._lock = threading.Lock()
        self._clients: list[Any] = []
        self._abandoned = False

    def remaining(self) -> float:
        """Time left, within the slice of the task this thread runs (run_parallel)."""
        end = self.end
        task_end = getattr(_slice, "end", None)
        if task_end is not None and task_end < end:
            end = task_end
        return max(0.0, end - time.monotonic())

    def sub(self, fraction: float) -> Deadline:
        """A deadline at `fraction` of the time left, for a phase that must leave room after it;
        its clients belong to this run too."""
        return Deadline(self.remaining() * fraction, _owner=self._root())

    def _root(self) -> Deadline:
        return self._owner._root() if self._owner is not None else self

    def live(self) -> bool:
        """Time is left and the run has not given its answer: acting is still allowed."""
        return self.remaining() > 0 and not self._root()._abandoned

    def track(self, client: Any) -> None:
        """Close `client` (anything with a connection_pool) when the run is abandoned."""
        root = self._root()
        with root._lock:
            if not root._abandoned:
                root._clients.append(client)
                return
        _close(client)

    def abandon(self) -> None:
        """The run has answered: shut every socket it opened, waking any thread blocked on one,
        and let nothing act any more."""
        root = self._root()
        with root._lock:
            root._abandoned = True
            clients, root._clients = root._clients, []
        for client in clients:
            _close(client)


def _close(client: Any) -> None:
    with contextlib.suppress(Exception):  # closing a half-dead socket may fail: it is gone
        client.connection_pool.disconnect(inuse_connections=True)


def run_parallel(
    tasks: Mapping[K, Callable[[], T]], deadline: Deadline
) -> dict[K, T | BaseException]:
    """Run the tasks on at most MAX_THREADS daemon threads; return each result or exception
    by key.

    Up to MAX_THREADS tasks, each has a thread of its own and the whole time left. Beyond
    that, a thread takes the next waiting task with a slice of the time left in proportion to
    the threads over the tasks still waiting (Deadline.remaining() honours it inside the
    task), so any number of stuck nodes cannot keep the healthy ones from being asked. A task
    still running at the deadline gets a TimeoutError and is abandoned: the threads are
    daemons, so a stuck socket can never keep the process alive, and the run's `abandon()`
    closes their sockets.
    """
    results: dict[K, T | BaseException] = {}
    if not tasks:
        return results
    end = time.monotonic() + deadline.remaining()  # this thread's own slice included
    threads = min(len(tasks), MAX_THREADS)
    waiting = collections.deque(tasks)
    lock = threading.Lock()
    all_done = threading.Event()

    def worker() -> None:
        while True:
            with lock:
                if not waiting or time.monotonic() >= end:  # past the deadline: start nothing
                    return
                key = waiting.popleft()
                share = min(1.0, threads / (len(waiting) + 1))
            now = time.monotonic()
            _slice.end = now + max(0.0, end - now) * share
            try:
                outcome: T | BaseException = tasks[key]()
            except BaseException as exc:  # reported per key, never raised into the caller
                outcome = exc
            finally:
                _slice.end = None
            with lock:
                results[key] = outcome
                if len(results) == len(tasks):
                    all_done.set()

    for _ in range(threads):
        threading.Thread(target=worker, daemon=True, name="tqmon-worker").start()
    all_done.wait(max(0.0, end - time.monotonic()))
    with lock:
        snapshot = dict(results)
    for key in tasks:
        snapshot.setdefault(key, TimeoutError("no answer before the deadline"))
    return snapshot
