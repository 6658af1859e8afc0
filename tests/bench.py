"""`make bench`: how fast and how light tqmon is, on the reference 6-node cluster.

Prints numbers, never passes or fails.
1. Nodes: median wall time of a whole `tqmon` invocation beside the median of
   `python -c "import redis, prometheus_client"` (the floor an exec plugin cannot go under),
   collection time, peak RSS, and the Redis commands one run sends to each node.
2. Workers: fleets of 1,000 / 10,000 / 100,000 registered workers (the contract's keys, all
   alive): worker-collection time (tqmon_collection_duration_seconds), whole invocation, peak
   RSS and the commands sent to the node holding the fleet; at 1,000 also the ratio to the floor.
3. Queues: 3 streams x 100,000 entries x 10,000 pending (20 consumers a stream, half of them
   dead workers): queue-collection time, the commands one run sends, and the slowest command
   the run caused in SLOWLOG (everything logged during the run).
4. RQ: --rq-workers (1,000) workers registered by RQ's own Worker.register_birth, 10% of them
   dead: tqmon --schema rq beside rq-exporter (PyPI, in build/rq-exporter-venv: it needs
   redis<6), whole process and collection only (tqmon_collection_duration_seconds; for
   rq-exporter its RQCollector.collect() timed in its own process).
5. Celery: 50 queues x 4 priority lists (messages sent by Celery itself) and 10,000 unacked
   messages (kombu's format, written server-side): `--schema celery --collectors queues`
   collection time and the commands one run sends; the workers collector's time is its
   listening window (a heartbeat interval and a bit) by design.
6. arq: one queue of 100,000 jobs (90% ready, 100 of them in progress, 10% deferred; written
   server-side, as arq's enqueue_job would): `--schema arq --collectors queues`.
7. Sidekiq: --sidekiq-processes (1,000) processes in Sidekiq 6.4's layout (written here the way
   its heartbeat writes them: no machine runs 1,000 Sidekiqs), 10% dead with a job each, 10
   queues x 1,000 jobs: collection time and the commands one run sends.
8. BullMQ: --bullmq-queues (100) queues x --bullmq-jobs (10,000) waiting jobs added by real
   BullMQ (Queue.addBulk under Node), and one queue with 1,000 active jobs whose worker was
   SIGKILLed (their locks expired): collection time and the commands one run sends.
9. Sentinel: a master, 2 replicas and 3 sentinels (with a password), 1,000 workers: a whole
   run through the sentinels beside a run given the master's URL, interleaved (target: at
   most 1.15x). (A sentinel keeps no INFO commandstats: each gets one round trip of 4 SENTINEL
   subcommands, by construction.)
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tqmon import contract

from devtools import devcluster, sentinels

FLOOR = [sys.executable, "-c", "import redis, prometheus_client"]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TQMON_")},
            **(extra or {})}


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str, float]:
    """Wall seconds, tqmon's self-metric lines, and the child's peak RSS in MiB.

    Linux counts the forking parent's image in a child's ru_maxrss, so this process must stay
    small: it keeps only the `tqmon_` lines of the output, never the whole (75 MB at 100,000
    workers) text.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=_env(env))
    assert proc.stdout is not None
    out = b"".join(line for line in proc.stdout if line.startswith(b"tqmon_"))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{command[:4]}... exited {proc.returncode}")
    return seconds, out.decode(), usage.ru_maxrss / 1024


def command_stats(server: devcluster.RedisServer) -> Counter[str]:
    stats = server.client(protocol=2).info("commandstats")  # RESP2: no HELLO of our own
    return Counter({name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()})


def commands_of_one_run(servers: list[devcluster.RedisServer], command: list[str]
                        ) -> dict[str, Counter[str]]:
    before = {s.address: command_stats(s) for s in servers}
    run(command)
    after = {s.address: command_stats(s) for s in servers}
    out = {}
    for address in before:
        delta = after[address] - before[address]
        delta["info"] -= 1  # the `after` snapshot counts the `before` INFO call
        out[address] = +delta
    return out


