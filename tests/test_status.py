"""`tqmon status` as a person uses it: against a real server with live and dead workers, piped
(plain text, JSON) and in a real terminal (tmux) for --watch, Ctrl-C included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import run_tqmon
from tqmon.heartbeat import Heartbeat
from tqmon.streams import TaskStreams

from devtools import devcluster

ROOT = Path(__file__).resolve().parent.parent
TTL = "2"  # --heartbeat-ttl: the live workers beat every 0.3 s, the ghosts once
JSON_KEYS = {"version", "tqmon_version", "time", "schema", "prefix", "cluster_name", "nodes",
             "sentinel", "replication", "workers", "queues", "collectors", "errors"}


@pytest.fixture(scope="module")
def fleet():
    """A server with 3 live workers in two pools, 2 dead ones, and a stream with work."""
    server = devcluster.start_standalone()
    client = server.client()
    live = [Heartbeat(client, name=name, worker_id=name, ttl=2, interval=0.3).start()
            for name in ("api-1", "api-2", "mailer-1")]
    for i in range(2):
        Heartbeat(client, name=f"ghost-{i}", worker_id=f"ghost-{i}", ttl=1, interval=0.5).beat()
    streams = TaskStreams(client)
    streams.ensure_groups()
    for i in range(4):
        streams.enqueue("high", {"n": i})
    streams.next("api-1", 1)
    devcluster.wait_for(lambda: _status(server, "--json").returncode == 0 and json.loads(
        _status(server, "--json").stdout)["workers"]["dead"] == 2, 30, "ghosts dead")
    yield server
    for heartbeat in live:
        heartbeat.stop()
    server.stop()


def cells(line: str) -> list[str]:
    """The columns of a row, after its mark ("!!" for what is wrong, blank for what is fine)."""
    return line[3:].split()


def _status(server, *args: str, **kwargs):
    return run_tqmon("status", "--redis-url", server.url, "--read-only", "--heartbeat-ttl", TTL,
                     *args, check_output=False, **kwargs)


def test_plain_text_when_piped(fleet):
    result = _status(fleet)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out  # not a terminal: no colours
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "Redis: 1 of 1 node(s) up" in out
    assert "Workers: 3 alive, 2 dead" in out
    rows = [line for line in out.splitlines() if cells(line)[:1] and
            cells(line)[0] in ("ghost-0", "ghost-1", "api-1", "api-2", "mailer-1")]
    assert [cells(r)[1] for r in rows][:2] == ["dead", "dead"], out  # the dead first
    assert rows[0].startswith("!! ") and rows[-1].startswith("   ")
    high = next(line for line in out.splitlines() if cells(line)[:1] == ["high"])
    assert cells(high)[1:5] == ["workers", "4", "3", "1"], high  # depth, lag, pending
    assert "Collectors: nodes ok" in out and result.stderr == ""


def test_json_document(fleet):
    result = _status(fleet, "--json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert set(doc) == JSON_KEYS and doc["version"] == 1
    assert doc["nodes"][0]["up"] is True and doc["nodes"][0]["role"] == "master"
    workers = doc["workers"]
    assert (workers["alive"], workers["dead"]) == (3, 2)
    assert [w["up"] for w in workers["list"]] == [False, False, True, True, True]
    assert {p["pool"]: (p["alive"], p["dead"]) for p in workers["pools"]} == {
        "api": (2, 0), "mailer": (1, 0), "ghost": (0, 2)}
    high = next(q for q in doc["queues"] if q["queue"] == "high")
    assert high["depth"] == 4 and high["groups"][0]["pending"] == 1
    assert {c["name"]: c["up"] for c in doc["collectors"]} == {
        "nodes": True, "workers": True, "queues": True}


def test_nothing_reached_is_exit_1():
    port = devcluster.free_port()
    result = run_tqmon("status", "--redis-url", f"redis://127.0.0.1:{port}", "--timeout", "1",
                       check_output=False)
    assert result.returncode == 1
    assert "Redis: 0 of 1 node(s) up" in result.stdout and "DOWN" in result.stdout
    assert "connection refused" in result.stdout.lower() and result.stderr == ""
    doc = json.loads(run_tqmon("status", "--json", "--redis-url", f"redis://127.0.0.1:{port}",
                               check_output=False).stdout)
    assert doc["nodes"][0]["up"] is False and doc["errors"]


def test_big_fleet_shows_pools_and_the_dead_only():
    server = devcluster.start_standalone()
    live: list[Heartbeat] = []
    try:
        client = server.client()
        live = [Heartbeat(client, name=f"{pool}-{i}", worker_id=f"{pool}-{i}", ttl=2,
                          interval=0.5).start()
                for pool in ("api", "mailer", "report") for i in range(20)]
        for i in range(30):
            Heartbeat(client, name=f"batch-{i}", worker_id=f"batch-{i}", ttl=1,
                      interval=0.5).beat()
        devcluster.wait_for(lambda: "30 dead" in _status(server).stdout, 30, "batch dead")
        out = _status(server).stdout
        assert "Workers: 60 alive, 30 dead" in out
        pool_rows = [cells(line) for line in out.splitlines() if cells(line)[:1] and
                     cells(line)[0] in ("api", "mailer", "report", "batch")]
        assert pool_rows[0][:3] == ["batch", "0", "30"]  # the pool with dead workers first
        listed = [line for line in out.splitlines() if " dead " in line and "batch-" in line]
        assert len(listed) == 20 and "... and 10 more dead worker(s)" in out
        assert not any("api-" in line for line in out.splitlines())
        assert all(len(line) <= 80 for line in out.splitlines())
    finally:
        for heartbeat in live:
            heartbeat.stop()
        server.stop()


def test_subcommand_flags_do_not_reach_the_plugin(fleet):
    result = run_tqmon("status", "--listen", ":9999", "--redis-url", fleet.url,
                       check_output=False)
    assert result.returncode == 2 and "exec plugin" in result.stderr
    assert run_tqmon("status", "--watch", "0", check_output=False).returncode == 2
    plain = run_tqmon("--redis-url", fleet.url, "--read-only")  # bare tqmon is unchanged
    assert plain.returncode == 0 and plain.value("workers_alive", pool="api") == 2


def test_watch_json_is_a_document_a_line_until_sigint(fleet):
    proc = subprocess.Popen([sys.executable, "-m", "tqmon", "status", "--watch", "0.2", "--json",
                             "--read-only", "--heartbeat-ttl", TTL, "--redis-url", fleet.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        docs = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert docs[0]["time"] < docs[1]["time"] and docs[1]["workers"]["dead"] == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0 and proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait(10)


# ---- a real terminal -------------------------------------------------------------------------

pytestmark_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


class Tmux:
    """A tmux server of its own (its own socket), 80x40, running one command."""

    def __init__(self, command: str, env: dict[str, str] | None = None) -> None:
        self.socket = f"tqmon-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        shell = f"cd {ROOT} && {exports} {command}; echo EXIT=$?; sleep 60"
        self._tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "40", shell)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout

    def screen(self, escapes: bool = False) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t", *(["-e"] if escapes else []))

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def alternate(self) -> bool:
        return self._tmux("display-message", "-p", "-t", "t",
                          "#{alternate_on}").strip() == "1"

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)


@pytestmark_tmux
@pytest.mark.parametrize("no_color", [False, True])
def test_watch_in_a_terminal_redraws_until_ctrl_c(fleet, no_color):
    env = {"PYTHONPATH": str(ROOT)}
    if no_color:
        env["NO_COLOR"] = "1"
    term = Tmux(f"{sys.executable} -m tqmon status --watch 0.3 --read-only --heartbeat-ttl {TTL} "
                f"--redis-url {fleet.url}", env)
    try:
        devcluster.wait_for(lambda: "Workers: 3 alive, 2 dead" in term.screen(), 30, "a frame")
        first = term.screen()
        assert term.alternate()  # drawn in the alternate screen
        assert all(len(line) <= 80 for line in first.splitlines())
        stamp = next(line for line in first.splitlines() if line.startswith("tqmon status"))
        devcluster.wait_for(lambda: stamp not in term.screen(), 30, "a redraw")
        frame = term.screen()
        assert frame.count("tqmon status") == 1  # redrawn in place, not scrolled
        assert ("\x1b[" in term.screen(escapes=True).replace("\x1b[0m", "")) is not no_color
        assert ("✘" in frame) is not no_color  # symbols only with colours
        term.keys("C-c")
        devcluster.wait_for(lambda: "EXIT=0" in term.screen(), 30, "exit 0 after Ctrl-C")
        assert not term.alternate()  # the terminal is restored
        assert "Traceback" not in term.screen()
    finally:
        term.kill()


@pytestmark_tmux
def test_status_without_watch_in_a_terminal_has_colour(fleet):
    term = Tmux(f"{sys.executable} -m tqmon status --read-only --heartbeat-ttl {TTL} "
                f"--redis-url {fleet.url}",
                {"PYTHONPATH": str(ROOT)})
    try:
        devcluster.wait_for(lambda: "EXIT=0" in term.screen(), 30, "status to finish")
        assert "\x1b[32m" in term.screen(escapes=True) and "✔" in term.screen()
    finally:
        term.kill()
