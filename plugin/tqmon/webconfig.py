"""`--web-config-file`: TLS, basic auth, response headers and a rate limit for `--listen`, in the
Prometheus exporter-toolkit format, so the file an operator already writes for node_exporter
works here too:

    tls_server_config:
      cert_file: /etc/tqmon/tls.crt
      key_file: /etc/tqmon/tls.key
      client_ca_file: /etc/tqmon/ca.crt          # optional
      client_auth_type: RequireAndVerifyClientCert
      client_allowed_sans: [prometheus.example]  # optional
    basic_auth_users:
      prometheus: $2y$10$...                     # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':')

Every key exporter-toolkit documents is implemented or refused (exit 2, naming the key); none
is accepted and ignored. Refused, because Python's ssl cannot do them: RequestClientCert and
RequireAnyClientCert (they accept unverified certificates), `curve_preferences` with more than
one curve, TLS 1.3 names in `cipher_suites` (TLS 1.3 suites are not configurable, in Go either),
`http2: true` (HTTP/1.1 only). Checking a bcrypt hash needs the `bcrypt` package (the `web`
extra: pip install 'tqmon[web]'); how checks stay unstarvable is in webauth.py.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any

from .configfile import ConfigError, load_yaml
from .webauth import BasicAuth

TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file",
            "client_auth_type", "client_allowed_sans", "min_version", "max_version",
            "cipher_suites", "prefer_server_cipher_suites", "curve_preferences"}
HTTP_KEYS = {"http2", "headers"}
# exporter-toolkit's names -> what Python's ssl can do. RequestClientCert and
# RequireAnyClientCert accept unverified certificates, which ssl cannot: refused, not faked.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's crypto/tls names of the TLS 1.2 suites (tls.CipherSuites()) -> OpenSSL's
CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_CIPHERS = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                 "TLS_CHACHA20_POLY1305_SHA256"}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
          "X25519": "X25519"}
# the response headers exporter-toolkit lets an operator set, and their allowed values
HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (), "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",), "X-XSS-Protection": (),
    "Strict-Transport-Security": ()}
DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?"
                      r"(?:(\d+)ms)?")
UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


@dataclass
class WebConfig:
    tls: ssl.SSLContext | None = None
    allowed_sans: frozenset[str] = frozenset()  # empty: any verified client certificate
    basic: BasicAuth | None = None
    headers: dict[str, str] = field(default_factory=dict)  # added to every response
    rate: tuple[float, int] | None = None  # (seconds between requests, burst)

    @property
    def auth(self) -> bool:
        return self.basic is not None

    def peer_allowed(self, peercert: dict[str, Any] | None) -> bool:
        """client_allowed_sans: the verified client certificate names one of them exactly."""
        if not self.allowed_sans:
            return True
        names = {_canonical(kind, value)
                 for kind, value in (peercert or {}).get("subjectAltName", ())}
        return not names.isdisjoint(self.allowed_sans)


def _canonical(kind: str, value: str) -> str:
    """An IP address in one spelling (ssl shows IPv6 as 2001:DB8:0:0:...)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def load(path: str) -> WebConfig:
    """Read with the config file's bounds (size, regular file, no YAML aliases, depth)."""
    data = load_yaml(path, "web config file")
    if data is None:
        return WebConfig()
    where = f"web config file {path}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping")
    if unknown := sorted(str(k) for k in data if k not in TOP_KEYS):
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    config = WebConfig()
    if data.get("tls_server_config") is not None:
        config.tls, config.allowed_sans = _tls(data["tls_server_config"], where)
    users = data.get("basic_auth_users")
    if users is not None and (checked := _users(users, where)):  # empty: no auth, as in Go
        config.basic = BasicAuth(checked)
    if data.get("http_server_config") is not None:
        config.headers = _http(data["http_server_config"], where)
    if data.get("rate_limit") is not None:
        config.rate = _rate(data["rate_limit"], where)
    return config


