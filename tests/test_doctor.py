"""`tqmon doctor` against real servers, one test per finding a person meets: a user without
+xpending (and the printed ACL SETUSER line fixing it), a TLS certificate for another name, a
stopped node, a wrong prefix, RQ's keys under --schema native, a wrong password; and that it
writes nothing and never prints the password."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import run_tqmon
from test_auth_tls import _make_ca, _make_cert
from tqmon.heartbeat import Heartbeat
from tqmon.streams import TaskStreams

from devtools import devcluster

PASSWORD = "d0ctor-Pa55-xyz"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "heartbeat-contract.md"
# Redis commands that write; none may run during `tqmon doctor` (INFO commandstats says)
WRITES = ("hset", "hdel", "hincrby", "zadd", "zrem", "srem", "sadd", "del", "xadd", "xack",
          "xdel", "xgroup", "zremrangebyrank", "set", "expire", "evalsha")


def _documented(user: str) -> list[str]:
    """The `ACL SETUSER <user>` rules of docs/heartbeat-contract.md, as server arguments."""
    text = DOCS.read_text()
    block = text[text.index(f"ACL SETUSER {user} "):]
    block = block[:block.index("```")]
    return block.removeprefix("ACL SETUSER ").replace("PASSWORD", PASSWORD).split()


@pytest.fixture(scope="module")
def server():
    tqmon_rules = _documented("tqmon")
    no_xpending = ["noxp", *[r for r in tqmon_rules[1:] if r != "+xpending"]]
    server = devcluster.start_standalone(["--user", *tqmon_rules, "--user", *no_xpending])
    client = server.client()
    Heartbeat(client, name="api-1", worker_id="api-1", ttl=600, interval=60).beat()
    TaskStreams(client).ensure_groups()
    client.sadd("rq:workers", "rq:worker:old")  # RQ's keys, in another database
    client.execute_command("MOVE", "rq:workers", "1")
    yield server
    server.stop()


def doctor(*args: str, user: str | None = "tqmon", timeout: str = "2"):
    env = {"TQMON_REDIS_PASSWORD": PASSWORD} if user else {}
    extra = ("--username", user) if user else ()
    result = run_tqmon("doctor", *extra, "--timeout", timeout, *args, env=env, secret=PASSWORD,
                       check_output=False)
    assert result.stderr == "", result.stderr
    assert all(len(line) <= 80 for line in result.stdout.splitlines()
               if "ACL SETUSER" not in line), result.stdout
    return result


def lines(result, level: str, topic: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.split()[:2] == [level, topic]]


def test_documented_user_is_all_ok_and_nothing_is_written(server):
    admin = server.client()
    admin.config_resetstat()
    result = doctor("--redis-url", server.url)
    assert result.returncode == 0, result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    for collector in ("nodes", "workers", "queues"):
        assert any(f"{collector}: 'tqmon' may run all" in line
                   for line in lines(result, "ok", "acl")), result.stdout
    assert lines(result, "ok", "reach") and lines(result, "ok", "clock")
    assert lines(result, "ok", "auth") == ["ok   auth     authenticated as 'tqmon'"]
    assert lines(result, "WARN", "tls")  # no TLS is a warning: exit 0 all the same
    assert any("{tq}:workers" in line for line in lines(result, "ok", "keys"))
    assert len(lines(result, "ok", "streams")) == 3
    assert any("series" in line for line in lines(result, "ok", "series"))
    stats = admin.info("commandstats")
    assert not [w for w in WRITES if f"cmdstat_{w}" in stats], sorted(stats)
    assert "cmdstat_keys" not in stats


def test_user_without_xpending_gets_the_fix_line(server):
    result = doctor("--redis-url", server.url, user="noxp")
    assert result.returncode == 1
    assert lines(result, "FAIL", "acl") == [
        "FAIL acl      queues: user 'noxp' may not run xpending"], result.stdout
    fix = next(line.split("fix: ", 1)[1] for line in result.stdout.splitlines()
               if "ACL SETUSER" in line)
    assert fix == "ACL SETUSER noxp +xpending"
    admin = server.client()
    admin.execute_command(*fix.split())  # the line printed is the fix
    try:
        fixed = doctor("--redis-url", server.url, user="noxp")
        assert fixed.returncode == 0 and not lines(fixed, "FAIL", "acl"), fixed.stdout
    finally:
        admin.execute_command("ACL", "SETUSER", "noxp", "-xpending")


def test_admin_user_is_checked_with_acl_dryrun(server):
    result = doctor("--redis-url", server.url, user=None)
    assert "(ACL DRYRUN)" in result.stdout
    assert lines(result, "WARN", "auth")  # no password: a warning, not a problem
    assert result.returncode == 0, result.stdout


def test_wrong_prefix_names_the_right_one(server):
    result = doctor("--redis-url", server.url, "--prefix", "tqq", user=None)
    assert result.returncode == 1
    [keys] = lines(result, "FAIL", "keys")
    assert "prefix {tqq}: none of {tqq}:workers" in keys
    assert "fix: try --prefix tq" in result.stdout
    # the documented user may only touch {tq}: doctor says so, and what to grant
    limited = doctor("--redis-url", server.url, "--prefix", "tqq")
    assert limited.returncode == 1
    refused = lines(limited, "FAIL", "acl")
    assert any("may not touch {tqq}:workers" in line for line in refused), limited.stdout
    assert "ACL SETUSER tqmon ~{tqq}:*" in limited.stdout


def test_rq_keys_under_the_native_schema(server):
    result = doctor("--redis-url", f"{server.url}/1", "--collectors", "workers", user=None)
    assert result.returncode == 1
    assert "found `rq:workers`" in result.stdout and "fix: try --schema rq" in result.stdout
    rq = doctor("--redis-url", f"{server.url}/1", "--collectors", "workers", "--schema", "rq",
                user=None)
    assert any("--schema rq: found rq:workers" in line for line in lines(rq, "ok", "keys"))


def test_stopped_and_paused_nodes_are_problems_and_the_others_are_checked(server):
    stopped = devcluster.start_standalone()
    address = stopped.address
    stopped.stop()
    paused = devcluster.start_standalone()
    paused.signal(signal.SIGSTOP)
    try:
        result = doctor("--redis-url", server.url, "--redis-url", f"redis://{address}",
                        "--redis-url", paused.url, "--collectors", "nodes", timeout="1")
    finally:
        paused.signal(signal.SIGCONT)
        paused.stop()
    assert result.returncode == 1
    down = lines(result, "FAIL", "reach")
    assert len(down) == 2 and address in down[0] + down[1], result.stdout
    assert "connection refused" in result.stdout
    assert f"{paused.address} (unknown): no answer within --timeout 1s" in result.stdout
    assert any(server.address in line for line in lines(result, "ok", "reach"))
    assert result.elapsed < 10  # every check has its deadline: a paused node cannot hang it


def test_wrong_password_never_shows(server):
    result = run_tqmon("doctor", "--redis-url", server.url, "--username", "tqmon",
                       env={"TQMON_REDIS_PASSWORD": "wr0ng-" + PASSWORD}, secret=PASSWORD,
                       check_output=False)
    assert result.returncode == 1
    assert "authentication failed for user 'tqmon'" in result.stdout
    assert "wr0ng-" not in result.stdout


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("doctor-tls")
    ca = _make_ca(d, "ca")
    other_ca = _make_ca(d, "other-ca")
    key, cert = _make_cert(d, "server", ca, "DNS:redis.test")
    port = devcluster.free_port()
    server = devcluster.RedisServer(port, [
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca[1]),
        "--tls-auth-clients", "no"]).start()
    server.wait_ready()
    yield {"url": f"rediss://{server.address}", "ca": str(ca[1]), "other_ca": str(other_ca[1])}
    server.stop()


def test_certificate_for_another_name(tls_server):
    result = doctor("--redis-url", tls_server["url"], "--tls-ca-file", tls_server["ca"],
                    "--collectors", "nodes", user=None)
    assert result.returncode == 1
    assert any("the certificate names redis.test, not '127.0.0.1'" in line
               for line in lines(result, "FAIL", "tls")), result.stdout
    assert "fix: --tls-server-name redis.test" in result.stdout
    assert any("expires in" in line for line in lines(result, "WARN", "tls"))  # 2-day cert
    named = doctor("--redis-url", tls_server["url"], "--tls-ca-file", tls_server["ca"],
                   "--tls-server-name", "redis.test", "--collectors", "nodes", user=None)
    assert any("certificate verified for 'redis.test'" in line
               for line in lines(named, "ok", "tls")), named.stdout
    assert lines(named, "ok", "reach")


def test_tls_insecure_turns_verification_into_warnings(tls_server):
    result = doctor("--redis-url", tls_server["url"], "--tls-insecure", "--collectors", "nodes",
                    user=None)
    assert result.returncode == 0, result.stdout
    assert any("--tls-insecure" in line for line in lines(result, "WARN", "tls"))
    assert any("certificate not verified" in line for line in lines(result, "WARN", "tls"))


def test_certificate_from_an_unknown_ca(tls_server):
    result = doctor("--redis-url", tls_server["url"], "--tls-ca-file", tls_server["other_ca"],
                    "--tls-server-name", "redis.test", "--collectors", "nodes", user=None)
    assert result.returncode == 1
    assert any("certificate not verified" in line for line in lines(result, "FAIL", "tls"))
    assert "fix: give the CA that signed it" in result.stdout


def test_cluster_health(cluster):
    result = doctor("--redis-url", cluster.urls[0], "--collectors", "nodes", user=None)
    assert result.returncode == 0, result.stdout
    [health] = lines(result, "ok", "cluster")
    assert "state ok; slots assigned 16384" in health
    assert len(lines(result, "ok", "reach")) == 6


@pytest.mark.parametrize("schema", ["rq", "dramatiq", "celery", "arq", "sidekiq", "bullmq"])
def test_every_schema_is_checked(server, schema):
    result = doctor("--redis-url", server.url, "--schema", schema, user=None, timeout="3")
    assert result.returncode in (0, 1)
    for collector in ("nodes", "workers", "queues"):
        assert any(line.startswith(f"ok   acl      {collector}: 'default' may run all")
                   for line in result.stdout.splitlines()), result.stdout
    assert any(line.split()[1:2] == ["keys"] for line in result.stdout.splitlines())
    assert "try --schema native" in " ".join(result.stdout.split()), result.stdout


def test_series_against_datadogs_limit_and_the_cap():
    server = devcluster.start_standalone()
    try:
        client = server.client()
        for i in range(300):  # ~8 series a worker: past Datadog's 2,000
            Heartbeat(client, name=f"w-{i}", worker_id=f"w-{i}", ttl=600, interval=60).beat()
        result = doctor("--redis-url", server.url, "--collectors", "workers", user=None)
        [series] = lines(result, "WARN", "series")
        assert "(Datadog's default limit: 2,000)" in series and result.returncode == 0
        assert "max_returned_metrics" in result.stdout
        capped = doctor("--redis-url", server.url, "--collectors", "workers",
                        "--max-worker-series", "10", user=None)
        text = " ".join(capped.stdout.split())
        assert "--max-worker-series 10 leaves 290 workers to their pools" in text
        assert lines(capped, "ok", "series")
    finally:
        server.stop()


def test_celery_keys_it_cannot_read_are_findings():
    """A Celery app with kombu's global_keyprefix, and one binding that does not split by the
    separator: each a finding naming the option that fixes it."""
    server = devcluster.start_standalone()
    try:
        client = server.client()
        client.sadd("myapp:_kombu.binding.jobs", "jobs\x06\x16\x06\x16jobs")
        result = doctor("--redis-url", server.url, "--schema", "celery", "--collectors",
                        "queues", user=None)
        text = " ".join(result.stdout.split())
        assert "cannot read bindings under another key prefix: myapp:_kombu.binding.jobs" in text
        assert "set --celery-key-prefix to kombu's global_keyprefix" in text, result.stdout
        client.sadd("myapp:_kombu.binding.jobs", "jobs|x|y|jobs")
        result = doctor("--redis-url", server.url, "--schema", "celery", "--collectors",
                        "queues", "--celery-key-prefix", "myapp:", user=None)
        [finding] = lines(result, "WARN", "celery")
        assert "do not split" in finding
        assert "set --celery-sep" in " ".join(result.stdout.split())
    finally:
        server.stop()
