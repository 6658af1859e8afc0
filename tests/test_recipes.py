"""The integration recipes in docs/recipes/ run as written, with real parsers and node_exporter:
only the binary path, the Redis address and the textfile directory are swapped for the test's."""

from __future__ import annotations

import configparser
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import tomllib
import yaml
from helpers import check_exposition, run_tqmon
from redis import Redis
from tqmon import catalog
from tqmon.heartbeat import Heartbeat
from tqmon.streams import TaskStreams

from devtools import devcluster

RECIPES = Path(__file__).parent.parent / "docs" / "recipes"
PASSWORD = "recipe-Secret-pw"


@pytest.fixture(scope="module")
def server():
    started = devcluster.start_standalone(["--requirepass", PASSWORD])
    yield started
    started.stop()


def _localize(command: str | list[str], server: devcluster.RedisServer,
              textdir: Path | None = None) -> list[str]:
    """The recipe's command line with this machine's tqmon, Redis and textfile directory."""
    args = shlex.split(command) if isinstance(command, str) else list(command)
    assert args[0] == "/opt/tqmon/bin/tqmon"
    args = [sys.executable, "-m", "tqmon", *args[1:]]
    args = [server.url if a.startswith("redis://") else a for a in args]
    if textdir is not None:
        args = [str(textdir / Path(a).name) if a.endswith(".prom") else a for a in args]
    return args


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    env.update(extra)
    return env


def test_telegraf_exec_recipe(server):
    text = (RECIPES / "telegraf.conf").read_text()
    config = tomllib.loads(text)
    (plugin,) = config["inputs"]["exec"]
    assert plugin["data_format"] == "prometheus"
    (argv,) = plugin["commands"]  # Telegraf >= 1.39: an argv array, no shell
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    # the string form for older Telegraf, in a comment, is the same command
    (legacy,) = re.findall(r'^ *#   commands = \["(.*)"\]$', text, re.M)
    assert shlex.split(legacy) == argv
    telegraf_timeout = float(plugin["timeout"].removesuffix("s"))
    tqmon_timeout = float(argv[argv.index("--timeout") + 1])
    assert tqmon_timeout + 1 <= telegraf_timeout  # tqmon finishes before Telegraf kills it
    env = dict(item.split("=", 1) for item in plugin["environment"])
    assert env == {"TQMON_REDIS_PASSWORD": "${TQMON_REDIS_PASSWORD}"}  # from Telegraf's env
    assert PASSWORD not in " ".join(argv)
    assert plugin["tagexclude"] == ["host"]
    # names intact: the parser's default v2 layout needs metric_version = 2 on the output
    (output,) = config["outputs"]["prometheus_client"]
    assert output["metric_version"] == 2 and "prometheus_metric_version" not in plugin
    assert float(output["expiration_interval"].removesuffix("s")) > float(
        plugin["interval"].removesuffix("s"))
    proc = subprocess.run(_localize(argv, server), capture_output=True, text=True,
                          env=_env({"TQMON_REDIS_PASSWORD": PASSWORD}),
                          timeout=telegraf_timeout)
    assert proc.returncode == 0 and proc.stderr == ""
    samples = check_exposition(proc.stdout)  # the text format Telegraf's parser reads
    assert any(s.name == "redis_cluster_node_up" and s.value == 1
               and s.labels["cluster_name"] == "prod" for s in samples)
    assert not any(math.isnan(s.value) for s in samples)  # Telegraf would drop them


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((RECIPES / name).read_text())
    return parser


def _node_exporter(textdir: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    assert binary, "prometheus-node-exporter is required (see .ci/system-deps)"
    port = devcluster.free_port()
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}",
                             "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={textdir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/metrics"


