"""Running age: `task_queue_oldest_pending_idle_seconds{priority,group}` for every schema, the
age of the oldest job being worked on in each queue (for native streams, the pending idle time
of the oldest entry delivered and not acknowledged). TasksPendingTooLong reads it: a job stuck
on a worker whose heartbeat still beats looks alive, and only its age gives it away.

An adapter notes each running job's start (`started`, Unix seconds on the Redis server's
clock where the system records it) and emits one series per queue it knows, 0 where nothing
runs, so the series exist before anything is stuck.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import Samples
from .base import cut

METRIC = "task_queue_oldest_pending_idle_seconds"


class RunningAge:
    """The oldest start seen per queue."""

    def __init__(self) -> None:
        self.oldest: dict[str, float] = {}

    def started(self, queue: str, when: float) -> None:
        if when < self.oldest.get(queue, float("inf")):
            self.oldest[queue] = when

    def add_to(self, out: Samples, now: float, group: str, queues: Iterable[str]) -> None:
        """One series per queue (and per queue a job was seen running in)."""
        for queue in sorted({*queues, *self.oldest}):
            since = self.oldest.get(queue)
            age = 0.0 if since is None else max(0.0, now - since)
            out.add(METRIC, {"priority": cut(queue), "group": group}, age)
