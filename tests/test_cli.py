"""Usage and config errors: exit 2, one line on stderr, no traceback; precedence of sources."""

from __future__ import annotations

import pytest
from helpers import run_tqmon
from tqmon.config import Config, ConfigError, Target, load


@pytest.mark.parametrize(("args", "message"), [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--redis-url", "http://example:80"], "invalid Redis URL"),
    (["--redis-url", "redis://host:notaport"], "invalid Redis URL"),
    (["--redis-url", "redis://:pw-in-bad-url@host:99999"], "invalid Redis URL"),
    (["--timeout", "abc"], "invalid float value"),
    (["--timeout", "-1"], "timeout must be a positive number"),
    (["--format", "json"], "invalid choice"),
    (["--collectors", "nodes,nope"], "unknown collector 'nope'"),
    (["--interval", "5"], "--interval needs --textfile"),
    (["--config", "/nonexistent/tqmon.yaml"], "cannot read config file"),
    (["--tls-cert-file", "/etc/hostname", "--redis-url", "rediss://h:1"],
     "--tls-cert-file and --tls-key-file go together"),
])
def test_usage_errors_exit_2_with_one_line(args, message):
    result = run_tqmon(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("tqmon: error: ")
    assert message in result.stderr
    assert "pw-in-bad-url" not in result.stderr


@pytest.mark.parametrize(("content", "message"), [
    ("redis_url: [unclosed", "is not valid YAML at line"),
    ("- a list\n", "must be a mapping"),
    ("colectors: nodes\n", "unknown option 'colectors'"),
    ("timeout: soon\n", "timeout must be a number"),
])
def test_bad_config_file(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    result = run_tqmon("--config", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_help_and_version():
    assert run_tqmon("--help", check_output=False).returncode == 0
    version = run_tqmon("--version", check_output=False)
    assert version.returncode == 0 and version.stdout.startswith("tqmon ")


def test_flags_win_over_env_over_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("redis_url: [redis://file:1]\ncluster_name: file\ntimeout: 2\n"
                    "username: fileuser\n")
    env = {"TQMON_CONFIG": str(path), "TQMON_REDIS_URL": "redis://env:2,redis://env:3"}
    config = load(["--cluster-name", "flag"], env)
    assert config.targets == (Target("env", 2, False), Target("env", 3, False))
    assert config.cluster_name == "flag" and config.timeout == 2.0
    assert config.username == "fileuser"
    config = load(["--redis-url", "redis://flag:4"], env)
    assert config.targets == (Target("flag", 4, False),)
    config = load([], {"TQMON_CONFIG": str(path)})
    assert config.targets == (Target("file", 1, False),)


def test_defaults():
    config = load([], {})
    assert config == Config()
    assert config.targets == (Target("127.0.0.1", 6379, False),)
    assert config.timeout <= 4


def test_password_sources_and_precedence(tmp_path):
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    url = "redis://user:from%40url@h:1"
    assert load(["--redis-url", url], {}).password == "from@url"
    assert load(["--redis-url", url], {}).username == "user"
    env = {"TQMON_REDIS_PASSWORD": "from-env"}
    assert load(["--redis-url", url], env).password == "from-env"
    assert load(["--password-file", str(pw_file)], env).password == "from-file"
    assert "from" not in repr(load(["--password-file", str(pw_file)], env))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load(["--password-file", str(empty)], {})
