"""Real Prometheus and Alertmanager processes on loopback, for the demo stack and the tests.

Each runs from the Debian binaries (`.ci/system-deps` installs them) in a working directory of
its own, logs to a file there, and answers through its HTTP API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import devcluster


def binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise devcluster.DevClusterError(f"{names[0]} not found: run .ci/system-deps")


def spawn(workdir: Path, name: str, command: list[str],
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"]
                if name is None or a["labels"].get("alertname") == name]

    def alert_states(self, name: str) -> set[str]:
        return {a["state"] for a in self.alerts(name)}


def start_prometheus(workdir: Path, scrape_configs: list[dict[str, Any]], rules: Path | None,
                     interval: str = "1s", alertmanager: str | None = None,
                     name: str = "prometheus") -> Prometheus:
    """Prometheus scraping and evaluating every `interval`, alerting to `alertmanager`."""
    port = devcluster.free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": scrape_configs,
    }
    if rules is not None:
        config["rule_files"] = [str(rules.resolve())]
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [
            {"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}]}
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    process = spawn(workdir, name, [
        binary("prometheus"), f"--config.file={path}",
        f"--storage.tsdb.path={workdir / (name + '-tsdb')}",
        f"--web.listen-address=127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    devcluster.wait_for(lambda: _ready(url), 30, f"{name} ready", 0.2)
    return Prometheus(url, process)


def start_alertmanager(workdir: Path, config: dict[str, Any]) -> tuple[str, subprocess.Popen]:
    """Alertmanager with `config`, alone (no cluster gossip); returns its URL and process."""
    port, path = devcluster.free_port(), workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    process = spawn(workdir, "alertmanager", [
        binary("prometheus-alertmanager", "alertmanager"), f"--config.file={path}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="])
    url = f"http://127.0.0.1:{port}"
    devcluster.wait_for(lambda: _ready(url), 30, "Alertmanager ready", 0.2)
    return url, process
