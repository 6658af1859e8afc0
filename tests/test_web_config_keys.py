"""Every exporter-toolkit web-config key is implemented or refused (issue 22), checked with real
certificates: client_allowed_sans on the peer certificate, min/max_version, cipher_suites for
TLS 1.2, curve_preferences (openssl s_client), http_server_config.headers, rate_limit, inline
PEM; what Python's ssl cannot do is exit 2 naming the key, never accepted and ignored."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from test_auth_tls import _make_ca, _make_cert
from test_listen_safety import _request, _start, _stop
from tqmon import webconfig
from tqmon.configfile import ConfigError

from devtools import devcluster


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("web-keys")
    ca = _make_ca(d, "ca")
    key, cert = _make_cert(d, "server", ca, "DNS:localhost,IP:127.0.0.1")
    good = _make_cert(d, "good", ca, "DNS:prometheus.example")
    bad = _make_cert(d, "bad", ca, "DNS:intruder.example")
    return {"dir": d, "ca": str(ca[1]), "key": str(key), "cert": str(cert),
            "good": tuple(map(str, good)), "bad": tuple(map(str, bad))}


@pytest.fixture(scope="module")
def redis():
    server = devcluster.start_standalone()
    yield server
    server.stop()


def _serve(redis, pki, tmp_path, extra: str):
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki['cert']}\n  key_file: {pki['key']}\n"
                   + extra)
    return _start("--redis-url", redis.url, "--collectors", "nodes", "--web-config-file",
                  str(web))


def _client(pki, cert: tuple[str, str] | None = None, tls_max=None, ciphers=None):
    context = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        context.load_cert_chain(cert[1], cert[0])
    if tls_max:
        context.maximum_version = tls_max
    if ciphers:
        context.set_ciphers(ciphers)
    return context


def _handshake(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.version(), tls.cipher()[0]


def test_client_allowed_sans_checks_the_peer_certificate(redis, pki, tmp_path):
    proc, port = _serve(redis, pki, tmp_path, f"  client_ca_file: {pki['ca']}\n"
                        "  client_auth_type: RequireAndVerifyClientCert\n"
                        "  client_allowed_sans: [prometheus.example]\n")
    try:
        assert _request(port, context=_client(pki, pki["good"]))[0] == 200
        with pytest.raises((OSError, http.client.HTTPException)):
            _request(port, context=_client(pki, pki["bad"]))
    finally:
        _stop(proc)


def test_versions_ciphers_curves_and_headers(redis, pki, tmp_path):
    proc, port = _serve(redis, pki, tmp_path,
                        "  max_version: TLS12\n"
                        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n"
                        "  curve_preferences: [CurveP384]\n"
                        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                        "    X-Content-Type-Options: nosniff\n")
    try:
        assert _handshake(port, _client(pki)) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")
        with pytest.raises(ssl.SSLError):
            _handshake(port, _client(pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
        status, headers, _ = _request(port, context=_client(pki))
        assert status == 200 and headers["x-frame-options"] == "deny"
        assert headers["x-content-type-options"] == "nosniff"

        def s_client(group: str) -> int:
            return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                   "-groups", group, "-CAfile", pki["ca"], "-brief"],
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=20).returncode
        assert s_client("P-384") == 0
        assert s_client("X25519") != 0
    finally:
        _stop(proc)


def test_min_version_tls13(redis, pki, tmp_path):
    proc, port = _serve(redis, pki, tmp_path, "  min_version: TLS13\n")
    try:
        assert _handshake(port, _client(pki))[0] == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            _handshake(port, _client(pki, tls_max=ssl.TLSVersion.TLSv1_2))
    finally:
        _stop(proc)


def test_inline_pem_and_rate_limit(redis, pki, tmp_path):
    web = tmp_path / "web.yml"
    indent = "\n    ".join
    cert = Path(pki["cert"]).read_text().strip().splitlines()
    key = Path(pki["key"]).read_text().strip().splitlines()
    web.write_text(f"tls_server_config:\n  cert: |\n    {indent(cert)}\n  key: |\n"
                   f"    {indent(key)}\nrate_limit:\n  interval: 1m\n  burst: 2\n")
    proc, port = _start("--redis-url", redis.url, "--collectors", "nodes",
                        "--web-config-file", str(web))
    try:
        codes = [_request(port, path="/healthz", context=_client(pki))[0] for _ in range(3)]
        assert codes == [200, 200, 429]
    finally:
        _stop(proc)


@pytest.mark.parametrize(("extra", "key"), [
    ("  curve_preferences: [CurveP256, X25519]\n", "curve_preferences"),
    ("  curve_preferences: [CurveP999]\n", "curve_preferences"),
    ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites"),
    ("  cipher_suites: [TLS_MADE_UP]\n", "cipher_suites"),
    ("  client_allowed_sans: [x]\n", "client_allowed_sans"),
    ("  min_version: TLS13\n  max_version: TLS12\n", "min_version"),
    ("  max_version: SSL3\n", "max_version"),
    ("  client_auth_type: RequireAnyClientCert\n", "client_auth_type"),
    ("  prefer_server_cipher_suites: 'yes'\n", "prefer_server_cipher_suites"),
    ("http_server_config:\n  http2: true\n", "http2"),
    ("http_server_config:\n  headers:\n    Server: evil\n", "headers"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow-from\n", "X-Frame-Options"),
    ("http_server_config:\n  headers:\n    X-XSS-Protection: \"1\\r\\nSet-Cookie: x\"\n",
     "X-XSS-Protection"),
    ("http_server_config:\n  headers:\n    Content-Security-Policy: \"caf\u00e9\"\n",
     "Content-Security-Policy"),
    ("rate_limit:\n  interval: soon\n", "rate_limit.interval"),
    ("rate_limit:\n  interval: 1s\n  burst: 0\n", "rate_limit.burst"),
])
def test_what_cannot_be_done_is_refused_naming_the_key(pki, tmp_path, extra, key):
    """In process (a ConfigError is exit 2 and one line: test_listen_safety checks that)."""
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki['cert']}\n  key_file: {pki['key']}\n"
                   + extra)
    with pytest.raises(ConfigError, match=re.escape(key)) as raised:
        webconfig.load(str(web))
    assert "\n" not in str(raised.value)
