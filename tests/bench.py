"""`make bench`: how fast and how light one tqmon run is on the reference 6-node cluster.

Prints numbers, never passes or fails:
- median wall time of a whole `tqmon` invocation, beside the median of
  `python -c "import redis, prometheus_client"` (the floor an exec plugin cannot go under);
- the collectors' own time (tqmon_collection_duration_seconds) and the peak RSS of a run;
- the Redis commands one run sends to each node (INFO commandstats before and after).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families
from tqmon import devcluster

FLOOR = [sys.executable, "-c", "import redis, prometheus_client"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(), check=True)
    return time.perf_counter() - started, proc.stdout


def command_stats(server: devcluster.RedisServer) -> Counter[str]:
    stats = server.client(protocol=2).info("commandstats")  # RESP2: no HELLO of our own
    return Counter({name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()})


def collection_seconds(text: str) -> dict[str, float]:
    return {s.labels["collector"]: s.value
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "tqmon_collection_duration_seconds"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()

    print("starting the reference cluster (3 masters + 3 replicas) ...", flush=True)
    with devcluster.running_cluster() as cluster:
        tqmon = [sys.executable, "-m", "tqmon", "--redis-url", cluster.urls[0]]
        timed(tqmon)  # warm the page cache and .pyc files for both commands
        timed(FLOOR)
        tq_times, floor_times, collect_times = [], [], []
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            seconds, out = timed(tqmon)
            tq_times.append(seconds)
            collect_times.append(max(collection_seconds(out).values()))
            floor_times.append(timed(FLOOR)[0])
        rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

        before = {s.address: command_stats(s) for s in cluster.servers}
        timed(tqmon)
        after = {s.address: command_stats(s) for s in cluster.servers}

    tq, floor = statistics.median(tq_times), statistics.median(floor_times)
    print(f"\nwhole tqmon run, median of {args.runs}:      {tq * 1000:8.1f} ms")
    print(f"import floor (redis, prometheus_client): {floor * 1000:8.1f} ms")
    print(f"ratio tqmon / floor:                     {tq / floor:8.2f}")
    print(f"collection only (nodes), median:         "
          f"{statistics.median(collect_times) * 1000:8.1f} ms")
    print(f"peak RSS of a child process:             {rss_kib / 1024:8.1f} MiB")
    print("\nRedis commands one run sends, per node (INFO commandstats delta, minus the "
          "benchmark's own INFO):")
    for address in before:
        delta = after[address] - before[address]
        delta["info"] -= 1  # the `after` snapshot counts the `before` INFO call
        delta = +delta
        detail = ", ".join(f"{name} {n}" for name, n in sorted(delta.items()))
        print(f"  {address:<22} {sum(delta.values()):3d}  ({detail})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
