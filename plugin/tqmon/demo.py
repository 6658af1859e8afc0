"""`make demo`: a throwaway 6-node Redis Cluster on loopback, tqmon run against it, a summary.

Everything started here is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from . import devcluster


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def summarize(text: str) -> str:
    """A few lines an on-call engineer would read first."""
    s = _samples(text)
    up = s["redis_cluster_node_up"]
    lines = [f"Redis nodes up: {sum(v for _, v in up):.0f} of {len(up)}"]
    by_node = {labels["node_id"]: labels for labels, _ in up}
    memory = {labels["node_id"]: v for labels, v in s["redis_cluster_memory_bytes"]}
    ops = {labels["node_id"]: v for labels, v in s["redis_cluster_ops_per_sec"]}
    state = {labels["node_id"]: v for labels, v in s["redis_cluster_state_ok"]}
    slots = {labels["node_id"]: v for labels, v in s["redis_cluster_slots"]
             if labels["state"] == "ok"}
    lines.append(f"  {'node':<22}{'role':<9}{'up':>3}{'memory MiB':>12}{'ops/s':>7}"
                 f"{'cluster':>9}{'slots ok':>10}")
    for (labels, value) in up:
        node = labels["node_id"]
        cluster_state = {1.0: "ok", 0.0: "FAIL"}.get(state.get(node, -1), "-")
        lines.append(
            f"  {node:<22}{by_node[node]['role']:<9}{value:>3.0f}"
            f"{memory.get(node, 0) / 2**20:>12.1f}{ops.get(node, 0):>7.0f}"
            f"{cluster_state:>9}{slots.get(node, 0):>10.0f}"
        )
    lags = s["redis_cluster_replication_lag_seconds"]
    if lags:
        worst = max(lags, key=lambda item: item[1])
        lines.append(f"Replication: {len(lags)} replicas, worst lag {worst[1]:.0f} s "
                     f"({worst[0]['replica_id']} of {worst[0]['master_id']})")
    for labels, value in s["tqmon_collector_up"]:
        duration = next(v for lb, v in s["tqmon_collection_duration_seconds"]
                        if lb["collector"] == labels["collector"])
        status = "ok" if value == 1 else "FAILED"
        lines.append(f"Collector {labels['collector']}: {status} in {duration * 1000:.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tqmon.demo", description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)

    print("Starting a throwaway Redis Cluster (3 masters + 3 replicas) on 127.0.0.1 ...",
          flush=True)
    started = time.monotonic()
    with devcluster.running_cluster() as cluster:
        print(f"Cluster ready in {time.monotonic() - started:.1f} s: "
              f"{', '.join(s.address for s in cluster.servers)}\n", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
        command = [sys.executable, "-m", "tqmon", "--redis-url", cluster.urls[0],
                   "--cluster-name", "demo"]
        print("$ tqmon --redis-url", cluster.urls[0], "--cluster-name demo", flush=True)
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
        if not args.quiet:
            print(run.stdout)
        if run.stderr:
            print(run.stderr, file=sys.stderr)
        print("=== Summary ===")
        print(summarize(run.stdout))
        print("\nStopping the cluster.")
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