def collection_seconds(text: str) -> dict[str, float]:
    return {s.labels["collector"]: s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "tqmon_collection_duration_seconds"}


def _fmt(delta: Counter[str]) -> str:
    detail = ", ".join(f"{name} {n}" for name, n in sorted(delta.items()))
    return f"{sum(delta.values()):6d}  ({detail})"


def bench_nodes(cluster: devcluster.Cluster, runs: int) -> float:
    tqmon = [sys.executable, "-m", "tqmon", "--redis-url", cluster.urls[0],
             "--collectors", "nodes"]
    run(tqmon)  # warm the page cache and .pyc files for both commands
    run(FLOOR)
    tq_times, floor_times, collect_times, rss = [], [], [], []
    for _ in range(runs):  # interleaved, so machine noise hits both alike
        seconds, out, peak = run(tqmon)
        tq_times.append(seconds)
        rss.append(peak)
        collect_times.append(collection_seconds(out)["nodes"])
        floor_times.append(run(FLOOR)[0])
    tq, floor = statistics.median(tq_times), statistics.median(floor_times)
    print(f"\n== Nodes: reference cluster, {runs} runs, --collectors nodes")
    print(f"whole tqmon run, median:                 {tq * 1000:8.1f} ms")
    print(f"import floor (redis, prometheus_client): {floor * 1000:8.1f} ms")
    print(f"ratio tqmon / floor:                     {tq / floor:8.2f}")
    collect = statistics.median(collect_times)
    print(f"collection (nodes), median:              {collect * 1000:8.1f} ms")
    print(f"peak RSS of a run, max:                  {max(rss):8.1f} MiB")
    print("Redis commands one run sends, per node (INFO commandstats delta):")
    for address, delta in commands_of_one_run(cluster.servers, tqmon).items():
        print(f"  {address:<22}{_fmt(delta)}")
    return floor


# Server-side, in 5,000-worker steps: the benchmark process stays small, so its own memory
# cannot leak into a child's peak RSS (Linux counts the pre-exec image in ru_maxrss).
POPULATE = """
local now = tonumber(redis.call('TIME')[1])
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local id = 'host-' .. (i % 500) .. '-' .. (10000 + i) .. '-' .. string.format('%08x', i)
  local pool = 'service' .. (i % 20) .. '_worker'
  local busy = i % 3 ~= 0
  redis.call('HSET', KEYS[2] .. id, 'name', pool .. '_' .. i,
    'hostname', 'host-' .. (i % 500), 'pid', 10000 + i, 'started_at', now - 3600,
    'status', busy and 'processing' or 'idle',
    'tasks_processed', i * 7, 'tasks_failed', i % 13, 'pool', pool)
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('SADD', KEYS[3], pool)
  redis.call('ZADD', ARGV[3] .. pool .. ':workers', now, id)
  if busy then redis.call('ZADD', ARGV[3] .. pool .. ':busy', now, id) end
  redis.call('HINCRBY', KEYS[4], 'processed|' .. pool, i * 7)
  redis.call('HINCRBY', KEYS[4], 'failed|' .. pool, i % 13)
end
"""
# Windows from the top down: a re-scored member moves to the end, below which nothing is left
# to visit, so every member is visited once.
REBEAT = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
local members = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
for _, m in ipairs(members) do
  redis.call('ZADD', KEYS[1], now, m)
  local pool = redis.call('HGET', ARGV[3] .. m, 'pool')
  if pool then
    redis.call('ZADD', ARGV[4] .. pool .. ':workers', now, m)
    redis.call('ZADD', ARGV[4] .. pool .. ':busy', 'XX', now, m)
  end