def _text(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: tls_server_config.{key} must be a string")
    return value


def _names(section: dict[str, Any], key: str, where: str) -> list[str]:
    value = section.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: tls_server_config.{key} must be a list of strings")
    return value


def _tls(section: Any, where: str) -> tuple[ssl.SSLContext, frozenset[str]]:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: tls_server_config must be a mapping")
    if unknown := sorted(str(k) for k in section if k not in TLS_KEYS):
        raise ConfigError(f"{where}: unknown key tls_server_config.{unknown[0]}")
    auth_type = _text(section, "client_auth_type", where) or "NoClientCert"
    if auth_type not in CLIENT_AUTH:
        raise ConfigError(f"{where}: tls_server_config.client_auth_type {auth_type!r} is not "
                          f"supported (use one of {', '.join(CLIENT_AUTH)})")
    ca_file, ca_pem = (_text(section, "client_ca_file", where),
                       _text(section, "client_ca", where))
    if ca_file and ca_pem:
        raise ConfigError(f"{where}: tls_server_config: client_ca and client_ca_file both set")
    if (ca_file or ca_pem) and auth_type == "NoClientCert":
        raise ConfigError(f"{where}: tls_server_config.client_ca_file is set but "
                          "client_auth_type is NoClientCert")
    if CLIENT_AUTH[auth_type] != ssl.CERT_NONE and not (ca_file or ca_pem):
        raise ConfigError(f"{where}: tls_server_config.client_auth_type {auth_type} needs "
                          "client_ca_file")
    sans = _names(section, "client_allowed_sans", where)
    if sans and auth_type != "RequireAndVerifyClientCert":
        raise ConfigError(f"{where}: tls_server_config.client_allowed_sans needs "
                          "client_auth_type RequireAndVerifyClientCert (otherwise a client "
                          "may send no certificate, and no name to check)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(context, section, where)
    _ciphers(context, section, where)
    _curves(context, section, where)
    _load_cert(context, section, where)
    if ca_file or ca_pem:
        try:
            context.load_verify_locations(cafile=ca_file, cadata=ca_pem)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"{where}: cannot load tls_server_config client_ca"
                              f"{'_file ' + ca_file if ca_file else ''}: {_why(exc)}") from None
    context.verify_mode = CLIENT_AUTH[auth_type]
    return context, frozenset(_canonical("", s) for s in sans)


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or (exc.args[-1] if exc.args else exc))


def _versions(context: ssl.SSLContext, section: dict[str, Any], where: str) -> None:
    low = _text(section, "min_version", where) or "TLS12"
    high = _text(section, "max_version", where) or "TLS13"
    for key, value in (("min_version", low), ("max_version", high)):
        if value not in TLS_VERSIONS:
            raise ConfigError(f"{where}: tls_server_config.{key} must be one of "
                              f"{', '.join(TLS_VERSIONS)}, not {value!r}")
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        raise ConfigError(f"{where}: tls_server_config.min_version {low} is above "
                          f"max_version {high}")
    context.minimum_version, context.maximum_version = TLS_VERSIONS[low], TLS_VERSIONS[high]


def _ciphers(context: ssl.SSLContext, section: dict[str, Any], where: str) -> None:
    """cipher_suites (TLS 1.2 and below, in order) and prefer_server_cipher_suites."""
    names = _names(section, "cipher_suites", where)
    for name in names:
        if name in TLS13_CIPHERS:
            raise ConfigError(f"{where}: tls_server_config.cipher_suites: {name} is a TLS 1.3 "
                              "suite; TLS 1.3 suites are not configurable")
        if name not in CIPHERS:
            raise ConfigError(f"{where}: tls_server_config.cipher_suites: unknown or "
                              f"unsupported cipher suite {name!r}")
    if names:
        try:
            context.set_ciphers(":".join(CIPHERS[n] for n in names))
        except ssl.SSLError:
            raise ConfigError(f"{where}: tls_server_config.cipher_suites: none of them is "
                              "available in this OpenSSL") from None
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise ConfigError(f"{where}: tls_server_config.prefer_server_cipher_suites must be "
                          "true or false")
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE


def _curves(context: ssl.SSLContext, section: dict[str, Any], where: str) -> None:
    """curve_preferences: Python's ssl sets a single group (for TLS 1.2 and 1.3 alike)."""
    names = _names(section, "curve_preferences", where)
    if unknown := [n for n in names if n not in CURVES]:
        raise ConfigError(f"{where}: tls_server_config.curve_preferences: unknown or "
                          f"unsupported curve {unknown[0]!r} (one of {', '.join(CURVES)})")
    if len(names) > 1:
        raise ConfigError(f"{where}: tls_server_config.curve_preferences: Python's ssl can "
                          "restrict the handshake to one curve only; list one")
    if names:
        context.set_ecdh_curve(CURVES[names[0]])


