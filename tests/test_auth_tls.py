"""ACL auth and TLS against real servers; the password never shows in any output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from adapter_helpers import poll_tqmon
from helpers import run_tqmon

from devtools import devcluster
from devtools.sentinels import MASTER_NAME, SentinelServer

PASSWORD = "s3cret-Pa55word-xyz"
MONITOR_ACL = f"monitor on >{PASSWORD} -@all +info +ping +cluster|info +cluster|nodes"


@pytest.fixture(scope="module")
def acl_server():
    server = devcluster.start_standalone(
        ["--user", *MONITOR_ACL.split(), "--requirepass", "admin-pw"])
    yield server
    server.stop()


def test_password_from_env_with_acl_user(acl_server):
    result = run_tqmon("--collectors", "nodes", "--redis-url", acl_server.url,
                       "--username", "monitor",
                       env={"TQMON_REDIS_PASSWORD": PASSWORD}, secret=PASSWORD)
    assert result.value("redis_cluster_node_up", node_id=acl_server.address) == 1
    assert result.stderr == ""


def test_password_from_file(acl_server, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    result = run_tqmon("--collectors", "nodes", "--redis-url", acl_server.url,
                       "--username", "monitor",
                       "--password-file", str(secret), secret=PASSWORD)
    assert result.value("redis_cluster_node_up", node_id=acl_server.address) == 1


def test_password_in_config_file_url(acl_server, tmp_path):
    config = tmp_path / "tqmon.yaml"
    config.write_text(f"redis_url: redis://monitor:{PASSWORD}@{acl_server.address}\n"
                      "cluster_name: from-file\ncollectors: [nodes]\n")
    result = run_tqmon(env={"TQMON_CONFIG": str(config)}, secret=PASSWORD)
    assert result.value("redis_cluster_node_up", node_id=acl_server.address,
                        cluster_name="from-file") == 1


def test_password_in_flag_url_works_but_warns(acl_server):
    url = f"redis://monitor:{PASSWORD}@{acl_server.address}"
    result = run_tqmon("--collectors", "nodes", "--redis-url", url, secret=PASSWORD)
    assert result.value("redis_cluster_node_up", node_id=acl_server.address) == 1
    assert "visible to other local users" in result.stderr


def test_wrong_password_is_node_down_exit_0(acl_server):
    wrong = "not-the-Pa55word-abc"
    result = run_tqmon("--collectors", "nodes", "--redis-url", acl_server.url,
                       "--username", "monitor",
                       env={"TQMON_REDIS_PASSWORD": wrong}, secret=wrong)
    assert result.returncode == 0
    assert result.value("redis_cluster_node_up", node_id=acl_server.address) == 0
    assert "AuthenticationError" in result.stderr
    assert result.stderr.count("\n") == 1
    assert PASSWORD not in result.stderr


def test_missing_password_file_is_config_error(acl_server, tmp_path):
    result = run_tqmon("--collectors", "nodes", "--redis-url", acl_server.url, "--password-file",
                       str(tmp_path / "nope"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("tqmon: error: cannot read password file")
    assert result.stderr.count("\n") == 1


# --- TLS ---------------------------------------------------------------------------------------

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
             str(cert), "-days", "2", "-subj", f"/CN={name}")
    return key, cert


def _make_cert(directory: Path, name: str, ca: tuple[Path, Path], san: str) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return key, cert


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca = _make_ca(d, "ca")
    other_ca = _make_ca(d, "other-ca")
    server_key, server_cert = _make_cert(d, "server", ca, "DNS:redis.test")
    client_key, client_cert = _make_cert(d, "client", ca, "DNS:tqmon-client")
    port = devcluster.free_port()
    server = devcluster.RedisServer(port, [
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(server_cert),
        "--tls-key-file", str(server_key), "--tls-ca-cert-file", str(ca[1]),
        "--tls-auth-clients", "optional",
    ]).start()
    server.wait_ready()
    yield {"server": server, "url": f"rediss://{server.address}", "ca": str(ca[1]),
           "other_ca": str(other_ca[1]), "client_cert": str(client_cert),
           "client_key": str(client_key), "dir": d}
    server.stop()


def test_tls_verified_with_server_name(tls):
    result = run_tqmon("--redis-url", tls["url"], "--tls-ca-file", tls["ca"],
                       "--tls-server-name", "redis.test")
    assert result.value("redis_cluster_node_up", node_id=tls["server"].address) == 1
    assert result.stderr == ""


def test_tls_name_mismatch_is_refused(tls):
    # the certificate names redis.test, not 127.0.0.1: verification is on by default
    result = run_tqmon("--redis-url", tls["url"], "--tls-ca-file", tls["ca"])
    assert result.value("redis_cluster_node_up", node_id=tls["server"].address) == 0
    assert "certificate" in result.stderr.lower() or "match" in result.stderr.lower()


def test_tls_wrong_ca_is_refused(tls):
    result = run_tqmon("--redis-url", tls["url"], "--tls-ca-file", tls["other_ca"],
                       "--tls-server-name", "redis.test")
    assert result.value("redis_cluster_node_up", node_id=tls["server"].address) == 0
    assert "certificate verify failed" in result.stderr


def test_tls_insecure_skips_verification(tls):
    result = run_tqmon("--redis-url", tls["url"], "--tls-insecure")
    assert result.value("redis_cluster_node_up", node_id=tls["server"].address) == 1


def test_tls_client_certificate(tmp_path_factory, tls):
    port = devcluster.free_port()
    d = tls["dir"]
    server = devcluster.RedisServer(port, [
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(d / "server.crt"),
        "--tls-key-file", str(d / "server.key"), "--tls-ca-cert-file", tls["ca"],
        "--tls-auth-clients", "yes",
    ]).start()
    server.wait_ready()
    try:
        base = ["--redis-url", f"rediss://{server.address}", "--tls-ca-file", tls["ca"],
                "--tls-server-name", "redis.test"]
        without = run_tqmon(*base)
        assert without.value("redis_cluster_node_up", node_id=server.address) == 0
        with_cert = run_tqmon(*base, "--tls-cert-file", tls["client_cert"],
                              "--tls-key-file", tls["client_key"])
        assert with_cert.value("redis_cluster_node_up", node_id=server.address) == 1
    finally:
        server.stop()


def test_tls_options_without_rediss_is_config_error(tls):
    result = run_tqmon("--redis-url", "redis://127.0.0.1:6379", "--tls-ca-file", tls["ca"])
    assert result.returncode == 2
    assert result.stderr == "tqmon: error: TLS options are set but no URL uses rediss://\n"


def test_tls_to_a_sentinel_and_the_master_it_names(tls):
    """rediss:// on --sentinel: TLS to the sentinel and to the master, with the --tls-* options."""
    d, port = tls["dir"], devcluster.free_port()
    sentinel = SentinelServer(port, tls["server"].port, quorum=1, extra=[
        f"tls-port {port}", f"tls-cert-file {d / 'server.crt'}",
        f"tls-key-file {d / 'server.key'}", f"tls-ca-cert-file {tls['ca']}",
        "tls-auth-clients optional", "tls-replication yes"]).start()
    try:
        args = ["--sentinel", f"rediss://127.0.0.1:{port}", "--sentinel-master", MASTER_NAME,
                "--tls-ca-file", tls["ca"], "--tls-server-name", "redis.test"]
        poll_tqmon(args, lambda r: r.values("redis_cluster_sentinel_up") == [1], 30,
                   "the TLS sentinel")
        result = run_tqmon(*args)
        assert result.returncode == 0 and result.stderr == ""
        assert result.value("redis_cluster_node_up", node_id=tls["server"].address) == 1
        found = run_tqmon("doctor", *args, check_output=False).stdout
        for where in (f"127.0.0.1:{port}", tls["server"].address):
            assert f"{where}: certificate verified for 'redis.test'" in found, found
        assert f"127.0.0.1:{port} answers: master {tls['server'].address}" in found
        wrong = run_tqmon(*args[:4], "--tls-ca-file", tls["other_ca"], "--tls-server-name",
                          "redis.test")
        assert wrong.values("redis_cluster_sentinel_up") == [0]
        assert "certificate verify failed" in wrong.stderr
    finally:
        sentinel.stop()
