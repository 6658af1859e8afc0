"""The native heartbeat contract (docs/heartbeat-contract.md): workers from their heartbeats with
exactly-once dead-worker detection, queues from the priority streams and their consumer groups."""

from .queues import collect as collect_queues
from .workers import collect as collect_workers

__all__ = ["collect_queues", "collect_workers"]
