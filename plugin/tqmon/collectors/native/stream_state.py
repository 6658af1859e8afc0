"""What one run read of the task streams: each stream, its consumer groups, and which
consumers are dead workers. The queues collector fills it; act.py changes Redis from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Group:
    """One consumer group of one stream, as this run read it."""

    info: dict[str, Any]
    pending: dict[str, Any] | None = None  # XPENDING summary
    oldest_pending: list[dict[str, Any]] = field(default_factory=list)
    next_waiting: list[Any] = field(default_factory=list)  # XRANGE after last-delivered-id
    consumers: list[dict[str, Any]] = field(default_factory=list)  # XINFO CONSUMERS
    left: int = 0  # consumers this run removed from the group
    unread: bool = False  # XPENDING refused (an ACL without it): who holds what is unknown

    def held(self) -> dict[bytes, int]:
        """Pending entries per consumer that holds any."""
        return {c["name"]: int(c["pending"]) for c in (self.pending or {}).get("consumers", [])}


@dataclass
class Stream:
    priority: str
    key: str
    now_ms: int
    depth: int | None = None
    group_count: int = 0  # every group reading the stream, configured or not
    dead_letters: int | None = None  # XLEN of <stream>:dead; None when not in its slot
    moved_to: tuple[str, int] | None = None  # ASK: the slot migrates, the key already moved
    groups: dict[str, Group] = field(default_factory=dict)


@dataclass
class Consumers:
    """Which consumer names are dead workers: `dead` all of them, `pruned` those pruned."""

    dead: set[bytes]
    pruned: set[bytes]
