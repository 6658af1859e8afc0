"""A simulated worker process publishing heartbeats with tqmon.heartbeat, for the demo and tests.

    python -m devtools.simulate --redis-url redis://127.0.0.1:7000 --cluster --name w1
    python -m devtools.simulate --sentinel 127.0.0.1:26379 --sentinel-master jobs --name w1

It runs fake tasks of several types and priorities (every --fail-every'th fails), prints
`ready` once registered and `done <processed> <failed>` after --tasks tasks, then keeps beating.
With --consume it takes its tasks from the contract's priority streams instead (tqmon.streams),
--prefetch at a time, until stopped. SIGTERM is a clean shutdown (deregister); SIGKILL a death.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
from typing import Any

import redis
from redis.sentinel import Sentinel
from tqmon import contract
from tqmon.heartbeat import REDIS_ERRORS, Heartbeat
from tqmon.streams import TaskStreams

TASK_TYPES = ("send_email", "resize_image", "backtest", "report")


def make_client(url: str, cluster: bool) -> Any:
    if cluster:
        return redis.RedisCluster.from_url(url, decode_responses=True)
    return redis.Redis.from_url(url, decode_responses=True)


def sentinel_client(addresses: list[str], master: str) -> redis.Redis:
    """A Sentinel-managed client, as an application has it: every new connection asks the
    sentinels for the master, and one to a demoted master is dropped (READONLY), so after a
    failover the next call lands on the new master. The socket timeout ends calls to a
    stopped master; the sentinels' password comes from TQMON_SENTINEL_PASSWORD."""
    password = os.environ.get("TQMON_SENTINEL_PASSWORD")
    sentinel = Sentinel([(h, int(p)) for h, _, p in (a.rpartition(":") for a in addresses)],
                        socket_timeout=1, sentinel_kwargs={"password": password,
                                                           "socket_timeout": 1})
    return sentinel.master_for(master, decode_responses=True, socket_timeout=1,
                               socket_connect_timeout=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.simulate", description=__doc__)
    p.add_argument("--redis-url")
    p.add_argument("--sentinel", action="append", metavar="HOST:PORT",
                   help="instead of --redis-url: a sentinel to ask for the master, repeatable")
    p.add_argument("--sentinel-master", metavar="NAME")
    p.add_argument("--cluster", action="store_true")
    p.add_argument("--name", required=True)
    p.add_argument("--worker-id")
    p.add_argument("--prefix", default=contract.DEFAULT_PREFIX)
    p.add_argument("--ttl", type=float, default=30)
    p.add_argument("--interval", type=float, default=10)
    p.add_argument("--tasks", type=int, default=-1, help="tasks to run; -1 runs forever")
    p.add_argument("--fail-every", type=int, default=0, help="every Nth task fails (0: none)")
    p.add_argument("--task-seconds", type=float, default=0.05, help="max fake task duration")
    p.add_argument("--hold", action="store_true",
                   help="after the tasks, start one more and never finish it")
    p.add_argument("--consume", action="store_true",
                   help="take tasks from the {P}:queue:<priority> streams, until stopped")
    p.add_argument("--prefetch", type=int, default=1, help="entries read at a time")
    p.add_argument("--record", metavar="KEY",
                   help="RPUSH each acked entry's payload to KEY, in the XACK's transaction")
    args = p.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rng = random.Random(args.name)
    if args.sentinel:
        client = sentinel_client(args.sentinel, args.sentinel_master)
    elif args.redis_url:
        client = make_client(args.redis_url, args.cluster)
    else:
        p.error("--redis-url or --sentinel is required")
    queues = TaskStreams(client, prefix=args.prefix) if args.consume else None
    hb = Heartbeat(client, name=args.name, worker_id=args.worker_id, prefix=args.prefix,
                   ttl=args.ttl, interval=args.interval, queues=queues).start()
    print("ready", hb.worker_id, flush=True)
    if queues is not None:
        _consume(args, hb, queues, stop, rng)
        hb.stop()
        return 0
    done = 0
    while not stop.is_set() and (args.tasks < 0 or done < args.tasks):
        hb.task_started(task_id=f"{args.name}-{done}")
        duration = rng.uniform(0.001, args.task_seconds)
        time.sleep(duration)
        done += 1
        ok = not (args.fail_every and done % args.fail_every == 0)
        hb.task_finished(duration, ok=ok, task_type=TASK_TYPES[done % len(TASK_TYPES)],
                         priority=contract.PRIORITIES[done % len(contract.PRIORITIES)])
    print("done", hb.tasks_processed, hb.tasks_failed, flush=True)
    if args.hold and not stop.is_set():
        hb.task_started(task_id="held")
    stop.wait()
    hb.stop()
    return 0


def _consume(args: argparse.Namespace, hb: Heartbeat, queues: TaskStreams,
             stop: threading.Event, rng: random.Random) -> None:
    done = 0
    ready = False
    while not stop.is_set():
        try:  # a worker outlives a Redis outage: it waits and tries again
            if not ready:
                queues.ensure_groups()
                ready = True
            batch = queues.next(hb.worker_id, count=args.prefetch)
        except REDIS_ERRORS as exc:
            print(f"redis unavailable, retrying: {type(exc).__name__}", file=sys.stderr)
            stop.wait(1)
            continue
        if not batch:
            stop.wait(0.05)
            continue
        for priority, entry_id, fields in batch:
            hb.task_started(task_id=entry_id)
            duration = rng.uniform(0.001, args.task_seconds)
            time.sleep(duration)
            done += 1
            ok = not (args.fail_every and done % args.fail_every == 0)
            record = (args.record, fields.get("payload", "")) if args.record else None
            try:
                queues.ack(priority, entry_id, record=record)
            except REDIS_ERRORS:  # unacked: it stays pending, as after a crash
                continue
            hb.task_finished(duration, ok=ok, task_type=fields.get("type", "default"),
                             priority=priority)


if __name__ == "__main__":
    sys.exit(main())
