"""`--web-config-file`: TLS and basic auth for `--listen`, in the Prometheus exporter-toolkit
format, so the file an operator already writes for node_exporter works here too:

    tls_server_config:
      cert_file: /etc/tqmon/tls.crt
      key_file: /etc/tqmon/tls.key
      client_ca_file: /etc/tqmon/ca.crt          # optional
      client_auth_type: RequireAndVerifyClientCert
    basic_auth_users:
      prometheus: $2y$10$...                     # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':')

Checking a bcrypt hash needs the `bcrypt` package (the `web` extra: pip install 'tqmon[web]');
without it a file with `basic_auth_users` is a config error. A checked password is remembered
(as a SHA-256 of user, password and hash) so each scrape does not pay bcrypt's cost again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from .configfile import ConfigError, load_yaml

TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version",
            "max_version", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
            "client_allowed_sans"}
# exporter-toolkit's names -> what Python's ssl can do. RequestClientCert and
# RequireAnyClientCert accept unverified certificates, which ssl cannot: refused, not faked.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


@dataclass
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    _verified: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def auth(self) -> bool:
        return bool(self.users)

    def allowed(self, header: str | None) -> bool:
        """Whether an Authorization header carries a user and password of the file. Slow on a
        password not seen before (bcrypt): call it off the event loop."""
        if not self.users:
            return True
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True
                                                   ).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return False
        token = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        with self._lock:
            if any(hmac.compare_digest(token, seen) for seen in self._verified):
                return True
        import bcrypt  # checked at load time

        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._verified) < 1000:
                    self._verified.add(token)
        return ok


def load(path: str) -> WebConfig:
    """Read with the config file's bounds (size, regular file, no YAML aliases)."""
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
        config.tls = _tls(data["tls_server_config"], where)
    users = data.get("basic_auth_users")
    if users is not None:
        config.users = _users(users, where)
    return config


def _text(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: tls_server_config.{key} must be a string")
    return value


def _tls(section: Any, where: str) -> ssl.SSLContext:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: tls_server_config must be a mapping")
    if unknown := sorted(str(k) for k in section if k not in TLS_KEYS):
        raise ConfigError(f"{where}: unknown key tls_server_config.{unknown[0]}")
    ca = _text(section, "client_ca_file", where)
    auth_type = _text(section, "client_auth_type", where) or "NoClientCert"
    if auth_type not in CLIENT_AUTH:
        raise ConfigError(f"{where}: tls_server_config.client_auth_type {auth_type!r} is not "
                          f"supported (use one of {', '.join(CLIENT_AUTH)})")
    cert, key = _text(section, "cert_file", where), _text(section, "key_file", where)
    if not cert or not key:
        raise ConfigError(f"{where}: tls_server_config needs cert_file and key_file")
    if ca and auth_type == "NoClientCert":
        raise ConfigError(f"{where}: tls_server_config.client_ca_file is set but "
                          "client_auth_type is NoClientCert")
    if CLIENT_AUTH[auth_type] != ssl.CERT_NONE and not ca:
        raise ConfigError(f"{where}: tls_server_config.client_auth_type {auth_type} needs "
                          "client_ca_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    version = _text(section, "min_version", where) or "TLS12"
    if version not in TLS_VERSIONS:
        raise ConfigError(f"{where}: tls_server_config.min_version must be TLS12 or TLS13")
    context.minimum_version = TLS_VERSIONS[version]
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: cannot load tls_server_config cert_file {cert} / key_file "
                          f"{key}: {getattr(exc, 'strerror', None) or exc.args[-1]}") from None
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where}: cannot load tls_server_config client_ca_file {ca}: "
                              f"{getattr(exc, 'strerror', None) or exc.args[-1]}") from None
    context.verify_mode = CLIENT_AUTH[auth_type]
    return context


def _users(users: Any, where: str) -> dict[str, bytes]:
    if not isinstance(users, dict) or not all(
            isinstance(u, str) and isinstance(h, str) for u, h in users.items()):
        raise ConfigError(f"{where}: basic_auth_users must be a mapping of user: bcrypt hash")
    for user, hashed in users.items():
        if not (hashed.startswith(("$2a$", "$2b$", "$2y$")) and len(hashed) == 60):
            raise ConfigError(f"{where}: basic_auth_users.{user} is not a bcrypt hash")
    try:
        import bcrypt  # noqa: F401 - the optional dependency, checked before serving
    except ImportError:
        raise ConfigError(f"{where}: basic_auth_users needs the bcrypt package "
                          "(pip install 'tqmon[web]')") from None
    return {user: hashed.encode() for user, hashed in users.items()}
