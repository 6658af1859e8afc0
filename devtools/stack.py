"""The demo topology with the monitoring around it, on loopback: a Redis Cluster, a producer and
a simulated worker fleet on the priority streams, tqmon writing a textfile read by a real
node_exporter, tqmon --listen, and a real Prometheus scraping both with the alert rules loaded.

`make demo-stack` runs it until Ctrl-C (open the Prometheus UI it prints); the end-to-end tests
drive it. Everything it starts is stopped on exit.

    python -m devtools.stack --rules build/alerts/tqmon-rules.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqmon.streams import TaskStreams

from . import child_env, devcluster, simulate
from . import services as svc

TTL = 3  # heartbeat TTL of the simulated fleet and the tqmon runs: deaths show within seconds
SCRAPE_SECONDS = 1


def _tqmon_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}


@dataclass
class Stack:
    rules: Path
    workers: int = 4
    tasks_per_second: float = 20
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tqmon-stack-")))
    cluster: devcluster.Cluster | None = None
    fleet: list[subprocess.Popen[str]] = field(default_factory=list)
    worker_ids: list[str] = field(default_factory=list)  # the fleet's, in the same order
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    prometheus: svc.Prometheus | None = None
    listen_port: int = 0
    node_exporter_port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Stack:
        self.cluster = devcluster.start_cluster(node_timeout_ms=1000,
                                                args=["--maxmemory", "256mb"])
        url = self.cluster.urls[0]
        threading.Thread(target=self._produce, args=(url,), daemon=True).start()
        for i in range(self.workers):
            # worker-1 is slow and takes 8 entries at a time: killed, it leaves orphans
            pace = ["--prefetch", "8", "--task-seconds", "3"] if i == 0 else [
                "--prefetch", "2", "--task-seconds", "0.2"]
            proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.simulate", "--redis-url", url, "--cluster",
                 "--name", f"worker-{i + 1}", "--ttl", str(TTL), "--interval", "0.5",
                 "--fail-every", str(4 + i), "--consume", *pace],
                stdout=subprocess.PIPE, text=True, start_new_session=True, env=child_env())
            assert proc.stdout is not None
            self.worker_ids.append(proc.stdout.readline().split()[1])  # "ready <id>"
            self.fleet.append(proc)
        common = ["--redis-url", url, "--cluster-name", "stack", "--heartbeat-ttl", str(TTL),
                  "--timeout", "2"]
        textdir = self.workdir / "textfile"
        textdir.mkdir()
        self._spawn("tqmon-textfile", [sys.executable, "-m", "tqmon", *common, "--textfile",
                                       str(textdir / "tqmon.prom"), "--interval", "1"])
        self.listen_port = devcluster.free_port()
        self._spawn("tqmon-listen", [sys.executable, "-m", "tqmon", *common, "--listen",
                                     f"127.0.0.1:{self.listen_port}"])
        self.node_exporter_port = devcluster.free_port()
        self._spawn("node-exporter", [
            svc.binary("prometheus-node-exporter", "node_exporter"),
            f"--web.listen-address=127.0.0.1:{self.node_exporter_port}",
            "--collector.disable-defaults", "--collector.textfile",
            f"--collector.textfile.directory={textdir}"])
        self._start_prometheus()
        return self

    def stop(self) -> None:
        """The fleet first (SIGTERM: each deregisters), then the services, then Redis."""
        self._stop.set()
        for group in (self.fleet, list(self.services.values())):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.cluster is not None:
            self.cluster.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _spawn(self, name: str, command: list[str]) -> None:
        self.services[name] = svc.spawn(self.workdir, name, command, _tqmon_env())

    def _produce(self, url: str) -> None:
        queues = TaskStreams(simulate.make_client(url, cluster=True))
        queues.ensure_groups()
        n = 0
        while not self._stop.wait(1 / self.tasks_per_second):
            n += 1
            priority = ("high", "medium", "medium", "low", "low", "low")[n % 6]
            with contextlib.suppress(Exception):  # a node failover in a test: keep producing
                queues.enqueue(priority, {
                    "type": simulate.TASK_TYPES[n % len(simulate.TASK_TYPES)],
                    "payload": f"task-{n}"})

    def _start_prometheus(self) -> None:
        interval = f"{SCRAPE_SECONDS}s"
        self.prometheus = svc.start_prometheus(self.workdir, [
            {"job_name": "tqmon", "scrape_timeout": interval,
             "static_configs": [{"targets": [f"127.0.0.1:{self.listen_port}"]}]},
            {"job_name": "node", "scrape_timeout": interval,
             "static_configs": [{"targets": [f"127.0.0.1:{self.node_exporter_port}"]}]},
        ], self.rules, interval)
        self.services["prometheus"] = self.prometheus.process

    # --- Prometheus HTTP API -----------------------------------------------------------------
    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    def api(self, path: str, **params: str) -> Any:
        return self.prometheus.api(path, **params)

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.prometheus.query(expr)

    def held_by(self, worker_id: str) -> int:
        """Stream entries the worker holds (delivered, not acknowledged)."""
        assert self.cluster is not None
        client = self.cluster.client()
        try:
            return sum(c["pending"] for p in ("high", "medium", "low")
                       for c in client.xpending(f"{{tq}}:queue:{p}", "workers")["consumers"]
                       if c["name"] == worker_id)
        finally:
            client.close()

    def alert_states(self, name: str) -> set[str]:
        return self.prometheus.alert_states(name)


@contextlib.contextmanager
def running(rules: Path, **kwargs: Any) -> Iterator[Stack]:
    stack = Stack(rules, **kwargs)
    try:
        yield stack.start()
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.stack", description=__doc__)
    parser.add_argument("--rules", type=Path, required=True, help="alert rules file to load")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print("Starting the cluster, the fleet, tqmon, node_exporter and Prometheus ...", flush=True)
    with running(args.rules) as stack:
        assert stack.cluster is not None
        print(f"""
Prometheus:     {stack.prometheus_url}/alerts   (and /graph)
tqmon --listen: http://127.0.0.1:{stack.listen_port}/metrics
node_exporter:  http://127.0.0.1:{stack.node_exporter_port}/metrics  (tqmon's textfile)
Redis Cluster:  {' '.join(s.address for s in stack.cluster.servers)}
Simulated workers (pids): {' '.join(str(p.pid) for p in stack.fleet)}

Try: kill -9 {stack.fleet[0].pid}   (WorkerDown, then OrphanedTasks)
     kill -9 {stack.cluster.replicas()[0].process.pid}   (RedisNodeDown)
Ctrl-C stops everything.""", flush=True)
        while not stop.wait(1):
            pass
    print("Stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
