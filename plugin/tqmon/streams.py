"""The queue side of contract v1, for producers and consumers: one stream per priority, read
through a consumer group with the worker id as consumer name, so that the entries a dead worker
held are attributable to it (tqmon reports them as orphaned, and can requeue them).

    queues = TaskStreams(client)                   # {tq}:queue:high|medium|low, group "workers"
    queues.ensure_groups()
    queues.enqueue("high", {"type": "send_email", "payload": "..."})
    for priority, entry_id, fields in queues.next(consumer=hb.worker_id):
        ...                                        # run the task
        queues.ack(priority, entry_id)
    queues.leave(hb.worker_id)                     # clean stop (Heartbeat(queues=...) does it)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from . import contract


class TaskStreams:
    def __init__(self, client: Any, prefix: str = contract.DEFAULT_PREFIX,
                 group: str = "workers",
                 priorities: tuple[str, ...] = contract.PRIORITIES) -> None:
        self.client = client
        self.group = group
        self.priorities = priorities
        keys = contract.Keys(contract.check_prefix(prefix))
        self.streams = {p: keys.queue(p) for p in priorities}
        self.leave_script = client.register_script(contract.LEAVE)

    def ensure_groups(self) -> None:
        """Create each stream's consumer group (and the stream), reading from the start."""
        for stream in self.streams.values():
            try:
                self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def enqueue(self, priority: str, fields: Mapping[str, Any]) -> str:
        entry_id = self.client.xadd(self.streams[priority], dict(fields))
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def next(self, consumer: str, count: int = 1) -> list[tuple[str, str, dict[Any, Any]]]:
        """Up to `count` new entries for `consumer`, from the highest priority that has any.

        One stream at a time, so it works when the streams live on different cluster nodes.
        """
        for priority in self.priorities:
            reply = self.client.xreadgroup(self.group, consumer, {self.streams[priority]: ">"},
                                           count=count)
            entries = [(priority, _text(entry_id), fields)
                       for _, messages in reply or [] for entry_id, fields in messages]
            if entries:
                return entries
        return []

    def ack(self, priority: str, entry_id: str, record: tuple[str, str] | None = None) -> None:
        """Acknowledge and delete a finished entry, so the stream holds only unfinished tasks
        and XLEN is the backlog. With `record` (key, value), RPUSH the value in the same
        transaction (the tests use it to count deliveries exactly)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.streams[priority], self.group, entry_id)
        pipe.xdel(self.streams[priority], entry_id)
        if record is not None:
            pipe.rpush(*record)
        pipe.execute()

    def leave(self, consumer: str) -> int:
        """On a clean stop: remove `consumer` from the group of every stream where it holds
        nothing, so consumer lists do not grow with every restart. Entries it still holds keep
        it in its group (deleting a consumer drops its pending entries): tqmon reports them as
        orphaned once the worker is gone. One atomic script per stream; returns how many
        groups it left."""
        return sum(int(self.leave_script(keys=[stream], args=[self.group, consumer]) or 0)
                   for stream in self.streams.values())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
