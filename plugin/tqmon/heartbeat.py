"""Worker-side helper: publish heartbeats, status and task results under contract v1.

    from tqmon.heartbeat import Heartbeat            # AsyncHeartbeat for asyncio
    hb = Heartbeat(client, name="production_worker_1", worker_id=None, prefix="tq",
                   ttl=30, interval=10, pool=None)  # pool: production_worker (the name
                                                     # without its instance number) unless given
    hb.start()                          # register + beat in the background
    hb.task_started(task_id=None)       # status -> processing
    hb.task_finished(duration_seconds, ok=True, task_type="default", priority="medium")
    hb.stop()                           # clean shutdown: deregister, which is not a death
                                        # (with queues=TaskStreams(...): also leave the groups)

Runs on the redis-py client the application already has (Redis or RedisCluster; asyncio ones
for AsyncHeartbeat). Every call is one round trip (a Lua script). Monitoring must never break
the worker: Redis errors are logged and retried at the next beat, never raised into the caller.

With a Sentinel-managed client (`Sentinel(...).master_for(name)`), each beat first asks the
sentinels for the master (one round trip to a sentinel per interval): redis-py asks only when it
opens a connection, so a pooled connection would keep writing to the old master until the
sentinels demote it (up to seconds after they promoted another); asking drops the idle ones,
so the beat after a failover lands on the new master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid
from typing import TYPE_CHECKING, Any

import redis

from . import catalog, contract

if TYPE_CHECKING:
    from .streams import TaskStreams

log = logging.getLogger(__name__)
LATENCY_METRIC = "task_processing_latency_seconds"
# What a call to Redis may raise when Redis is unreachable or refuses: a RedisCluster client
# raises RedisClusterException (not a RedisError) when no node answers.
REDIS_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)


class _Base:
    def __init__(self, client: Any, name: str, worker_id: str | None = None,
                 prefix: str = contract.DEFAULT_PREFIX, ttl: float = 30,
                 interval: float = 10, pool: str | None = None,
                 queues: TaskStreams | None = None) -> None:
        if interval <= 0 or ttl <= interval:
            raise ValueError("need 0 < interval < ttl, so that one late beat is not a death")
        self.client = client
        self.name = name
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.ttl = ttl
        self.interval = interval
        self.keys = contract.Keys(contract.check_prefix(prefix))
        self.pool = pool or contract.pool_of(name)
        self.queues = queues  # consumer groups to leave on a clean stop
        self.tasks_processed = 0
        self.tasks_failed = 0
        self._bounds = catalog.default()[LATENCY_METRIC].buckets
        self._scripts = {
            name: client.register_script(source) for name, source in (
                ("register", contract.REGISTER), ("beat", contract.BEAT),
                ("started", contract.TASK_STARTED), ("finished", contract.TASK_FINISHED),
                ("deregister", contract.DEREGISTER),
            )
        }

    def _master_pool(self) -> Any:
        """The client's SentinelConnectionPool (which can ask for the master), else None."""
        pool = getattr(self.client, "connection_pool", None)
        return pool if getattr(pool, "is_master", False) and hasattr(
            pool, "get_master_address") else None

    @property
    def _membership_keys(self) -> list[str]:
        return [self.keys.workers, self.keys.dead, self.keys.worker(self.worker_id),
                self.keys.pool_workers(self.pool), self.keys.pool_busy(self.pool)]

    def _register_args(self) -> tuple[list[str], list[Any]]:
        return [*self._membership_keys[:3], self.keys.pools,
                self.keys.pool_workers(self.pool)], [
            self.worker_id, self.name, socket.gethostname(), os.getpid(),
            self.tasks_processed, self.tasks_failed, self.pool]

    def _started_args(self, task_id: str | None) -> tuple[list[str], list[Any]]:
        return ([self.keys.worker(self.worker_id), self.keys.workers,
                 self.keys.pool_busy(self.pool)], [task_id or "", self.worker_id])

    def _finished_args(self, duration: float, ok: bool, task_type: str,
                       priority: str) -> tuple[list[str], list[Any]]:
        self.tasks_processed += 1
        self.tasks_failed += 0 if ok else 1
        duration = max(0.0, float(duration))
        fields = contract.latency_fields(task_type, priority, duration, self._bounds)
        return ([self.keys.worker(self.worker_id), self.keys.latency, self.keys.pool_stats,
                 self.keys.pool_busy(self.pool)],
                [1 if ok else 0, repr(duration), *fields, self.pool, self.worker_id])


