"""One whole-run deadline, and running per-node work in parallel under it.

A run's Deadline also owns the clients opened under it: when the run gives its answer
(`abandon()`), every socket still open is shut down, so a node that dribbles a byte at a time
(each read within the socket timeout) cannot keep a thread and a socket past the run, and
nothing left running acts on Redis afterwards (`live()` is False).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


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
        return max(0.0, self.end - time.monotonic())

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
    """Run each task on a daemon thread of its own; return its result or exception by key.

    One thread per task, so any number of stuck nodes (a partial outage of a big cluster) cannot
    hold the threads healthy nodes need. A task still running at the deadline gets a
    TimeoutError and is abandoned: the threads are daemons, so a stuck socket can never keep the
    process alive, and the run's `abandon()` closes their sockets.
    """
    results: dict[K, T | BaseException] = {}
    if not tasks:
        return results
    lock = threading.Lock()
    all_done = threading.Event()

    def worker(key: K) -> None:
        try:
            outcome: T | BaseException = tasks[key]()
        except BaseException as exc:  # reported per key, never raised into the caller
            outcome = exc
        with lock:
            results[key] = outcome
            if len(results) == len(tasks):
                all_done.set()

    for key in tasks:
        threading.Thread(target=worker, args=(key,), daemon=True, name="tqmon-worker").start()
    all_done.wait(deadline.remaining())
    with lock:
        snapshot = dict(results)
    for key in tasks:
        snapshot.setdefault(key, TimeoutError("no answer before the deadline"))
    return snapshot
