"""Config files are parsed with bounds (issue 22): a deeply nested `--config`, `TQMON_CONFIG` or
web config file, or a number too long to be one, is a config error (one line, exit 2), never
`internal error: RecursionError` / `ValueError`."""

from __future__ import annotations

import os

import pytest
from helpers import run_tqmon

from devtools import devcluster

DEEP = "cluster_name: " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_BLOCK = "cluster_name:\n" + "".join("  " * i + "- \n" for i in range(300))
LONG = "1" * 5000


def _one_line_exit_2(result) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("tqmon: error: "), \
        result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("body", "said"), [
    (DEEP, "nested deeper"),
    (DEEP_BLOCK, "nested deeper"),
    ("cluster_name:\n" + "".join("  " * i + "a:\n" for i in range(1, 300)), "nested deeper"),
    (f"timeout: {LONG}\n", "out of range"),
    (f"max_redeliveries: {LONG}\n", "out of range"),
    (f"max_worker_series: {'9' * 25}\n", "max-worker-series"),
    (f"timeout: {LONG}.5\n", "timeout"),
    ("timeout: 1e5000\n", "timeout"),
    ('password_file: "/etc/pass\\0word"\n', "NUL"),
    ('redis_url: rediss://h:1\ntls_ca_file: "/tmp/ca\\0.crt"\n', "NUL"),
])
def test_hostile_config_file_is_one_line_exit_2(tmp_path, body, said):
    path = tmp_path / "c.yaml"
    path.write_text(body)
    result = run_tqmon("--config", str(path), timeout=20)
    _one_line_exit_2(result)
    assert said in result.stderr


def test_hostile_tqmon_config_env(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(DEEP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    result = run_tqmon(env={**env, "TQMON_CONFIG": str(path)}, timeout=20)
    _one_line_exit_2(result)


@pytest.mark.parametrize("args", [
    ["--max-worker-series", LONG],
    ["--max-redeliveries", LONG],
    ["--timeout", LONG],
])
def test_out_of_range_flags(args):
    _one_line_exit_2(run_tqmon(*args, timeout=20))


@pytest.mark.parametrize("body", [
    "basic_auth_users: " + "[" * 5000 + "]" * 5000 + "\n",
    "tls_server_config:\n  min_version: " + LONG + "\n",
    'tls_server_config:\n  cert_file: "/tmp/x\\0"\n  key_file: /tmp/y\n',
])
def test_hostile_web_config_file(tmp_path, body):
    path = tmp_path / "web.yml"
    path.write_text(body)
    result = run_tqmon("--listen", f"127.0.0.1:{devcluster.free_port()}",
                       "--web-config-file", str(path), timeout=20)
    _one_line_exit_2(result)
    assert "web config file" in result.stderr