class Heartbeat(_Base):
    """Heartbeats from a background daemon thread, for threaded or synchronous workers."""

    def __init__(self, client: redis.Redis, name: str, worker_id: str | None = None,
                 prefix: str = contract.DEFAULT_PREFIX, ttl: float = 30,
                 interval: float = 10, pool: str | None = None,
                 queues: TaskStreams | None = None) -> None:
        super().__init__(client, name, worker_id, prefix, ttl, interval, pool, queues)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return self._scripts[script](keys=keys, args=args)
        except REDIS_ERRORS as exc:
            log.warning("tqmon heartbeat %s (%s): %s", script, self.worker_id, exc)
            return None

    def _follow_master(self) -> None:
        if (pool := self._master_pool()) is not None:
            try:
                pool.get_master_address()  # a new master: idle connections are dropped
            except REDIS_ERRORS as exc:
                log.warning("tqmon heartbeat sentinel (%s): %s", self.worker_id, exc)

    def beat(self) -> None:
        """One heartbeat now; registers again if the collector pruned this worker."""
        self._follow_master()
        if self._call("beat", self._membership_keys, [self.worker_id]) == 0:
            self._call("register", *self._register_args())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def start(self) -> Heartbeat:
        self._stop.clear()
        self._call("register", *self._register_args())
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"tqmon-heartbeat-{self.worker_id}")
        self._thread.start()
        return self

    def task_started(self, task_id: str | None = None) -> None:
        self._call("started", *self._started_args(task_id))

    def task_finished(self, duration_seconds: float, ok: bool = True,
                      task_type: str = "default", priority: str = "medium") -> None:
        self._call("finished", *self._finished_args(duration_seconds, ok, task_type, priority))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None
        self._call("deregister", [*self._membership_keys, self.keys.pools],
                   [self.worker_id, self.pool])
        if self.queues is not None:
            try:
                self.queues.leave(self.worker_id)
            except REDIS_ERRORS as exc:
                log.warning("tqmon heartbeat leave (%s): %s", self.worker_id, exc)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AsyncHeartbeat(_Base):
    """The same contract for asyncio applications, on a redis.asyncio client."""

    def __init__(self, client: Any, name: str, worker_id: str | None = None,
                 prefix: str = contract.DEFAULT_PREFIX, ttl: float = 30,
                 interval: float = 10, pool: str | None = None,
                 queues: TaskStreams | None = None) -> None:
        super().__init__(client, name, worker_id, prefix, ttl, interval, pool, queues)
        self._task: asyncio.Task[None] | None = None

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[script](keys=keys, args=args)
        except REDIS_ERRORS as exc:
            log.warning("tqmon heartbeat %s (%s): %s", script, self.worker_id, exc)
            return None

    async def _follow_master(self) -> None:
        if (pool := self._master_pool()) is not None:
            try:
                await pool.get_master_address()
            except REDIS_ERRORS as exc:
                log.warning("tqmon heartbeat sentinel (%s): %s", self.worker_id, exc)

    async def beat(self) -> None:
        await self._follow_master()
        if await self._call("beat", self._membership_keys, [self.worker_id]) == 0:
            await self._call("register", *self._register_args())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()

    async def start(self) -> AsyncHeartbeat:
        await self._call("register", *self._register_args())
        self._task = asyncio.create_task(self._run(), name=f"tqmon-heartbeat-{self.worker_id}")
        return self

    async def task_started(self, task_id: str | None = None) -> None:
        await self._call("started", *self._started_args(task_id))

    async def task_finished(self, duration_seconds: float, ok: bool = True,
                            task_type: str = "default", priority: str = "medium") -> None:
        await self._call("finished",
                         *self._finished_args(duration_seconds, ok, task_type, priority))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._call("deregister", [*self._membership_keys, self.keys.pools],
                         [self.worker_id, self.pool])
        if self.queues is not None:  # TaskStreams on the asyncio client: awaitable scripts
            for stream in self.queues.streams.values():
                try:
                    await self.queues.leave_script(keys=[stream],
                                                   args=[self.queues.group, self.worker_id])
                except REDIS_ERRORS as exc:
                    log.warning("tqmon heartbeat leave (%s): %s", self.worker_id, exc)

    async def __aenter__(self) -> AsyncHeartbeat:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
