"""Output modes: OpenMetrics, the atomic textfile, and the --interval loop's clean stop."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time

import pytest
from helpers import TQMON, check_exposition, read_textfile, run_tqmon
from redis import Redis
from tqmon.heartbeat import Heartbeat


def test_openmetrics_format(standalone):
    result = run_tqmon("--redis-url", standalone.url, "--format", "openmetrics")
    assert result.returncode == 0
    assert result.stdout.endswith("# EOF\n")
    assert "# UNIT redis_cluster_memory_bytes bytes" in result.stdout
    assert "# TYPE redis_cluster_node info" in result.stdout
    assert result.value("redis_cluster_node_up", node_id=standalone.address) == 1
    assert "_created" not in result.stdout


def test_no_created_series_in_text_format(standalone):
    result = run_tqmon("--redis-url", standalone.url)
    assert "_created" not in result.stdout


def test_textfile_once(standalone, tmp_path):
    path = tmp_path / "tqmon.prom"
    result = run_tqmon("--redis-url", standalone.url, "--textfile", str(path))
    assert result.returncode == 0 and result.stdout == ""
    assert read_textfile(path).value("redis_cluster_node_up", node_id=standalone.address) == 1
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path)) == ["tqmon.prom"]


def test_textfile_in_missing_directory_is_config_error(tmp_path):
    result = run_tqmon("--textfile", str(tmp_path / "missing" / "x.prom"))
    assert result.returncode == 2 and "existing directory" in result.stderr


def _start_loop(url: str, path, interval: str = "0.02") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    return subprocess.Popen([*TQMON, "--redis-url", url, "--textfile", str(path),
                             "--interval", interval, "--timeout", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def test_concurrent_reader_never_sees_a_partial_file(standalone, tmp_path):
    path = tmp_path / "tqmon.prom"
    proc = _start_loop(standalone.url, path)
    contents: set[str] = set()
    reads = 0
    deadline, reading_until = time.monotonic() + 30, None  # a loaded machine starts slowly
    try:
        while (now := time.monotonic()) < deadline and not (
                reading_until and now > reading_until and len(contents) > 5):
            try:
                text = path.read_text()
            except FileNotFoundError:
                time.sleep(0.01)  # not started yet: leave the CPU to the loop's start-up
                continue
            reading_until = reading_until or now + 4  # 4 s of reads once it writes
            reads += 1
            assert text.endswith('tqmon_build_info{version="0.1.0"} 1.0\n'), text[-200:]
            contents.add(text)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err
    assert len(contents) > 5, (reads, len(contents))  # the file really was rewritten meanwhile
    for text in random.sample(sorted(contents), 5):
        check_exposition(text)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_interval_leaves_complete_file_and_no_temp(standalone, tmp_path, signum):
    path = tmp_path / "tqmon.prom"
    for attempt in range(4):
        path.unlink(missing_ok=True)
        proc = _start_loop(standalone.url, path, interval="0.01")
        started = time.monotonic() + 30  # the first file: the loop runs (a loaded machine)
        while not path.exists() and time.monotonic() < started and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(0.05 + 0.013 * attempt)  # land at different points of the write cycle
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert err == ""
        assert sorted(os.listdir(tmp_path)) == ["tqmon.prom"]
        assert read_textfile(path).value("redis_cluster_node_up",
                                         node_id=standalone.address) == 1


def _wait_node_up(path, address: str, value: str) -> None:
    """Until the loop's file says the node's `redis_cluster_node_up` is `value`."""
    sample = re.compile(rf'^redis_cluster_node_up\{{[^}}]*node_id="{re.escape(address)}"[^}}]*\}} '
                        rf'{re.escape(value)}$', re.MULTILINE)
    deadline = time.monotonic() + 30  # a loaded machine: seconds to start, --timeout 1 each
    while True:
        try:
            if sample.search(path.read_text()):
                return
        except FileNotFoundError:
            pass
        assert time.monotonic() < deadline, f"no node_up {value} in {path}"
        time.sleep(0.05)


def test_interval_keeps_going_while_redis_is_down_and_back(standalone, tmp_path):
    path = tmp_path / "tqmon.prom"
    proc = _start_loop(standalone.url, path, interval="0.1")
    try:
        _wait_node_up(path, standalone.address, "1.0")
        standalone.signal(signal.SIGSTOP)
        _wait_node_up(path, standalone.address, "0.0")
        down = read_textfile(path)
        standalone.signal(signal.SIGCONT)
        _wait_node_up(path, standalone.address, "1.0")
        up = read_textfile(path)
    finally:
        standalone.signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert down.value("redis_cluster_node_up", node_id=standalone.address) == 0
    assert up.value("redis_cluster_node_up", node_id=standalone.address) == 1
    assert proc.returncode == 0


@pytest.mark.parametrize("command", [[], ["status"]])
def test_broken_pipe_is_one_line_exit_1(standalone, command):
    """`tqmon | true`: the reader left before the output was written (issue 22)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    line = " ".join([*TQMON, *command, "--redis-url", standalone.url])
    proc = subprocess.run(["bash", "-c", f"{line} | true; exit ${{PIPESTATUS[0]}}"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot write output" in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", [[], ["status"], ["doctor"]])
def test_closed_stdout_is_one_line_exit_1(standalone, command):
    """`tqmon >&-` (issue 22): no `internal error: AttributeError` and no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    proc = subprocess.run([*TQMON, *command, "--redis-url", standalone.url], stdout=None,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=30,
                          preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"tqmon{' ' + command[0] if command else ''}: error: cannot write " \
        "output: standard output is closed\n", proc.stderr


def test_parallel_reads_dont_block_each_other(standalone, tmp_path):
    """Two loops writing two files in one directory never clobber each other's temp files."""
    a, b = tmp_path / "a.prom", tmp_path / "b.prom"
    procs = [_start_loop(standalone.url, a), _start_loop(standalone.url, b)]
    deadline = time.monotonic() + 30  # both loops have written (a loaded machine imports slowly)
    while not (a.exists() and b.exists()) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # then several rewrites each, side by side
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.communicate(timeout=10)
        assert proc.returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["a.prom", "b.prom"]


def test_self_metrics_say_when_and_how_much(standalone):
    """tqmon_series counts the sample lines of the output, histogram buckets, sums and counts
    included (what Datadog's max_returned_metrics counts); the timestamp is when it ended."""
    client = Redis.from_url(standalone.url)
    with Heartbeat(client, name="series-w") as beat:
        beat.task_finished(0.2, task_type="t", priority="high")  # a histogram series
        try:
            before = time.time()
            result = run_tqmon("--redis-url", standalone.url)
            after = time.time()
        finally:
            client.delete("{tq}:latency")
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert any(line.startswith("task_processing_latency_seconds_bucket") for line in lines)
    assert result.value("tqmon_series") == len(lines)
    assert before <= result.value("tqmon_last_collection_timestamp_seconds") <= after