def _load_cert(context: ssl.SSLContext, section: dict[str, Any], where: str) -> None:
    """cert_file/key_file, or the PEM inline as cert/key (written to a private temporary
    directory for OpenSSL to read, then removed)."""
    cert, key = _text(section, "cert_file", where), _text(section, "key_file", where)
    cert_pem, key_pem = _text(section, "cert", where), _text(section, "key", where)
    if (cert and cert_pem) or (key and key_pem):
        raise ConfigError(f"{where}: tls_server_config: cert and cert_file (or key and "
                          "key_file) both set")
    if not (cert or cert_pem) or not (key or key_pem):
        raise ConfigError(f"{where}: tls_server_config needs cert_file and key_file")
    with tempfile.TemporaryDirectory(prefix="tqmon-web-") as private:
        if cert_pem:
            cert = _write(private, "cert.pem", cert_pem)
        if key_pem:
            key = _write(private, "key.pem", key_pem)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError, ValueError) as exc:  # ValueError: a NUL in a path
            raise ConfigError(f"{where}: cannot load tls_server_config cert_file "
                              f"{section.get('cert_file', '(inline cert)')} / key_file "
                              f"{section.get('key_file', '(inline key)')}: {_why(exc)}"
                              ) from None


def _write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _http(section: Any, where: str) -> dict[str, str]:
    """http_server_config: response headers (exporter-toolkit's five); http2 only false."""
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: http_server_config must be a mapping")
    if unknown := sorted(str(k) for k in section if k not in HTTP_KEYS):
        raise ConfigError(f"{where}: unknown key http_server_config.{unknown[0]}")
    if section.get("http2") not in (None, False):
        raise ConfigError(f"{where}: http_server_config.http2: tqmon serves HTTP/1.1 only; "
                          "set http2: false or remove the key")
    headers = section.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigError(f"{where}: http_server_config.headers must be a mapping")
    out = {}
    canonical = {h.lower(): h for h in HEADERS}
    for name, value in headers.items():
        header = canonical.get(str(name).lower())
        if header is None:
            raise ConfigError(f"{where}: http_server_config.headers: {name!r} cannot be set "
                              f"(one of {', '.join(HEADERS)})")
        if not isinstance(value, str) or not value.isascii() or any(
                ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigError(f"{where}: http_server_config.headers.{header} must be a "
                              "one-line ASCII string")
        if HEADERS[header] and value and value.lower() not in HEADERS[header]:
            raise ConfigError(f"{where}: http_server_config.headers.{header} must be one of "
                              f"{', '.join(HEADERS[header])}")
        if value:  # blank: unset
            out[header] = value
    return out


def _rate(section: Any, where: str) -> tuple[float, int] | None:
    """rate_limit: a token bucket, one request per `interval`, bursts of `burst`."""
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: rate_limit must be a mapping")
    if unknown := sorted(str(k) for k in section if k not in ("interval", "burst")):
        raise ConfigError(f"{where}: unknown key rate_limit.{unknown[0]}")
    raw = section.get("interval", "0")
    if raw in ("0", 0):
        return None  # 0 disables the limiter, as in exporter-toolkit
    match = DURATION.fullmatch(raw) if isinstance(raw, str) and raw else None
    if match is None:
        raise ConfigError(f"{where}: rate_limit.interval must be a duration such as 100ms or "
                          "1s")
    interval = sum(int(n) * u for n, u in zip(match.groups(), UNITS, strict=True)
                   if n) if match else 0.0
    burst = section.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or not 0 <= burst <= 1_000_000:
        raise ConfigError(f"{where}: rate_limit.burst must be a whole number")
    if not interval:
        return None  # 0 disables the limiter, as in exporter-toolkit
    if burst < 1:
        raise ConfigError(f"{where}: rate_limit.burst must be at least 1 (0 refuses every "
                          "request)")
    return interval, burst


def _users(users: Any, where: str) -> dict[str, bytes]:
    if not isinstance(users, dict) or not all(
            isinstance(u, str) and isinstance(h, str) for u, h in users.items()):
        raise ConfigError(f"{where}: basic_auth_users must be a mapping of user: bcrypt hash")
    for user, hashed in users.items():
        if not (hashed.startswith(("$2a$", "$2b$", "$2y$")) and len(hashed) == 60
                and hashed[4:6].isdigit() and 4 <= int(hashed[4:6]) <= 31 and hashed[6] == "$"):
            raise ConfigError(f"{where}: basic_auth_users.{user} is not a bcrypt hash")
    try:
        import bcrypt  # noqa: F401 - the optional dependency, checked before serving
    except ImportError:
        raise ConfigError(f"{where}: basic_auth_users needs the bcrypt package "
                          "(pip install 'tqmon[web]')") from None
    return {user: hashed.encode() for user, hashed in users.items()}