end
"""


def populate(client, count: int) -> None:
    """`count` workers in 20 pools the way tqmon.heartbeat registers them (hash fields,
    registry, the pools' registries and counters; two in three busy)."""
    keys = contract.Keys()
    for start in range(0, count, 5000):
        client.eval(POPULATE, 4, keys.workers, keys.worker_prefix, keys.pools,
                    keys.pool_stats, start, min(count, start + 5000) - 1, keys.pool_prefix)


def rebeat(client, count: int) -> None:
    """Every worker beats now, so all are alive for the next run."""
    for start in reversed(range(0, count, 5000)):
        keys = contract.Keys()
        client.eval(REBEAT, 1, keys.workers, start, start + 4999, keys.worker_prefix,
                    keys.pool_prefix)


def bench_workers(cluster: devcluster.Cluster, sizes: list[int], runs: int,
                  floor: float) -> None:
    owner_client = cluster.client()
    keys = contract.Keys()
    node = owner_client.get_node_from_key(keys.workers)
    owner = cluster.by_address(f"{node.host}:{node.port}")
    tqmon = [sys.executable, "-m", "tqmon", "--redis-url", cluster.urls[0], "--timeout", "30"]
    print("\n== Workers: all alive, 20 pools, keys on one node, default collectors "
          "(nodes + workers)")
    print(f"{'workers':>8} {'cap':>7} {'collect':>9} {'whole run':>10} {'ratio':>6} "
          f"{'peak RSS':>9} {'series':>8}  commands on the fleet's node per run")
    for size in sizes:
        client = owner.client(protocol=2)
        client.flushall()
        populate(client, size)
        for cap in ("default", "all"):
            command = tqmon if cap == "default" else [*tqmon, "--max-worker-series", "all"]
            collects, wholes, rss = [], [], []
            for _ in range(runs):
                rebeat(client, size)
                seconds, out, peak = run(command)
                collects.append(collection_seconds(out)["workers"])
                wholes.append(seconds)
                rss.append(peak)
            series = next(int(s.value) for f in text_string_to_metric_families(out)
                          for s in f.samples if s.name == "tqmon_series")
            rebeat(client, size)
            delta = commands_of_one_run([owner], command)[owner.address]
            whole = statistics.median(wholes)
            print(f"{size:>8} {cap:>7} {statistics.median(collects) * 1000:>7.0f}ms "
                  f"{whole * 1000:>8.0f}ms {whole / floor:>6.2f} {max(rss):>6.0f}MiB "
                  f"{series:>8}  {_fmt(delta)}", flush=True)
    owner.client().flushall()


STREAM_FILL = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 'type', 'job', 'payload', 'payload-' .. ARGV[2] .. '-' .. i)
end
"""


def bench_queues(cluster: devcluster.Cluster, entries: int, pending: int, runs: int) -> None:
    keys = contract.Keys()
    node = cluster.client().get_node_from_key(keys.workers)
    owner = cluster.by_address(f"{node.host}:{node.port}")
    client = owner.client(protocol=2)
    client.flushall()
    consumers = 20
    for priority in contract.PRIORITIES:
        stream = keys.queue(priority)
        for start in range(0, entries, 5000):
            client.eval(STREAM_FILL, 1, stream, min(5000, entries - start), start)
        client.xgroup_create(stream, "workers", id="0")
        for c in range(consumers):
            client.xreadgroup("workers", f"consumer-{c}", {stream: ">"},
                              count=pending // consumers)
    now = float(client.time()[0])
    client.zadd(keys.workers, {f"consumer-{c}": now - (3600 if c % 2 else 0)
                               for c in range(consumers)})  # odd ones are dead workers
    tqmon = [sys.executable, "-m", "tqmon", "--redis-url", cluster.urls[0], "--collectors",
             "queues", "--read-only"]
    times = [collection_seconds(run(tqmon)[1])["queues"] for _ in range(runs)]
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 10000)
    client.slowlog_reset()
    delta = commands_of_one_run([owner], tqmon)[owner.address]
    entries_logged = client.slowlog_get(10000)
    client.config_set("slowlog-log-slower-than", 10000)
    ours = [e for e in entries_logged
            if not e["command"].lower().startswith((b"slowlog", b"config", b"info"))]
    worst = max(ours, key=lambda e: e["duration"])
    print(f"\n== Queues: 3 streams x {entries} entries x {pending} pending, "
          f"{consumers} consumers a stream (half dead workers), --collectors queues")
    print(f"collection (queues), median of {runs}:     {statistics.median(times) * 1000:8.1f} ms")
    print(f"commands one run sends to the node:      {_fmt(delta)}")
    print(f"slowest command of the run (SLOWLOG):    {worst['duration']:8d} us  "
          f"({worst['command'][:60].decode(errors='replace')})")
    client.flushall()


# --- RQ: tqmon --schema rq against rq-exporter (PyPI) on the same Redis ----------------------
# rq-exporter pins redis<6 and tqmon needs redis>=8, so it lives in a venv of its own.
RQ_EXPORTER_VENV = Path(__file__).resolve().parent.parent / "build" / "rq-exporter-venv"
RQ_EXPORTER_DRIVER = """
import statistics, sys, time
from prometheus_client import CollectorRegistry, generate_latest
from redis import Redis
from rq_exporter.collector import RQCollector
collector = RQCollector(Redis.from_url(sys.argv[1]))
if sys.argv[2] == "once":  # what one scrape of a fresh exporter costs: import, collect, render
    registry = CollectorRegistry()
    registry.register(collector)
    sys.stdout.buffer.write(generate_latest(registry))
