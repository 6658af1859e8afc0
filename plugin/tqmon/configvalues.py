"""Checking one option's value: Redis URLs (never echoing credentials), secrets from files,
--listen addresses, queue pairs, counts and lists. Each returns the parsed value or raises a
ConfigError naming the option; config.py decides where the values come from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .configfile import SECRET_MAX_BYTES, ConfigError, read_bounded, text


@dataclass(frozen=True)
class Target:
    """One seed address from a URL, without credentials."""

    host: str
    port: int
    tls: bool
    db: int = 0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def read_secret(path: str, what: str) -> str:
    raw = read_bounded(path, what, SECRET_MAX_BYTES)
    try:
        secret = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {what} {path}: not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"{what} {path} is empty")
    return secret


def parse_url(url: str) -> tuple[Target, str | None, str | None]:
    """Return the target and any username/password the URL carries; errors never echo it.

    A password with an unencoded `@` followed by `/`, `?` or `#` would split the URL in the
    wrong place and put the password's tail in the host name (and in a DNS lookup, a label and
    an error text): any `@` after the authority is refused, and an error about a URL that
    carries credentials shows its scheme only."""
    text(url, "redis_url")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        parts, port = None, None
    secret = "@" in url
    safe = "the URL" if parts is None or secret else f"{parts.scheme}://{parts.hostname or ''}"
    if parts is not None and "@" in parts.path + parts.query + parts.fragment:
        raise ConfigError("invalid Redis URL in redis_url: an @ after the host; a user name "
                          "or password that contains @, /, ? or # must be URL-encoded "
                          "(%40, %2F, %3F, %23)")
    if parts is None or parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(f"invalid Redis URL ({safe}...): expected redis://host:port or "
                          "rediss://host:port")
    if port == 0:
        raise ConfigError(f"invalid Redis URL ({safe}...): port 0 is not a port")
    path = parts.path.strip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise ConfigError(f"invalid Redis URL ({safe}...): the path must be a database number")
    target = Target(parts.hostname, 6379 if port is None else port,
                    tls=parts.scheme == "rediss", db=int(path or 0))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return target, user, password


def as_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ConfigError(f"{what} must be a string or a list of strings")


def listen_address(value: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, or :PORT for every address (IPv4 and IPv6)."""
    host, _, port = value.rpartition(":")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536 or (
            ":" in host and not (host.startswith("[") and host.endswith("]"))):
        raise ConfigError(f"--listen takes HOST:PORT, [IPv6]:PORT or :PORT "
                          f"(e.g. 127.0.0.1:9840), not {value!r}")
    return host.strip("[]"), int(port)


def queue_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """`NAME=STREAM` strings (flags, or a list in the file) or a {name: stream} mapping."""
    pairs = list(value.items()) if isinstance(value, dict) else [
        tuple(item.split("=", 1)) if "=" in item else (item, "")
        for item in as_list(value, "queue")]
    out = {}
    for name, stream in pairs:
        if not name or not stream:
            raise ConfigError(f"--queue takes NAME=STREAM, not {name!r}")
        out[str(name)] = str(stream)
    return tuple(out.items())


def whole_number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise ConfigError(f"{what} must be a whole number from 0 to 1000000")
    return value


def max_series(value: Any) -> int | None:
    """--max-worker-series: a count of workers, or `all` for no cap."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()) if len(value.strip()) <= 9 else -1
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000_000:
        raise ConfigError("--max-worker-series must be a count of workers (at most 100000000) "
                          "or all")
    return value
