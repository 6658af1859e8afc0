"""Deployed for real: three agents (one carrying Telegraf's `host` label) into one Prometheus,
one agent into another, the same 20-worker fleet; Alertmanager from the recipe behind the first.

Every dashboard query gives the same answer in both; a healthy fleet notifies nobody; killing
half the fleet gives exactly one critical notification (WorkersLost), with the per-worker
warnings inhibited, and the same alerts in both Prometheus servers, each once.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis
from tqmon import catalog
from tqmon.streams import TaskStreams

from devtools import child_env, devcluster, services, views

ROOT = Path(__file__).parent.parent
FLEET, TTL = 20, 2
VARIABLES = {"$job": ".+", "$instance": ".+", "$cluster_name": "deployed",
             "$__rate_interval": "1m", "$__interval": "1m", "$__range": "1m"}


class Webhook:
    """Alertmanager's webhook receiver: every notification it posts, by receiver."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, receiver: str) -> list[dict[str, Any]]:
        return [n for n in self.received if n["receiver"] == receiver
                and n["status"] == "firing"]


class Deployment:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []
        self.server = devcluster.start_standalone()
        self.fleet = [self._spawn([sys.executable, "-m", "devtools.simulate", "--redis-url",
                                   self.server.url, "--name", f"billing_{n}", "--ttl", str(TTL),
                                   "--interval", "0.3", "--task-seconds", "0.5",
                                   "--fail-every", "50"], stdout=subprocess.PIPE)
                      for n in range(FLEET)]
        for worker in self.fleet:
            assert worker.stdout is not None and worker.stdout.readline().startswith("ready")
        queues = TaskStreams(Redis.from_url(self.server.url, decode_responses=True))
        queues.ensure_groups()
        for n in range(30):  # a backlog nobody consumes: queue panels have data
            queues.enqueue(("high", "medium", "low")[n % 3], {"payload": str(n)})
        agents = [self._agent() for _ in range(4)]
        self.webhook = Webhook()
        self.alertmanager, am = services.start_alertmanager(workdir, self._alertmanager())
        self.processes.append(am)
        rules = workdir / "rules.yaml"
        subprocess.run([sys.executable, str(ROOT / "alerts" / "generate.py"), "--overrides",
                        str(ROOT / "tests" / "deployed-overrides.yaml"), "--output", str(rules)],
                       check=True, env=child_env())
        self.three = services.start_prometheus(workdir, [
            {"job_name": "tqmon", "static_configs": [{"targets": agents[:2]}]},
            {"job_name": "telegraf", "static_configs": [{"targets": agents[2:3],
                                                         "labels": {"host": "web-3"}}]},
        ], rules, alertmanager=self.alertmanager, name="prometheus-three")
        self.one = services.start_prometheus(workdir, [
            {"job_name": "tqmon", "static_configs": [{"targets": agents[3:]}]},
        ], rules, name="prometheus-one")
        self.processes += [self.three.process, self.one.process]

    def _spawn(self, command: list[str], **kwargs: Any) -> subprocess.Popen:
        proc = subprocess.Popen(command, env=child_env(), text=True, start_new_session=True,
                                **kwargs)
        self.processes.append(proc)
        return proc

    def _agent(self) -> str:
        port = devcluster.free_port()
        env = {k: v for k, v in child_env().items() if not k.startswith("TQMON_")}
        proc = subprocess.Popen([sys.executable, "-m", "tqmon", "--redis-url", self.server.url,
                                 "--cluster-name", "deployed", "--heartbeat-ttl", str(TTL),
                                 "--timeout", "1", "--listen", f"127.0.0.1:{port}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(proc)
        return f"127.0.0.1:{port}"

    def _alertmanager(self) -> dict[str, Any]:
        """docs/recipes/alertmanager.yml with the test's receiver and timings of seconds."""
        config = yaml.safe_load((ROOT / "docs" / "recipes" / "alertmanager.yml").read_text())
        config["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
        for receiver in config["receivers"]:
            for hook in receiver["webhook_configs"]:
                hook["url"] = f"{self.webhook.url}/{receiver['name']}"
        return config

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL if proc in self.fleet else signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.webhook.server.shutdown()
        self.server.stop()


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployment]:
    with tempfile.TemporaryDirectory(prefix="tqmon-deployed-") as workdir:
        deployment = Deployment(Path(workdir))
        try:
            for prometheus, agents in ((deployment.three, 3), (deployment.one, 1)):
                devcluster.wait_for(
                    lambda p=prometheus, n=agents: len(p.query("tqmon_build_info")) == n
                    and len(p.query("worker_up")) == n * FLEET, 30, "first scrapes", 0.2)
            # 20 scrapes: a rate over the dashboards' minute is extrapolated from 20 s of data,
            # not from two samples
            for prometheus in (deployment.three, deployment.one):
                devcluster.wait_for(
                    lambda p=prometheus: min(float(r["value"][1]) for r in p.query(
                        "count_over_time(tqmon_build_info[1m])")) >= 20, 60, "20 scrapes", 0.5)
            yield deployment
        finally:
            deployment.stop()


def _fleet_queries() -> list[tuple[str, str]]:
    """Every dashboard query that reads fleet facts (tqmon_* self-metrics are per agent)."""
    dashboard = json.loads((ROOT / "dashboards" / "tqmon.json").read_text())
    cat, found = catalog.default(), []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            if all(m.startswith("tqmon_") for m in views.check_expr(expr, cat)):
                continue
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((panel["title"], expr))
    return found


def _values(prometheus: services.Prometheus, expr: str) -> dict[frozenset, float]:
    return {frozenset(r["metric"].items()): float(r["value"][1])
            for r in prometheus.query(expr)}


def _same(a: float, b: float, rate: bool) -> bool:
    """Equal but for when each agent was scraped: a second of age or uptime, the agents' own
    connections and commands; for a rate over the few seconds of data a test has, the phase
    of its samples. Copies counted N times would be N times the value, far outside."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= max(1.5, (0.4 if rate else 0.25) * max(abs(a), abs(b)))


def _compare_dashboards(deployed: Deployment) -> None:
    queries = _fleet_queries()
    assert len(queries) > 30
    differ = []
    for title, expr in queries:
        three, one = _values(deployed.three, expr), _values(deployed.one, expr)
        rate = "rate(" in expr or "increase(" in expr
        if three.keys() != one.keys() or not all(_same(three[k], one[k], rate) for k in three):
            differ.append(f"{title}: {expr}\n  3 agents: {three}\n  1 agent:  {one}")
    assert differ == [], "\n".join(differ)


def _firing(prometheus: services.Prometheus) -> list[tuple[str, tuple]]:
    return sorted((a["labels"]["alertname"], tuple(sorted(a["labels"].items())))
                  for a in prometheus.alerts() if a["state"] == "firing")


def test_every_dashboard_query_is_the_same_with_one_agent_or_three(deployed):
    _compare_dashboards(deployed)
    workers = deployed.three.query(
        "sum(max without (instance, job, host) (workers_alive))")
    assert float(workers[0]["value"][1]) == FLEET  # not 3 x 20


def test_a_healthy_fleet_notifies_nobody(deployed):
    time.sleep(3)  # every `for:` of the test rules has passed
    assert _firing(deployed.three) == [] and _firing(deployed.one) == []
    assert deployed.webhook.received == []


def test_half_the_fleet_killed_pages_once(deployed):
    for worker in deployed.fleet[:FLEET // 2]:
        worker.send_signal(signal.SIGKILL)
    devcluster.wait_for(lambda: deployed.webhook.firing("pager"), 60,
                        "the WorkersLost page", 0.2)
    # WorkerDown (for: 8s) fires now for each dead worker: inhibited, not notified
    for prometheus in (deployed.three, deployed.one):
        devcluster.wait_for(lambda p=prometheus: len(p.alerts("WorkerDown")) == FLEET // 2
                            and p.alert_states("WorkerDown") == {"firing"}, 30,
                            "WorkerDown to fire for the ten", 0.2)
    time.sleep(4)  # two group intervals: anything Alertmanager would send is out
    (page,) = deployed.webhook.firing("pager")
    assert [a["labels"]["alertname"] for a in page["alerts"]] == ["WorkersLost"]
    assert page["alerts"][0]["annotations"]["description"].startswith(
        "Pool billing lost 50% of the workers alive")
    chat = [a["labels"]["alertname"] for n in deployed.webhook.firing("chat")
            for a in n["alerts"]]
    assert "WorkerDown" not in chat
    # the same alerts in both Prometheus servers, each once, whatever the number of agents
    # (their evaluations are not in step: wait until both have seen the same)
    devcluster.wait_for(lambda: _firing(deployed.three) == _firing(deployed.one), 30,
                        "the same firing alerts in both", 0.2)
    names = [name for name, _ in _firing(deployed.three)]
    assert names.count("WorkersLost") == 1 and names.count("WorkerDown") == FLEET // 2
    _compare_dashboards(deployed)


def test_the_recipe_is_what_alertmanager_accepts():
    amtool = services.binary("amtool")
    result = subprocess.run([amtool, "check-config",
                             str(ROOT / "docs" / "recipes" / "alertmanager.yml")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