else:  # collection only: rq-exporter's own collect(), the call every scrape makes
    list(collector.collect())
    times = []
    for _ in range(int(sys.argv[3])):
        started = time.perf_counter()
        list(collector.collect())
        times.append(time.perf_counter() - started)
    print(statistics.median(times))
"""


def rq_exporter_python() -> str:
    python = RQ_EXPORTER_VENV / "bin" / "python"
    if not python.exists():
        print("creating build/rq-exporter-venv (pip install rq-exporter) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(RQ_EXPORTER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "rq-exporter"], check=True)
    return str(python)


def register_rq_workers(url: str, count: int, dead_share: float = 0.1) -> int:
    """`count` workers registered by RQ's own code (Worker.register_birth, set_state), 10% of
    them left as a SIGKILL leaves them: last heartbeat past the TTL, hash still there with
    the rest of RQ's 60 s grace as its expiry (written directly: RQ never writes that state)."""
    import redis
    from rq import Queue, Worker

    client = redis.Redis.from_url(url)
    queues = [Queue(name, connection=client) for name in ("high", "default", "low")]
    for i in range(count):
        worker = Worker(queues[: 1 + i % 3], name=f"bench-{i:05d}", connection=client)
        worker.register_birth()
        worker.set_state("idle" if i % 4 else "busy")
    dead = int(count * dead_share)
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for i in range(dead):
        key = f"rq:worker:bench-{i:05d}"
        stale = datetime.datetime.fromtimestamp(now - 450, datetime.timezone.utc)  # TTL 420
        pipe.hset(key, "last_heartbeat", stale.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        pipe.expire(key, 30)
    pipe.execute()
    for queue in queues:
        for i in range(100):
            queue.enqueue("builtins.print", i)
    return dead


def bench_rq(count: int, runs: int, floor: float | None) -> None:
    python = rq_exporter_python()
    server = devcluster.start_standalone()
    try:
        dead = register_rq_workers(server.url, count)
        tqmon = [sys.executable, "-m", "tqmon", "--schema", "rq", "--redis-url", server.url,
                 "--collectors", "workers,queues", "--timeout", "30"]
        exporter = [python, "-c", RQ_EXPORTER_DRIVER, server.url, "once"]
        # first, while the dead workers' hashes live (RQ's grace: they expire 30 s from now)
        full = subprocess.run(tqmon, capture_output=True, text=True, env=_env(), check=True)
        families = {f.name: f for f in text_string_to_metric_families(full.stdout)}
        reported_dead = sum(1 for s in families["worker_up"].samples if s.value == 0)
        if floor is None:
            run(FLOOR)
            floor = statistics.median(run(FLOOR)[0] for _ in range(runs))
        for command in (tqmon, exporter):
            run(command)  # warm the page cache and .pyc files
        tq_whole, ex_whole, tq_workers, tq_queues = [], [], [], []
        for _ in range(runs):  # interleaved, so machine noise hits both alike
            seconds, out, _ = run(tqmon)
            tq_whole.append(seconds)
            tq_workers.append(collection_seconds(out)["workers"])
            tq_queues.append(collection_seconds(out)["queues"])
            ex_whole.append(run(exporter)[0])
        result = subprocess.run([python, "-c", RQ_EXPORTER_DRIVER, server.url, "time",
                                 str(runs)], capture_output=True, text=True, check=True)
        ex_collect = float(result.stdout)
        delta = commands_of_one_run([server], tqmon)[server.address]
    finally:
        server.stop()
    tq_collect = statistics.median(tq_workers) + statistics.median(tq_queues)
    print(f"\n== RQ: {count} workers registered by RQ ({dead} dead), 3 queues x 100 jobs; "
          f"median of {runs}")
    print(f"{'':34} {'tqmon --schema rq':>18} {'rq-exporter':>12} {'ratio':>6}")
    print(f"{'collection only (workers+queues)':34} {tq_collect * 1000:>16.1f}ms "
          f"{ex_collect * 1000:>10.1f}ms {ex_collect / tq_collect:>6.1f}")
    print(f"{'  of which workers (tqmon)':34} {statistics.median(tq_workers) * 1000:>16.1f}ms")
    print(f"{'whole process (one collection)':34} {statistics.median(tq_whole) * 1000:>16.1f}ms "
          f"{statistics.median(ex_whole) * 1000:>10.1f}ms "
          f"{statistics.median(ex_whole) / statistics.median(tq_whole):>6.1f}")
    print(f"{'import floor (redis, prometheus_client)':34} {floor * 1000:>11.1f}ms  "
          f"(tqmon whole / floor {statistics.median(tq_whole) / floor:.2f})")
    print(f"dead workers reported: tqmon {reported_dead} of {dead} (worker_up 0); rq-exporter "
          "has no such series")
    print(f"commands one tqmon run sends:           {_fmt(delta)}")


# --- Celery and arq -----------------------------------------------------------------------------
CELERY_UNACKED = """
local template, queues = ARGV[1], tonumber(ARGV[2])
local now = tonumber(redis.call('TIME')[1])
for i = tonumber(ARGV[3]), tonumber(ARGV[4]) do
  local queue = 'q' .. string.format('%02d', i % queues)
  local tag = string.format('tag-%08d', i)
  redis.call('HSET', KEYS[1], tag, '[' .. template .. ', "' .. queue .. '", "' .. queue .. '"]')
  redis.call('ZADD', KEYS[2], now - (i % 7200), tag)
end
"""
ARQ_FILL = """
local now = tonumber(ARGV[3])
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local id = string.format('%032x', i)
  local score = now - 100000 + i
  if i % 10 == 0 then score = now + 600000 + i end
  redis.call('ZADD', KEYS[1], score, id)
  if i < 1000 and i % 10 == 1 then
    redis.call('SET', 'arq:in-progress:' .. id, '1', 'PX', 600000)
  end
end
"""


def _bench_schema(title: str, server: devcluster.RedisServer, args: list[str], runs: int) -> None:
    tqmon = [sys.executable, "-m", "tqmon", "--redis-url", server.url, "--collectors", "queues",
             "--timeout", "30", *args]
    run(tqmon)
    times, rss = [], []
    for _ in range(runs):
        _, out, peak = run(tqmon)
        times.append(collection_seconds(out)["queues"])
        rss.append(peak)
    delta = commands_of_one_run([server], tqmon)[server.address]
    print(f"\n== {title}; median of {runs}")
    print(f"collection (queues):                     {statistics.median(times) * 1000:8.1f} ms")
    print(f"peak RSS of a run, max:                  {max(rss):8.1f} MiB")
    print(f"commands one run sends:                  {_fmt(delta)}")


def bench_celery(runs: int, queues: int = 50, unacked: int = 10_000,
                 transport: dict | None = None) -> None:
    """Waiting messages sent by Celery (kombu declares the bindings and picks the priority
    lists, in the layout `transport` configures); unacked ones in the format kombu's QoS
    writes, server-side."""
    from celery import Celery

    transport = transport or {}
    steps = transport.get("priority_steps", (0, 3, 6, 9))
    server = devcluster.start_standalone()
    try:
        app = Celery("bench", broker=server.url, broker_transport_options=transport)
        with app.producer_or_acquire() as producer:
            for q in range(queues):
                for priority in steps:
                    for i in range(5):
                        app.send_task("celery_app.add", (i, q), queue=f"q{q:02d}",
                                      priority=priority, producer=producer)
        client = server.client(protocol=2)
        template = client.lindex("q00", -1)
        for start in range(0, unacked, 5000):
            client.eval(CELERY_UNACKED, 2, "unacked", "unacked_index", template, queues, start,
                        min(unacked, start + 5000) - 1)
        layout = ", ".join(f"{k}={v!r}" for k, v in transport.items()) or "kombu's defaults"
        _bench_schema(f"Celery ({layout}): {queues} queues x {len(steps)} priority lists x 5 "
                      f"messages, {unacked} unacked (1/2 past the visibility timeout)", server,
                      ["--schema", "celery"], runs)
    finally:
        server.stop()


def bench_celery_layouts(runs: int) -> None:
    """kombu's default layout (4 lists a queue), and 10 priority steps with ':' as sep."""
    bench_celery(runs)
    bench_celery(runs, transport={"sep": ":", "priority_steps": list(range(10)),
                                  "queue_order_strategy": "priority"})


def bench_arq(runs: int, jobs: int = 100_000) -> None:
    server = devcluster.start_standalone()
    try:
        client = server.client(protocol=2)
        now_ms = int(client.time()[0]) * 1000
        for start in range(0, jobs, 5000):
            client.eval(ARQ_FILL, 1, "arq:queue", start, min(jobs, start + 5000) - 1, now_ms)
        _bench_schema(f"arq: one queue of {jobs} jobs ({jobs // 10} deferred, 100 in progress)",
                      server, ["--schema", "arq"], runs)
    finally:
        server.stop()
BULLMQ_APP = Path(__file__).parent / "bullmq" / "app.js"


def _median_collection(command: list[str], runs: int) -> tuple[float, float, float]:
    """Median collection seconds (workers + queues), whole invocation, and peak RSS."""
    run(command)  # warm the page cache and .pyc files
    collect, whole, rss = [], [], []
    for _ in range(runs):
        seconds, out, peak = run(command)
        took = collection_seconds(out)
        collect.append(took.get("workers", 0.0) + took.get("queues", 0.0))
        whole.append(seconds)
        rss.append(peak)
    return statistics.median(collect), statistics.median(whole), max(rss)


def register_sidekiq_processes(client, count: int, dead_share: float = 0.1) -> int:
    """`count` processes as Sidekiq 6.4's heartbeat leaves them (launcher.rb: SADD processes,
    HMSET info/busy/beat/rtt_us/quiet/rss, EXPIRE 60; the `:workers` hash of running jobs),
    10% of them dead: beat 40 s old, one job each in their work hash."""
    import json

    def compact(value: object) -> str:  # as Ruby's JSON.generate writes it: no spaces
        return json.dumps(value, separators=(",", ":"))

    now, dead = time.time(), int(count * dead_share)
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        identity = f"bench-host-{i // 8}:{10000 + i}:{i:012x}"
        info = {"hostname": f"bench-host-{i // 8}", "started_at": now - 3600, "pid": 10000 + i,
                "tag": "", "concurrency": 10, "queues": ["default", f"q{i % 10}"],
                "labels": [], "identity": identity}
        beat = now - 40 if i < dead else now
        pipe.sadd("processes", identity)
        pipe.hset(identity, mapping={"info": compact(info), "busy": 1, "beat": beat,
                                     "rtt_us": 100, "quiet": "false", "rss": 50000})
        pipe.expire(identity, 60)
        job = {"queue": f"q{i % 10}", "payload": {"class": "Job", "args": [i]},
               "run_at": int(now) - 30}
        pipe.hset(f"{identity}:workers", "tid-1", compact(job))
        pipe.expire(f"{identity}:workers", 60)
        if i % 1000 == 999:
            pipe.execute()
    for q in range(10):
        pipe.sadd("queues", f"q{q}")
        jobs = [json.dumps({"class": "Job", "args": [j], "queue": f"q{q}", "jid": f"{q}-{j}",
                            "created_at": now - 60, "enqueued_at": now - 60 + j / 1000})
                for j in range(1000)]
        pipe.lpush(f"queue:q{q}", *jobs)
    pipe.execute()
    return dead


def bench_sidekiq(count: int, runs: int) -> None:
    server = devcluster.start_standalone()
    try:
        dead = register_sidekiq_processes(server.client(), count)
        tqmon = [sys.executable, "-m", "tqmon", "--schema", "sidekiq", "--redis-url",
                 server.url, "--collectors", "workers,queues", "--timeout", "30"]
        delta = commands_of_one_run([server], tqmon)[server.address]  # records the deaths
        again = commands_of_one_run([server], tqmon)[server.address]  # steady state
        collect, whole, rss = _median_collection(tqmon, runs)
    finally:
        server.stop()
    print(f"\n== Sidekiq: {count} processes ({dead} dead, a job each), 10 queues x 1,000 "
          f"jobs; median of {runs}")
    print(f"collection (workers+queues) {collect * 1000:8.1f}ms   whole process "
          f"{whole * 1000:.1f}ms   peak RSS {rss:.0f} MiB")
    print(f"commands, first run (records {dead} deaths): {_fmt(delta)}")
    print(f"commands, every later run:                  {_fmt(again)}")


def _node(url: str, *args: str) -> None:
    subprocess.run(["node", str(BULLMQ_APP), *args], check=True,
                   env={**os.environ, "REDIS_URL": url})


def bench_bullmq(queues: int, jobs: int, runs: int) -> None:
    server = devcluster.start_standalone()
    worker = None
    try:
        print(f"adding {queues} x {jobs} BullMQ jobs (Queue.addBulk) ...", flush=True)
        started = time.monotonic()
        _node(server.url, "bulk", "bench", str(queues), str(jobs))
        print(f"  took {time.monotonic() - started:.0f} s", flush=True)
        client = server.client()
        worker = subprocess.Popen(["node", str(BULLMQ_APP), "worker", "held", "-", "2000",
                                   "1000"], env={**os.environ, "REDIS_URL": server.url},
                                  stdout=subprocess.PIPE)
        assert worker.stdout is not None and worker.stdout.readline() == b"ready\n"
        _node(server.url, "add", "held", "sleep", "1000")
        devcluster.wait_for(lambda: client.llen("bull:held:active") == 1000, 60,
                            "1,000 active jobs")
        worker.kill()
        worker.wait()
        devcluster.wait_for(lambda: not client.exists("bull:held:1000:lock"), 10,
                            "the locks to expire")
        names = ",".join([*(f"bench{q}" for q in range(queues)), "held"])
        tqmon = [sys.executable, "-m", "tqmon", "--schema", "bullmq", "--redis-url",
                 server.url, "--bullmq-queues", names, "--collectors", "workers,queues",
                 "--timeout", "30"]
        delta = commands_of_one_run([server], tqmon)[server.address]
        collect, whole, rss = _median_collection(tqmon, runs)
        full = subprocess.run(tqmon, capture_output=True, text=True, env=_env(), check=True)
        orphaned = sum(s.value for f in text_string_to_metric_families(full.stdout)
                       for s in f.samples if s.name == "task_queue_orphaned")
        depth = sum(s.value for f in text_string_to_metric_families(full.stdout)
                    for s in f.samples if s.name == "task_queue_depth")
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        server.stop()
    print(f"\n== BullMQ: {queues} queues x {jobs} waiting jobs, 1 queue x 1,000 active jobs "
          f"of a killed worker; median of {runs}")
    print(f"collection (workers+queues) {collect * 1000:8.1f}ms   whole process "
          f"{whole * 1000:.1f}ms   peak RSS {rss:.0f} MiB")
    print(f"reported: depth {depth:.0f}, orphaned {orphaned:.0f}")
    print(f"commands one run sends: {_fmt(delta)}")


def bench_sentinel(runs: int, workers: int = 1000) -> None:
    password = "bench-sentinel-pw"
    env = {"TQMON_SENTINEL_PASSWORD": password}
    with sentinels.running_sentinels(password=password) as started:
        master = started.master_server()
        populate(master.client(protocol=2), workers)
        direct = [sys.executable, "-m", "tqmon", "--redis-url", master.url]
        through = [sys.executable, "-m", "tqmon", *started.args()]
        run(direct)  # warm the page cache and .pyc files
        run(through, env)
        direct_times, through_times = [], []
        for _ in range(runs):  # interleaved, so machine noise hits both alike
            rebeat(master.client(protocol=2), workers)
            direct_times.append(run(direct)[0])
            through_times.append(run(through, env)[0])
        d, t = statistics.median(direct_times), statistics.median(through_times)
        print(f"\n== Sentinel: master + 2 replicas, 3 sentinels, {workers} workers, "
              f"default collectors; median of {runs}")
        print(f"whole run, --redis-url (the master):     {d * 1000:8.1f} ms")
        print(f"whole run, --sentinel x3:                {t * 1000:8.1f} ms")
        print(f"ratio sentinel / master URL (<= 1.15):   {t / d:8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--workers", default="1000,10000,100000",
                        help="comma-separated fleet sizes")
    parser.add_argument("--stream-entries", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--rq-workers", type=int, default=1000,
                        help="RQ workers for the tqmon --schema rq vs rq-exporter comparison")
    parser.add_argument("--rq-only", action="store_true", help="run only that comparison")
    parser.add_argument("--celery-arq-only", action="store_true",
                        help="run only the Celery and arq measurements")
    parser.add_argument("--celery-only", action="store_true",
                        help="run only the Celery measurements (both layouts)")
    parser.add_argument("--sidekiq-processes", type=int, default=1000)
    parser.add_argument("--bullmq-queues", type=int, default=100)
    parser.add_argument("--bullmq-jobs", type=int, default=10_000)
    parser.add_argument("--adapters-only", action="store_true",
                        help="run only the Sidekiq and BullMQ benchmarks")
    parser.add_argument("--sentinel-only", action="store_true",
                        help="run only the Sentinel benchmark")
    args = parser.parse_args()
    if args.sentinel_only:
        bench_sentinel(args.runs)
        return 0
    if args.rq_only:
        bench_rq(args.rq_workers, args.runs, None)
        return 0
    if args.celery_only:
        bench_celery_layouts(args.runs)
        return 0
    if args.celery_arq_only:
        bench_celery_layouts(args.runs)
        bench_arq(args.runs)
        return 0
    if args.adapters_only:
        bench_sidekiq(args.sidekiq_processes, args.runs)
        bench_bullmq(args.bullmq_queues, args.bullmq_jobs, args.runs)
        return 0
    print("starting the reference cluster (3 masters + 3 replicas) ...", flush=True)
    with devcluster.running_cluster() as cluster:
        floor = bench_nodes(cluster, args.runs)
        sizes = [int(n) for n in args.workers.split(",") if n]
        bench_workers(cluster, sizes, max(3, args.runs // 2), floor)
        bench_queues(cluster, args.stream_entries, args.pending, max(3, args.runs // 2))
    bench_rq(args.rq_workers, args.runs, floor)
    bench_celery_layouts(args.runs)
    bench_arq(args.runs)
    bench_sidekiq(args.sidekiq_processes, args.runs)
    bench_bullmq(args.bullmq_queues, args.bullmq_jobs, args.runs)
    bench_sentinel(args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
