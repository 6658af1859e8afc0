"""`make demo`: a throwaway 6-node Redis Cluster on loopback with a simulated worker fleet,
tqmon run against it, one worker SIGKILLed and seen turning from up to dead.

Everything started here is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families
from tqmon.streams import TaskStreams

from . import child_env, devcluster, simulate


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
    workers = s["worker_up"]
    if workers or s["workers_alive"]:
        alive = sum(v for _, v in s["workers_alive"])
        dead = sum(v for _, v in s["workers_dead"])
        detected = sum(v for _, v in s["dead_workers_detected_total"])
        lines.append(f"Workers: {alive:.0f} alive, {dead:.0f} dead "
                     f"(deaths detected so far: {detected:.0f})")
        processed = {lb["worker_id"]: v for lb, v in s["worker_tasks_processed_total"]}
        failed = {lb["worker_id"]: v for lb, v in s["worker_tasks_failed_total"]}
        age = {lb["worker_id"]: v for lb, v in s["worker_heartbeat_age_seconds"]}
        lines.append(f"  {'worker':<12}{'up':>3}{'processed':>11}{'failed':>8}{'last beat':>11}")
        for labels, value in sorted(workers, key=lambda item: item[0]["worker_name"]):
            wid = labels["worker_id"]
            lines.append(f"  {labels['worker_name']:<12}{value:>3.0f}"
                         f"{processed.get(wid, 0):>11.0f}{failed.get(wid, 0):>8.0f}"
                         f"{age.get(wid, 0):>9.1f} s")
    depth = {lb["priority"]: v for lb, v in s["task_queue_depth"]}
    if depth:
        reassigned = sum(v for _, v in s["tasks_reassigned_total"])
        lines.append(f"Queues (group workers; tasks requeued so far: {reassigned:.0f})")
        lines.append(f"  {'priority':<10}{'depth':>7}{'lag':>6}{'pending':>9}"
                     f"{'oldest waiting':>16}{'orphaned':>10}")
        per_group = {name: {lb["priority"]: v for lb, v in s[name]} for name in (
            "task_queue_lag", "task_queue_pending", "task_queue_oldest_waiting_age_seconds",
            "task_queue_orphaned")}
        for priority, value in depth.items():
            lag, pending, oldest, orphaned = (per_group[name].get(priority, 0)
                                              for name in per_group)
            lines.append(f"  {priority:<10}{value:>7.0f}{lag:>6.0f}{pending:>9.0f}"
                         f"{oldest:>14.1f} s{orphaned:>10.0f}")
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


FLEET = 5
TTL, INTERVAL = 4, 1  # short, so the demo sees a death within seconds (defaults: 30 and 10)
TASKS_PER_SECOND = 25


def _tqmon(url: str, show: bool, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    args = ["--redis-url", url, "--cluster-name", "demo", "--heartbeat-ttl", str(TTL), *extra]
    print("$ tqmon", " ".join(args), flush=True)
    run = subprocess.run([sys.executable, "-m", "tqmon", *args], capture_output=True,
                         text=True, env=env, timeout=30)
    if show:
        print(run.stdout)
    if run.stderr:
        print(run.stderr, file=sys.stderr, end="")
    print(summarize(run.stdout), "\n", flush=True)
    return run.stdout


def _start_fleet(url: str) -> list[subprocess.Popen[str]]:
    """Workers consuming the priority streams; worker-1 takes 8 entries at a time and is slow,
    so that when it is killed it leaves orphans behind."""
    fleet = []
    for i in range(FLEET):
        pace = ["--prefetch", "8", "--task-seconds", "3"] if i == 0 else [
            "--prefetch", "2", "--task-seconds", "0.3"]
        fleet.append(subprocess.Popen(
            [sys.executable, "-m", "devtools.simulate", "--redis-url", url, "--cluster",
             "--name", f"worker-{i + 1}", "--ttl", str(TTL), "--interval", str(INTERVAL),
             "--fail-every", str(5 + i), "--consume", *pace],
            stdout=subprocess.PIPE, text=True, start_new_session=True, env=child_env()))
    for proc in fleet:
        proc.stdout.readline()  # "ready <id>"
    return fleet


def _freeze_holding_tasks(proc: subprocess.Popen[str], url: str) -> None:
    """SIGSTOP the worker at a moment it holds stream entries (retrying a few times), so that
    the kill that follows certainly leaves orphans behind."""
    client = simulate.make_client(url, cluster=True)
    queues = TaskStreams(client)
    for _ in range(100):
        proc.send_signal(signal.SIGSTOP)
        held = sum(c["pending"] for stream in queues.streams.values()
                   for c in client.xpending(stream, queues.group)["consumers"]
                   if c["name"].startswith(f"{socket.gethostname()}-{proc.pid}-"))
        if held:
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.1)


def _produce(url: str, stop: threading.Event) -> None:
    """A producer: tasks of several types on the three priority streams."""
    queues = TaskStreams(simulate.make_client(url, cluster=True))
    queues.ensure_groups()
    n = 0
    while not stop.wait(1 / TASKS_PER_SECOND):
        n += 1
        priority = ("high", "medium", "medium", "low", "low", "low")[n % 6]
        queues.enqueue(priority, {"type": simulate.TASK_TYPES[n % len(simulate.TASK_TYPES)],
                                  "payload": f"task-{n}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="print only the summaries")
    args = parser.parse_args(argv)

    print("Starting a throwaway Redis Cluster (3 masters + 3 replicas) on 127.0.0.1 ...",
          flush=True)
    started = time.monotonic()
    fleet: list[subprocess.Popen[str]] = []
    stop = threading.Event()
    final = ""
    with devcluster.running_cluster() as cluster:
        url = cluster.urls[0]
        producer = threading.Thread(target=_produce, args=(url, stop), daemon=True)
        try:
            print(f"Cluster ready in {time.monotonic() - started:.1f} s: "
                  f"{', '.join(s.address for s in cluster.servers)}", flush=True)
            producer.start()
            fleet = _start_fleet(url)
            print(f"A producer adds {TASKS_PER_SECOND} tasks/s to the high/medium/low streams; "
                  f"{FLEET} simulated workers (tqmon.heartbeat, TTL {TTL} s) consume them. "
                  "Letting them work for 3 s ...\n", flush=True)
            time.sleep(3)
            _tqmon(url, not args.quiet)
            victim = fleet[0]
            _freeze_holding_tasks(victim, url)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            print(f"SIGKILLed worker-1 (pid {victim.pid}) with tasks in hand; waiting "
                  f"{TTL + 1} s, past its heartbeat TTL ...\n", flush=True)
            time.sleep(TTL + 1)
            _tqmon(url, False)
            print("Putting the dead worker's tasks back on their queues:", flush=True)
            _tqmon(url, False, "--requeue-orphans")
            time.sleep(2)
            print("Two seconds later, the survivors have taken them:", flush=True)
            final = _tqmon(url, False)
        finally:
            stop.set()
            for proc in fleet:  # SIGTERM: a clean shutdown deregisters the survivors
                if proc.poll() is None:
                    proc.terminate()
            for proc in fleet:
                proc.wait(10)
            print("Stopping the producer, the fleet and the cluster.")
    return 0 if "worker_up" in final else 1


if __name__ == "__main__":
    raise SystemExit(main())
