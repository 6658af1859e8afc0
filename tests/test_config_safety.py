"""The configuration cannot turn safety off by accident (issue 11, defects 7-9): every value has
its declared type or the run is a config error (exit 2, one line naming the key); what is read
is bounded (size, kind of file, YAML aliases); passwords never leak, whatever their spelling."""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pytest
from helpers import TQMON, run_tqmon
from tqmon import cli


def _config_error(result, key: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("tqmon: error: ")
    assert key in result.stderr, result.stderr


@pytest.mark.parametrize(("line", "key"), [
    ('tls_insecure: "false"', "tls_insecure"),
    ("tls_insecure: 'no'", "tls_insecure"),
    ('tls_insecure: "off"', "tls_insecure"),
    ('tls_insecure: "0"', "tls_insecure"),
    ('requeue_orphans: "no"', "requeue_orphans"),
    ('read_only: "false"', "read_only"),
    ("read_only: 1", "read_only"),
    ("textfile: true", "textfile"),
    ("listen: 9840", "listen"),
    ("cluster_name: [a, b]", "cluster_name"),
    ("prefix: null", "prefix"),
    ("prefix: 7", "prefix"),
    ("username: {a: 1}", "username"),
    ("password_file: 12", "password_file"),
    ("tls_server_name: [x]", "tls_server_name"),
    ("timeout: true", "timeout"),
    ('timeout: "3"', "timeout"),
    ("heartbeat_ttl: [1]", "heartbeat_ttl"),
    ("dead_retention: {}", "dead_retention"),
    ("collectors: 5", "collectors"),
    ("group: [workers, 5]", "group"),
    ("queue: {high: 5}", "queue"),
    ("schema: 1", "schema"),
    ("format: null", "format"),
    ("max_redeliveries: 2.5", "max_redeliveries"),
    ("max_redeliveries: true", "max_redeliveries"),
    ("redis_url: 5", "redis_url"),
    ("dramatiq_queues: [[a]]", "dramatiq_queues"),
])
def test_every_value_has_its_declared_type(tmp_path, line, key):
    path = tmp_path / "c.yaml"
    path.write_text("redis_url: rediss://127.0.0.1:1\n" * ("redis_url" not in line) + line + "\n")
    _config_error(run_tqmon("--config", str(path), timeout=10), key)


def test_real_booleans_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("redis_url: redis://127.0.0.1:1\nread_only: false\nrequeue_orphans: false\n"
                    "timeout: 0.5\n")
    result = run_tqmon("--config", str(path), "--collectors", "nodes")
    assert result.returncode == 0


@pytest.mark.parametrize(("args", "key"), [
    (["--timeout", "1e10"], "timeout"),
    (["--timeout", "nan"], "timeout"),
    (["--heartbeat-ttl", "1e300"], "heartbeat-ttl"),
    (["--interval", "1e12", "--textfile", "/tmp/x.prom"], "interval"),
    (["--redis-url", "redis://127.0.0.1:0"], "port"),
    (["--max-redeliveries", "-1"], "max-redeliveries"),
])
def test_ranges_are_validated(args, key):
    _config_error(run_tqmon(*args, timeout=10), key)


@pytest.mark.parametrize("flag", ["--cluster-name", "--queue", "--prefix", "--group"])
def test_non_utf8_arguments_are_config_errors(flag):
    value = b"high=\xff\xfe" if flag == "--queue" else b"bad\xff"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    proc = subprocess.run([*(a.encode() for a in TQMON), flag.encode(), value],
                          capture_output=True, timeout=10, env=env)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, stderr
    assert stderr.count("\n") == 1 and flag.lstrip("-").replace("-", "_") in stderr.replace(
        "-", "_")
    assert "Traceback" not in stderr


def _quick(*args: str):
    started = time.monotonic()
    result = run_tqmon(*args, timeout=10)
    return result, time.monotonic() - started


def test_fifo_and_device_as_config_or_password_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args, key in [(["--config", str(fifo)], "config file"),
                      (["--password-file", str(fifo)], "password file"),
                      (["--config", "/dev/zero"], "config file"),
                      (["--password-file", "/dev/zero"], "password file"),
                      (["--config", str(tmp_path)], "config file")]:
        result, took = _quick(*args)
        _config_error(result, key)
        assert "not a regular file" in result.stderr
        assert took < 5


def test_huge_config_file_is_refused_quickly(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("cluster_name: x\n" + "# filler\n" * 1_200_000)
    result, took = _quick("--config", str(path))
    _config_error(result, "config file")
    assert "too large" in result.stderr and took < 5


def test_yaml_alias_bomb_is_refused(tmp_path):
    levels = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"&{name} [{', '.join(['*' + prev] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("cluster_name: [" + ", ".join(levels) + "]\n")
    result, took = _quick("--config", str(path))
    _config_error(result, "alias")
    assert took < 5


@pytest.mark.parametrize("secret", ["p@ss/w0rdTAIL", "p@ss?w0rdTAIL", "p@ss#w0rdTAIL",
                                    "x@y/z@TAILhost"])
def test_url_password_with_unencoded_at_is_refused_without_showing_it(tmp_path, secret):
    path = tmp_path / "c.yaml"
    path.write_text(f"redis_url: redis://user:{secret}@127.0.0.1:6379\n")
    result = run_tqmon("--config", str(path), timeout=10)
    _config_error(result, "redis_url")
    assert "URL-encode" in result.stderr
    for part in ("p@ss", "w0rd", "TAIL", "ss/", "ss?", "ss#", "y/z"):
        assert part not in result.stderr


def test_url_encoded_password_is_redacted_too():
    handler_filter = cli._Redact("p@ss/w0rd")
    for text in ("auth p@ss/w0rd failed", "url redis://u:p%40ss%2Fw0rd@h",
                 "url redis://u:p%40ss/w0rd@h"):
        record = logging.LogRecord("t", logging.WARNING, __file__, 1, text, (), None)
        handler_filter.filter(record)
        assert "w0rd" not in record.getMessage()