def _scrape(url: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def _textfile_ok(text: str) -> None:
    assert re.search(r"^node_textfile_scrape_error 0$", text, re.M), text[-2000:]
    assert 'redis_cluster_node_up{cluster_name="prod"' in text


def test_systemd_timer_recipe_feeds_node_exporter(server, tmp_path):
    service, timer = _unit("tqmon.service"), _unit("tqmon.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert timer["Timer"]["OnUnitActiveSec"] == "15s"
    assert timer["Install"]["WantedBy"] == "timers.target"
    command = service["Service"]["ExecStart"]
    assert PASSWORD not in command and "--textfile" in command
    proc = subprocess.run(_localize(command, server, tmp_path), capture_output=True, text=True,
                          env=_env({"TQMON_REDIS_PASSWORD": PASSWORD}), timeout=30)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["tqmon.prom"]
    exporter, url = _node_exporter(tmp_path)
    try:
        _textfile_ok(_scrape(url))
    finally:
        exporter.terminate()
        exporter.wait(10)


def test_systemd_interval_recipe_feeds_node_exporter(server, tmp_path):
    service = _unit("tqmon-interval.service")
    command = service["Service"]["ExecStart"]
    args = _localize(command, server, tmp_path)
    args[args.index("--interval") + 1] = "0.2"  # 15 s in the recipe; the test has no patience
    loop = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env({"TQMON_REDIS_PASSWORD": PASSWORD}))
    exporter, url = _node_exporter(tmp_path)
    try:
        devcluster.wait_for(lambda: (tmp_path / "tqmon.prom").exists(), 30, "the textfile")
        for _ in range(3):  # node_exporter reads it whole while tqmon keeps rewriting it
            _textfile_ok(_scrape(url))
            time.sleep(0.3)
    finally:
        exporter.terminate()
        exporter.wait(10)
        loop.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
        _, err = loop.communicate(timeout=10)
    assert loop.returncode == 0 and err == ""
    assert sorted(os.listdir(tmp_path)) == ["tqmon.prom"]


def test_prometheus_scrape_recipe_is_valid(tmp_path):
    config = yaml.safe_load((RECIPES / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "tqmon"
    assert float(job["scrape_timeout"].removesuffix("s")) > 3  # above tqmon's default deadline
    rules = tmp_path / "tqmon-rules.yaml"
    rules.write_text("groups: []\n")
    config["rule_files"] = [str(rules)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    check = subprocess.run(["promtool", "check", "config", str(local)], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_datadog_recipe_covers_the_catalog():
    config = yaml.safe_load((RECIPES / "datadog-openmetrics.yaml").read_text())
    (instance,) = config["instances"]
    assert instance["openmetrics_endpoint"].endswith("/metrics")
    patterns = [re.compile(p) for p in instance["metrics"]]
    for spec in catalog.default().metrics.values():
        # the OpenMetrics check names counters and info metrics by their family name
        assert any(p.fullmatch(spec.family_name) for p in patterns), spec.name


@pytest.mark.parametrize("name", ["telegraf.conf", "tqmon.service", "tqmon.timer"])
def test_readme_shows_the_tested_recipes_verbatim(name):
    readme = (RECIPES.parent.parent / "README.md").read_text()
    assert (RECIPES / name).read_text() in readme


def test_datadog_recipe_sizes_max_returned_metrics(server):
    """The recipe's formula bounds what a run emits (tqmon_series counts it exactly), and the
    limit it sets is above the Datadog default that truncates a 250-worker fleet."""
    text = (RECIPES / "datadog-openmetrics.yaml").read_text()
    assert ("17 x Redis nodes + 7 x workers + 5 x pools + 8 x streams x groups + 22 x latency "
            "series + 40" in " ".join(line.strip("# ") for line in text.splitlines()))
    (instance,) = yaml.safe_load(text)["instances"]
    client = Redis.from_url(server.url, password=PASSWORD)
    workers = [Heartbeat(client, name=f"dd-{n}").start() for n in range(12)]
    try:
        for n, beat in enumerate(workers):
            beat.task_finished(0.1, task_type=f"type-{n % 3}", priority="high")
        TaskStreams(client).ensure_groups()
        result = run_tqmon("--redis-url", server.url,
                           env={"TQMON_REDIS_PASSWORD": PASSWORD})
    finally:
        for beat in workers:
            beat.stop()
        client.delete("{tq}:latency", *(f"{{tq}}:queue:{p}" for p in ("high", "medium", "low")))
    bound = 17 * 1 + 7 * 12 + 5 * 1 + 8 * 3 * 1 + 22 * 3 + 40
    emitted = result.value("tqmon_series")
    assert emitted == len([line for line in result.stdout.splitlines()
                           if line and not line.startswith("#")])
    assert emitted <= bound
    assert 17 + 7 * 250 + 7 * 3 + 22 * 12 + 40 > 2000 < instance["max_returned_metrics"]
