"""One stderr line per failure: a node that cannot be reached is reported once per run, however
many phases (discovery, each collector) run into it; what failed because of it says nothing
more, and its collector reports `tqmon_collector_up 0`."""

from __future__ import annotations

import logging
import threading

import redis

from .model import describe_error

log = logging.getLogger("tqmon")

# What "the node is down, paused, unreachable or refuses us" looks like from redis-py and the
# deadline; anything else (a reply the code did not expect) is a different failure.
NODE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError, TimeoutError)


class NodeDown(Exception):
    """A node failed and the failure is already on stderr: report nothing more."""


class Failures:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reported: set[str] = set()

    def node(self, address: str, exc: BaseException, what: str = "") -> NodeDown:
        """Report `exc` for the node at `address` unless this run already did; return the
        exception for the caller to raise."""
        if isinstance(exc, NodeDown):
            return exc
        with self._lock:
            first = address not in self._reported
            self._reported.add(address)
        if first:
            log.warning("node %s: %s%s", address, f"{what}: " if what else "",
                        describe_error(exc))
        return NodeDown(f"node {address} failed")

    def reported(self, address: str) -> bool:
        with self._lock:
            return address in self._reported
