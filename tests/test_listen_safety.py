"""`--listen` is safe to expose (issue 11, defects 14 and 15): bounded connections and request
time, a real scrape answered within 2 s under 200 half-open clients and a 100-scrape burst (one
collection), IPv6 and :PORT, HEAD, gzip, one collection shared across formats, no traceback
when a scraper hangs up; TLS and basic auth from an exporter-toolkit web config file."""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import bcrypt
import pytest
from helpers import TQMON, check_exposition
from test_auth_tls import _make_ca, _make_cert

from devtools import devcluster


def _start(*args: str, host: str = "127.0.0.1", listen: str | None = None,
           probe: str = "127.0.0.1") -> tuple[subprocess.Popen, int]:
    port = devcluster.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    proc = subprocess.Popen([*TQMON, "--listen", listen or f"{host}:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    end = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((probe, port), timeout=0.2):
                return proc, port
        except OSError:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < end
            time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return err


def _request(port: int, method: str = "GET", path: str = "/metrics", host: str = "127.0.0.1",
             headers: dict[str, str] | None = None, timeout: float = 10,
             context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    if context is None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _info_calls(server: devcluster.RedisServer) -> int:
    stats = server.client().info("commandstats")
    return stats.get("cmdstat_info", {}).get("calls", 0)


def test_hang_ups_print_no_traceback(standalone):
    proc, port = _start("--redis-url", standalone.url)
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST before the answer
        assert _request(port)[0] == 200
    finally:
        err = _stop(proc)
    assert err == ""


def test_scrape_answers_within_2s_under_200_half_open_clients(standalone):
    proc, port = _start("--redis-url", standalone.url)
    held = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
            held.append(sock)
        held.append(socket.create_connection(("127.0.0.1", port)))
        held[-1].sendall(b"GET /metrics\r\n")  # HTTP/0.9: no headers ever
        started = time.monotonic()
        status, _, body = _request(port, timeout=5)
        assert status == 200 and time.monotonic() - started < 2
        check_exposition(body.decode())
        # the request time is bounded: the server hangs up on them
        for sock in (held[0], held[-1]):
            sock.settimeout(15)
            assert sock.recv(100) == b""
        assert time.monotonic() - started < 12
    finally:
        for sock in held:
            sock.close()
        _stop(proc)


def test_burst_of_100_scrapes_shares_one_collection(fresh_replicated):
    """A stopped replica makes the collection last until the deadline: every scrape of the
    burst, text and OpenMetrics alike, waits for that one collection."""
    master, replica = fresh_replicated
    proc, port = _start("--redis-url", master.url, "--timeout", "1.5", "--collectors", "nodes")
    try:
        replica.signal(signal.SIGSTOP)
        before = _info_calls(master)
        results: list[tuple[int, float, str]] = []
        lock = threading.Lock()

        def scrape(i: int) -> None:
            started = time.monotonic()
            accept = "application/openmetrics-text" if i % 2 else "text/plain"
            status, headers, _ = _request(port, headers={"Accept": accept})
            with lock:
                results.append((status, time.monotonic() - started, headers["content-type"]))

        threads = [threading.Thread(target=scrape, args=(i,)) for i in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = _info_calls(master)
    finally:
        replica.signal(signal.SIGCONT)
        _stop(proc)
    assert [r[0] for r in results] == [200] * 100
    assert max(r[1] for r in results) < 2.0
    assert {r[2].split(";")[0] for r in results} == {"text/plain",
                                                     "application/openmetrics-text"}
    # one collection = INFO replication (discovery) + INFO (nodes); +1 for our own `before`
    assert after - before == 2 + 1


def test_head_gzip_and_methods(standalone):
    proc, port = _start("--redis-url", standalone.url)
    try:
        status, headers, body = _request(port, "HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 100
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        status, headers, body = _request(port, headers={"Accept-Encoding": "gzip"})
        assert status == 200 and headers["content-encoding"] == "gzip"
        check_exposition(gzip.decompress(body).decode())
        status, headers, body = _request(port)
        assert "content-encoding" not in headers and body.startswith(b"# HELP")
        assert _request(port, "POST")[0] == 405
        assert _request(port, "HEAD", "/healthz")[0] == 200
    finally:
        _stop(proc)


@pytest.mark.parametrize(("listen", "probes"), [
    ("[::1]:{port}", ["::1"]), ("[::]:{port}", ["::1"]), (":{port}", ["127.0.0.1", "::1"]),
])
def test_ipv6_and_any_address(standalone, listen, probes):
    port = devcluster.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    proc = subprocess.Popen([*TQMON, "--listen", listen.format(port=port), "--redis-url",
                             standalone.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        for host in probes:
            end = time.monotonic() + 10
            while True:
                try:
                    status = _request(port, host=host, path="/healthz", timeout=2)[0]
                    break
                except OSError:
                    assert proc.poll() is None, proc.stderr.read()
                    assert time.monotonic() < end
                    time.sleep(0.05)
            assert status == 200
            assert _request(port, host=host)[0] == 200
    finally:
        _stop(proc)


# --- --web-config-file: TLS and basic auth ------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("web-tls")
    ca = _make_ca(d, "ca")
    key, cert = _make_cert(d, "server", ca, "DNS:localhost,IP:127.0.0.1")
    client_key, client_cert = _make_cert(d, "client", ca, "DNS:scraper")
    return {"dir": d, "ca": str(ca[1]), "key": str(key), "cert": str(cert),
            "client_key": str(client_key), "client_cert": str(client_cert)}


def _auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_auth_and_tls(standalone, certs, tmp_path):
    hashed = bcrypt.hashpw(b"s3cret-scrape", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs['cert']}\n"
                   f"  key_file: {certs['key']}\n"
                   f"basic_auth_users:\n  prometheus: {hashed}\n")
    proc, port = _start("--redis-url", standalone.url, "--web-config-file", str(web))
    context = ssl.create_default_context(cafile=certs["ca"])
    try:
        status, headers, _ = _request(port, context=context)
        assert status == 401 and headers["www-authenticate"].startswith("Basic")
        assert _request(port, context=context, headers=_auth("prometheus", "nope"))[0] == 401
        assert _request(port, context=context, headers=_auth("other", "s3cret-scrape"))[0] == 401
        status, _, body = _request(port, context=context,
                                   headers=_auth("prometheus", "s3cret-scrape"))
        assert status == 200
        check_exposition(body.decode())
        # plain HTTP on the TLS listener gets no HTTP answer at all
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = sock.recv(100)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/")
    finally:
        err = _stop(proc)
    assert "s3cret" not in err and err == ""


def test_client_certificates_required(standalone, certs, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs['cert']}\n"
                   f"  key_file: {certs['key']}\n  client_ca_file: {certs['ca']}\n"
                   "  client_auth_type: RequireAndVerifyClientCert\n")
    proc, port = _start("--redis-url", standalone.url, "--web-config-file", str(web))
    try:
        anonymous = ssl.create_default_context(cafile=certs["ca"])
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _request(port, context=anonymous)
        with_cert = ssl.create_default_context(cafile=certs["ca"])
        with_cert.load_cert_chain(certs["client_cert"], certs["client_key"])
        assert _request(port, context=with_cert)[0] == 200
    finally:
        _stop(proc)


@pytest.mark.parametrize(("content", "message"), [
    ("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
     "cert_file"),
    ("basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n", "bcrypt"),
    ("tls_server_config:\n  cert_fle: x\n", "cert_fle"),
    ("http_server_config:\n  http2: true\nbasic_auth_users: [a]\n", "basic_auth_users"),
    ("tls_server_config:\n  client_auth_type: Sometimes\n", "client_auth_type"),
])
def test_bad_web_config_is_a_config_error(tmp_path, content, message):
    web = tmp_path / "web.yml"
    web.write_text(content)
    proc = subprocess.run([*TQMON, "--listen", f"127.0.0.1:{devcluster.free_port()}",
                           "--web-config-file", str(web)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_more_half_open_clients_than_connections_do_not_lock_scrapers_out(standalone):
    from tqmon.serve import MAX_CONNECTIONS

    proc, port = _start("--redis-url", standalone.url)
    held = []
    try:
        for _ in range(MAX_CONNECTIONS + 50):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            held.append(sock)
        started = time.monotonic()
        assert _request(port, timeout=5)[0] == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in held:
            sock.close()
        _stop(proc)
