"""tqmon through Redis Sentinel, on one real set for the module: 3 sentinels (Debian's
redis-sentinel, a password of their own), a master, 2 replicas, and a native fleet beating
through a Sentinel-managed client. The tests that stop sentinels come last and resume them."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from helpers import run_tqmon
from sentinel_helpers import (
    ENV,
    PASSWORD,
    beating_fleet,
    master_id,
    poll,
    promtool_alerts,
    sentinel_set,
    tqmon,
)
from tqmon import catalog, config

from devtools import devcluster
from devtools.sentinels import MASTER_NAME, SentinelServer

ROOT = Path(__file__).resolve().parent.parent
SENTINEL_METRICS = {m.name for m in catalog.default().metrics.values()
                    if m.collector == "sentinel"}


@pytest.fixture(scope="module")
def sentinels():
    yield from sentinel_set()


@pytest.fixture(scope="module")
def fleet(sentinels):
    yield from beating_fleet(sentinels, "sentinel-reader", 2)


def test_options_parse_and_refuse_mixing_with_seeds(tmp_path):
    got = config.load(["--sentinel", "10.0.0.1:26379", "--sentinel", "[::1]:26380",
                       "--sentinel", "10.0.0.1:26379", "--sentinel-master", "jobs"], {})
    assert got.sentinel.addresses == (("10.0.0.1", 26379), ("::1", 26380))
    assert got.targets == () and got.sentinel.master == "jobs"
    url = config.load(["--redis-url", "rediss+sentinel://s1:26379,[::1]/jobs/2"], {
        "TQMON_SENTINEL_PASSWORD": "pw"})
    assert url.sentinel.addresses == (("s1", 26379), ("::1", 26379))
    assert (url.sentinel.tls, url.sentinel.db, url.db, url.secrets) == (True, 2, 2, ("pw",))
    env = config.load([], {"TQMON_SENTINEL": "a:1,b:2", "TQMON_SENTINEL_MASTER": "m"})
    assert env.sentinel.addresses == (("a", 1), ("b", 2))
    secret_file = tmp_path / "sentinel-password"
    secret_file.write_text("from-file\n")
    conf = tmp_path / "tqmon.yaml"
    conf.write_text(f"sentinel: ['s1:26379', '[::1]:26380']\nsentinel_master: jobs\n"
                    f"sentinel_username: tqmon\nsentinel_password_file: {secret_file}\n")
    filed = config.load(["--config", str(conf)], {})
    assert filed.sentinel.addresses == (("s1", 26379), ("::1", 26380))
    assert (filed.sentinel.username, filed.sentinel.password) == ("tqmon", "from-file")
    assert "from-file" not in repr(filed)
    for argv, words in (
            (["--sentinel", "a:1", "--sentinel-master", "m", "--redis-url", "redis://x"],
             "--sentinel and --redis-url both given"),
            (["--sentinel", "a:1"], "--sentinel needs --sentinel-master"),
            (["--sentinel", "::1", "--sentinel-master", "m"], r"HOST:PORT or \[IPv6\]:PORT"),
            (["--sentinel-master", "m"], "goes with --sentinel")):
        with pytest.raises(config.ConfigError, match=words):
            config.load(argv, {})
    result = run_tqmon("--sentinel", "a:1", "--sentinel-master", "m", "--redis-url",
                       "redis://:hunter2@x", secret="hunter2")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "both given" in result.stderr


def test_healthy_set_reads_the_master_and_fires_nothing(sentinels, fleet, tmp_path):
    master = sentinels.master_address()
    result = poll(sentinels, lambda r: r.total("workers_alive") == 2, 15, "the fleet")
    assert result.returncode == 0 and result.stderr == ""
    assert result.elapsed < 3
    assert master_id(result) == master
    assert result.values("redis_cluster_sentinel_up") == [1, 1, 1]
    assert result.value("redis_cluster_sentinels_agreeing") == 3
    assert result.value("redis_cluster_sentinels_known") == 3
    assert result.value("redis_cluster_sentinel_quorum_ok") == 1
    assert result.value("redis_cluster_sentinel_master_config_epoch") >= 0
    roles = {s["node_id"]: s["role"] for s in result.series("redis_cluster_node_up")}
    assert roles == {s.address: "master" if s.address == master else "replica"
                     for s in sentinels.servers}
    assert result.values("redis_cluster_node_up") == [1, 1, 1]
    assert len(result.values("redis_cluster_replica_master_link_up")) == 2
    emitted = {s.name for s in result.samples}
    assert SENTINEL_METRICS - emitted == {"redis_cluster_sentinel_failed"}
    assert PASSWORD not in result.stdout + result.stderr
    promtool_alerts(tmp_path, [(result, 15)], {})
    url = f"redis+sentinel://:{PASSWORD}@{','.join(sentinels.addresses)}/{MASTER_NAME}/0"
    by_url = run_tqmon(env={"TQMON_REDIS_URL": url}, secret=PASSWORD)
    assert by_url.stderr == "" and master_id(by_url) == master
    assert by_url.values("redis_cluster_sentinel_up") == [1, 1, 1]
    ipv6 = f"[::1]:{sentinels.sentinels[0].port}"
    mixed = run_tqmon("--sentinel", ipv6, *sentinels.args()[2:], env=ENV, secret=PASSWORD)
    assert mixed.value("redis_cluster_sentinel_up", sentinel=ipv6) == 1
    assert master_id(mixed) == master


def test_status_shows_master_and_sentinels(sentinels, fleet):
    args = [*sentinels.args()]
    shown = run_tqmon("status", *args, env=ENV, check_output=False, secret=PASSWORD)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    master = sentinels.master_address()
    assert f"Sentinel: master {master} ({MASTER_NAME}), 3 of 3 sentinel(s) up" in shown.stdout
    assert "3 agree on the master, quorum ok" in shown.stdout
    doc = json.loads(run_tqmon("status", "--json", *args, env=ENV, check_output=False).stdout)
    assert doc["sentinel"]["master"] == master and doc["sentinel"]["quorum_ok"] is True
    assert [s["up"] for s in doc["sentinel"]["sentinels"]] == [True] * 3


def _documented_acl() -> list[str]:
    """The sentinel user docs/operations.md tells operators to create, as ACL SETUSER words."""
    text = (ROOT / "docs" / "operations.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("user tqmon on "))
    return line.split()[1:]


def test_documented_sentinel_acl_is_enough(sentinels):
    words = _documented_acl()
    words[words.index(">TQMON-SENTINEL-PASSWORD")] = ">doc-acl-pw"
    for s in sentinels.sentinels:
        s.client().execute_command("ACL", "SETUSER", *words)
    env = {"TQMON_SENTINEL_PASSWORD": "doc-acl-pw"}
    try:
        result = run_tqmon(*sentinels.args(), "--sentinel-username", "tqmon", env=env,
                           secret="doc-acl-pw")
        assert result.returncode == 0 and result.stderr == ""
        assert result.values("redis_cluster_sentinel_up") == [1, 1, 1]
        assert result.value("redis_cluster_sentinel_quorum_ok") == 1
        found = run_tqmon("doctor", *sentinels.args(), "--sentinel-username", "tqmon", env=env,
                          check_output=False, secret="doc-acl-pw")
        lines = [x for x in found.stdout.splitlines() if " sentinel " in x]
        assert lines and all(x.startswith("ok") for x in lines), found.stdout
    finally:
        for s in sentinels.sentinels:
            s.client().execute_command("ACL", "DELUSER", "tqmon")


def test_doctor_checks_each_sentinel_agreement_quorum_and_acl(sentinels):
    found = run_tqmon("doctor", *sentinels.args(), env=ENV, check_output=False,
                      secret=PASSWORD)
    lines = [line for line in found.stdout.splitlines() if "sentinel" in line]
    assert sum("answers: master" in line for line in lines) == 3, found.stdout
    assert any("agree: master" in line for line in lines)
    assert any("quorum (2) and failover authorisation reachable" in line for line in lines)
    assert any("may run the 4 SENTINEL subcommands" in line for line in lines)
    two = ["--sentinel", sentinels.addresses[1], "--sentinel", sentinels.addresses[2],
           "--sentinel-master", MASTER_NAME]
    flat = " ".join(run_tqmon("doctor", *two, env=ENV, check_output=False).stdout.split())
    assert "the sentinels know 3 sentinels, tqmon asks 2" in flat
    assert f"fix: give every sentinel: --sentinel {sentinels.addresses[0]}" in flat
    assert run_tqmon(*two, env=ENV).value("redis_cluster_sentinels_known") == 3
    # a sentinel user that may ask for the master only
    limited = sentinels.sentinels[0].client()
    limited.execute_command("ACL", "SETUSER", "tqmon-limited", "on", ">limited-pw",
                            "+sentinel|master", "+ping", "+auth", "+hello")
    try:
        found = run_tqmon("doctor", "--sentinel", sentinels.addresses[0], "--sentinel-master",
                          MASTER_NAME, "--sentinel-username", "tqmon-limited",
                          env={"TQMON_SENTINEL_PASSWORD": "limited-pw"}, check_output=False,
                          secret="limited-pw")
    finally:
        limited.execute_command("ACL", "DELUSER", "tqmon-limited")
    flat = " ".join(found.stdout.split())  # lines wrap at 80 columns
    assert "may not run SENTINEL replicas, sentinels, ckquorum" in flat, found.stdout
    assert "fix: ACL SETUSER tqmon-limited +sentinel|replicas +sentinel|sentinels " \
        "+sentinel|ckquorum" in found.stdout


def test_disagreeing_sentinel_the_majority_wins_and_is_reported(sentinels):
    """A fourth sentinel that names another node as the master under the same name."""
    other = devcluster.start_standalone()
    odd = SentinelServer(devcluster.free_port(), other.port, quorum=1, password=PASSWORD).start()
    try:
        devcluster.wait_for(lambda: odd.client().ping(), 15, "the odd sentinel")
        args = [*sentinels.args()[:-2], "--sentinel", odd.address, *sentinels.args()[-2:]]
        result = run_tqmon(*args, env=ENV, secret=PASSWORD)
        assert master_id(result) == sentinels.master_address()
        assert result.value("redis_cluster_sentinels_agreeing") == 3
        assert result.values("redis_cluster_sentinel_up") == [1, 1, 1, 1]
        assert other.address not in {s["node_id"] for s in result.series(
            "redis_cluster_node_up")}
        found = " ".join(run_tqmon("doctor", *args, env=ENV, check_output=False).stdout.split())
        assert f"the sentinels disagree: 3 name {sentinels.master_address()} (followed), " \
            f"1 name {other.address}" in found
    finally:
        odd.stop()
        other.stop()


@pytest.mark.parametrize("case", ["password", "master"])
def test_wrong_password_or_master_name_one_line_exit_0(sentinels, case):
    args = sentinels.args()
    env = {}
    if case == "password":
        env = {"TQMON_SENTINEL_PASSWORD": "not-the-password"}
    else:
        args = [*args[:-1], "no-such-master"]
    result = run_tqmon(*args, env={**ENV, **env}, secret="not-the-password")
    assert PASSWORD not in result.stdout + result.stderr
    assert result.returncode == 0
    assert result.stderr.count("\n") == 1, result.stderr
    reason = "auth" if case == "password" else "unknown_master"
    assert ("authentication failed" if case == "password" else "no master named "
            "'no-such-master'") in result.stderr
    assert result.values("redis_cluster_sentinel_up") == [0, 0, 0]
    assert {s["reason"] for s in result.series("redis_cluster_sentinel_failed")} == {reason}
    # no master known: every collector is down, none reports empty queues as healthy
    assert result.values("tqmon_collector_up") == [0, 0, 0]
    found = run_tqmon("doctor", *args, env={**ENV, **env}, check_output=False,
                      secret="not-the-password")
    assert found.returncode == 1
    flat = " ".join(found.stdout.split())
    assert "authentication failed" in flat if case == "password" else \
        "monitors no master named 'no-such-master'" in flat


@pytest.mark.parametrize("schema", sorted(config.SCHEMAS))
def test_no_master_named_every_collector_is_down(sentinels, schema):
    """Nothing read is never reported as healthy and empty, under any schema: one line (the
    sentinels'), every collector down, exit 0."""
    result = run_tqmon(*sentinels.args()[:-1], "no-such-master", "--schema", schema, env=ENV)
    assert result.returncode == 0
    assert result.stderr.count("\n") == 1, result.stderr
    ups = result.series("tqmon_collector_up")
    assert len(ups) >= 3 and result.values("tqmon_collector_up") == [0] * len(ups)


def test_one_sentinel_stopped_is_down_and_the_run_in_time(sentinels, fleet):
    stopped = sentinels.sentinels[0]
    stopped.signal(signal.SIGSTOP)
    try:
        result = tqmon(sentinels, "--timeout", "2")
        # the run's own deadline, plus the interpreter's start as in tests/test_failures.py
        assert result.returncode == 0 and result.elapsed < 2 + 1, result.elapsed
        assert result.value("redis_cluster_sentinel_up", sentinel=stopped.address) == 0
        assert result.value("redis_cluster_sentinel_failed", sentinel=stopped.address,
                            reason="timeout") == 1
        assert result.value("redis_cluster_sentinels_agreeing") == 2
        assert master_id(result) == sentinels.master_address(sentinels.sentinels[1])
        assert result.total("workers_alive") == 2
        assert result.stderr.count("\n") == 1 and stopped.address in result.stderr
    finally:
        stopped.signal(signal.SIGCONT)


def test_two_of_three_down_is_quorum_lost(sentinels, fleet, tmp_path):
    healthy = poll(sentinels, lambda r: r.value("redis_cluster_sentinels_agreeing") == 3, 15,
                   "every sentinel back")
    stopped = sentinels.sentinels[:2]
    for s in stopped:
        s.signal(signal.SIGSTOP)
    try:
        lost = poll(sentinels, lambda r: r.values("redis_cluster_sentinel_quorum_ok") == [0],
                    15, "the quorum reported lost", "--timeout", "2")
        assert lost.values("redis_cluster_sentinel_up") == [0, 0, 1]
        assert lost.total("workers_alive") == 2  # the master is still read
    finally:
        for s in stopped:
            s.signal(signal.SIGCONT)
    down = [{"exp_labels": {"severity": "warning", "cluster_name": "default",
                            "master_name": MASTER_NAME, "sentinel": s.address},
             "exp_annotations": {
                 "summary": "A Redis Sentinel is down or refuses tqmon.",
                 "description": f"Sentinel {s.address} of master {MASTER_NAME} (cluster "
                 "default) did not answer tqmon in time or did not name the master; "
                 "redis_cluster_sentinel_failed says why (unreachable, timeout, auth, "
                 "no_permission, unknown_master). Fewer sentinels up brings the quorum "
                 "closer to being lost.",
                 "runbook_url": "docs/runbook.md"
                                "#sentineldown"}} for s in stopped]
    quorum = [{"exp_labels": {"severity": "critical", "cluster_name": "default",
                              "master_name": MASTER_NAME},
               "exp_annotations": {
                   "summary": "Redis Sentinel cannot reach its quorum.",
                   "description": f"The sentinels of master {MASTER_NAME} (cluster default) "
                   "answer SENTINEL CKQUORUM with NOQUORUM: too few of them reach each other "
                   "to agree that the master is down or to authorise a failover. If the "
                   "master fails now, no replica is promoted and the queue stops.",
                   "runbook_url": "docs/runbook.md"
                                  "#sentinelquorumlost"}}]
    promtool_alerts(tmp_path, [(healthy, 5), (lost, 5)],
                    {"SentinelDown": down, "SentinelQuorumLost": quorum})
    poll(sentinels, lambda r: r.values("redis_cluster_sentinel_quorum_ok") == [1]
         and r.value("redis_cluster_sentinels_agreeing") == 3, 20, "the quorum back")


def test_sentinel_row_says_when_sentinel_is_not_used():
    from provisioning_helpers import load_dashboard

    row = False
    texts = []
    for panel in load_dashboard()["panels"]:
        if panel["type"] == "row":
            row = panel["title"] == "Sentinel"
        elif row:
            texts.append(panel["fieldConfig"]["defaults"].get("noValue"))
    assert len(texts) == 8 and set(texts) == {"Sentinel not used (tqmon reads --redis-url)"}
