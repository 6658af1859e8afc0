"""--listen: /metrics per scrape, concurrent scrapes sharing one collection, /healthz, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from helpers import TQMON, check_exposition

from devtools import devcluster


def _get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    port = devcluster.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    proc = subprocess.Popen([*TQMON, "--listen", f"127.0.0.1:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if _get(base + "/healthz")[0] == 200:
                return proc, base
        except OSError:
            pass
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


def test_metrics_healthz_and_formats(standalone):
    proc, base = _serve("--redis-url", standalone.url)
    try:
        status, content_type, body = _get(base + "/metrics")
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        samples = check_exposition(body)
        assert any(s.name == "redis_cluster_node_up" and s.value == 1 for s in samples)
        status, content_type, body = _get(base + "/metrics",
                                          accept="application/openmetrics-text")
        assert content_type.startswith("application/openmetrics-text")
        check_exposition(body, "openmetrics")
        assert _get(base + "/healthz")[:1] == (200,)
        assert _get(base + "/nope")[0] == 404
        assert _get(base + "/metrics?x=1")[0] == 200
    finally:
        err = _stop(proc)
    assert err == "" and "Traceback" not in err


def test_concurrent_scrapes_share_one_collection(fresh_replicated):
    """A stopped replica makes each collection last until the deadline; scrapes arriving
    meanwhile must wait for that one collection instead of starting their own."""
    master, replica = fresh_replicated
    proc, base = _serve("--redis-url", master.url, "--timeout", "2",
                        "--collectors", "nodes")
    stats = master.client(protocol=2)
    try:
        replica.signal(signal.SIGSTOP)
        before = stats.info("commandstats").get("cmdstat_info", {}).get("calls", 0)
        results: list[tuple[int, str, str]] = []
        threads = [threading.Thread(target=lambda: results.append(_get(base + "/metrics")))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join()
        after = stats.info("commandstats")["cmdstat_info"]["calls"]
    finally:
        replica.signal(signal.SIGCONT)
        _stop(proc)
    assert [r[0] for r in results] == [200] * 8
    assert len({r[2] for r in results}) == 1  # one collection's output, shared
    # one collection = INFO replication (discovery) + INFO (nodes); +1 for our own `before`
    assert after - before == 2 + 1


def test_port_in_use_is_a_config_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([*TQMON, "--listen", f"127.0.0.1:{port}"], capture_output=True,
                              text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith("tqmon: error: cannot listen on 127.0.0.1:")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [["--listen", "nohost"], ["--listen", "h:99999"],
                                  ["--listen", "127.0.0.1:1", "--textfile", "/tmp/x.prom"]])
def test_bad_listen_flags(args):
    proc = subprocess.run([*TQMON, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.startswith("tqmon: error: --listen")
