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
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families
from tqmon import contract, devcluster

FLOOR = [sys.executable, "-c", "import redis, prometheus_client"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}


def run(command: list[str]) -> tuple[float, str, float]:
    """Wall seconds, tqmon's self-metric lines, and the child's peak RSS in MiB.

    Linux counts the forking parent's image in a child's ru_maxrss, so this process must stay
    small: it keeps only the `tqmon_` lines of the output, never the whole (75 MB at 100,000
    workers) text.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=_env())
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
  redis.call('HSET', KEYS[2] .. id, 'name', 'production_worker_' .. i,
    'hostname', 'host-' .. (i % 500), 'pid', 10000 + i, 'started_at', now - 3600,
    'status', (i % 3 == 0) and 'idle' or 'processing',
    'tasks_processed', i * 7, 'tasks_failed', i % 13)
  redis.call('ZADD', KEYS[1], now, id)
end
"""
# Windows from the top down: a re-scored member moves to the end, below which nothing is left
# to visit, so every member is visited once.
REBEAT = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
local members = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
for _, m in ipairs(members) do redis.call('ZADD', KEYS[1], now, m) end
"""


def populate(client, count: int) -> None:
    """`count` workers the way tqmon.heartbeat registers them (hash fields and registry)."""
    keys = contract.Keys()
    for start in range(0, count, 5000):
        client.eval(POPULATE, 2, keys.workers, keys.worker_prefix, start,
                    min(count, start + 5000) - 1)


def rebeat(client, count: int) -> None:
    """Every worker beats now, so all are alive for the next run."""
    for start in reversed(range(0, count, 5000)):
        client.eval(REBEAT, 1, contract.Keys().workers, start, start + 4999)


def bench_workers(cluster: devcluster.Cluster, sizes: list[int], runs: int,
                  floor: float) -> None:
    owner_client = cluster.client()
    keys = contract.Keys()
    node = owner_client.get_node_from_key(keys.workers)
    owner = cluster.by_address(f"{node.host}:{node.port}")
    tqmon = [sys.executable, "-m", "tqmon", "--redis-url", cluster.urls[0], "--timeout", "30"]
    print("\n== Workers: all alive, keys on one node, default collectors (nodes + workers)")
    print(f"{'workers':>8} {'collect':>10} {'whole run':>10} {'ratio':>6} {'peak RSS':>9}"
          f"  commands on the fleet's node per run")
    for size in sizes:
        client = owner.client(protocol=2)
        client.flushall()
        populate(client, size)
        collects, wholes, rss = [], [], []
        for _ in range(runs):
            rebeat(client, size)
            seconds, out, peak = run(tqmon)
            collects.append(collection_seconds(out)["workers"])
            wholes.append(seconds)
            rss.append(peak)
        rebeat(client, size)
        delta = commands_of_one_run([owner], tqmon)[owner.address]
        whole = statistics.median(wholes)
        print(f"{size:>8} {statistics.median(collects) * 1000:>8.0f}ms {whole * 1000:>8.0f}ms "
              f"{whole / floor:>6.2f} {max(rss):>6.0f}MiB  {_fmt(delta)}")
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--workers", default="1000,10000,100000",
                        help="comma-separated fleet sizes")
    parser.add_argument("--stream-entries", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=10_000)
    args = parser.parse_args()
    print("starting the reference cluster (3 masters + 3 replicas) ...", flush=True)
    with devcluster.running_cluster() as cluster:
        floor = bench_nodes(cluster, args.runs)
        sizes = [int(n) for n in args.workers.split(",") if n]
        bench_workers(cluster, sizes, max(3, args.runs // 2), floor)
        bench_queues(cluster, args.stream_entries, args.pending, max(3, args.runs // 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
