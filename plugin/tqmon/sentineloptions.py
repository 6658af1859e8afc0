"""The Sentinel options: which sentinels to ask, for which master, with which credentials.

`--sentinel HOST:PORT` (repeatable; `[::1]:26379` for IPv6) with `--sentinel-master NAME`, or
one `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]` URL where a Redis
URL goes (`rediss+sentinel://` for TLS, to the sentinels and the data nodes alike). The
sentinels' credentials are their own: `--sentinel-username`, `--sentinel-password-file`,
TQMON_SENTINEL_PASSWORD or the URL's; the data nodes keep --username and TQMON_REDIS_PASSWORD.
A run reads either seeds (--redis-url) or the master the sentinels name, never both.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from .configfile import ConfigError, text

ENV_SENTINEL, ENV_MASTER = "TQMON_SENTINEL", "TQMON_SENTINEL_MASTER"
ENV_PASSWORD = "TQMON_SENTINEL_PASSWORD"
ENV_NAMES = (ENV_SENTINEL, ENV_MASTER, ENV_PASSWORD)
SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 26379
MAX_SENTINELS = 32
MAX_NAME = 256


@dataclass(frozen=True)
class SentinelOptions:
    addresses: tuple[tuple[str, int], ...]  # (host, port), in the order given
    master: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    db: int = 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sentinel", metavar="HOST:PORT", action="append",
                   help="a Redis Sentinel to ask for the master, repeatable (env "
                   f"{ENV_SENTINEL}, comma-separated); instead of --redis-url")
    p.add_argument("--sentinel-master", metavar="NAME",
                   help=f"the master's name in the sentinels' configuration (env {ENV_MASTER})")
    p.add_argument("--sentinel-username", metavar="NAME", help="the sentinels' ACL username")
    p.add_argument("--sentinel-password-file", metavar="PATH",
                   help=f"file holding the sentinels' password (or env {ENV_PASSWORD})")


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().split("://", 1)[0] in SCHEMES


def parse_address(value: str, what: str = "--sentinel") -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, or a bare HOST (port 26379); a redis:// or rediss:// in front
    is allowed (rediss: TLS to the sentinels and the data nodes)."""
    value = text(value, what).strip()
    value = value.split("://", 1)[1] if value.lower().startswith(("redis://", "rediss://")) \
        else value
    host, port_text = value, ""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            host = ""
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    elif ":" in value:  # an IPv6 address without brackets cannot carry a port
        host = ""
    port = DEFAULT_PORT
    if port_text:
        port = int(port_text) if port_text.isascii() and port_text.isdigit() else 0
    if not host or not 0 < port < 65536 or any(c in host for c in "/@?# "):
        raise ConfigError(f"{what} takes HOST:PORT or [IPv6]:PORT (e.g. 127.0.0.1:26379), "
                          f"not {value!r}")
    return host, port


def parse_url(url: str) -> tuple[SentinelOptions, bool]:
    """A redis+sentinel:// URL; the second value says whether it carried a password. Errors
    never echo a URL that carries credentials."""
    url = text(url, "redis_url").strip()
    scheme, _, rest = url.partition("://")
    secret = "@" in rest
    safe = "the URL" if secret else f"{scheme}://..."
    authority, _, path = rest.partition("/")
    creds, at, hosts = authority.rpartition("@")
    if "@" in path or "?" in rest or "#" in rest:
        raise ConfigError(f"invalid Sentinel URL ({safe}): expected "
                          f"{scheme}://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]; "
                          "an @, ? or # in a user name or password must be URL-encoded")
    try:
        addresses = tuple(parse_address(h, "a Sentinel URL") for h in hosts.split(","))
    except ConfigError:
        raise ConfigError(f"invalid Sentinel URL ({safe}): each sentinel is HOST:PORT or "
                          "[IPv6]:PORT") from None
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not (
            parts[1].isascii() and parts[1].isdigit())):
        raise ConfigError(f"invalid Sentinel URL ({safe}): the path is /MASTER or /MASTER/DB")
    user = password = None
    if at:
        user_text, colon, password_text = creds.partition(":")
        user = unquote(user_text) or None
        password = unquote(password_text) if colon else None
    return SentinelOptions(addresses, _master(parts[0]), user, password,
                           tls=scheme.lower() == "rediss+sentinel",
                           db=int(parts[1]) if len(parts) == 2 else 0), password is not None


def _master(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or any(
            c.isspace() or not c.isprintable() for c in name):
        raise ConfigError("--sentinel-master takes the master's name as the sentinels know it "
                          "(no spaces)")
    return name


def resolve(flags: Mapping[str, Any], env: Mapping[str, str], file: Mapping[str, Any],
            urls: list[str], read_secret: Callable[[str, str], str],
            as_list: Callable[[Any, str], list[str]]) -> tuple[SentinelOptions | None, list[str]]:
    """The Sentinel set-up (None without one) and any warnings. `urls` are the Redis URLs the
    run was given explicitly (flag, env or file): a sentinel URL among them is the set-up."""
    warnings: list[str] = []
    sentinel_urls = [u for u in urls if is_sentinel_url(u)]
    if "sentinel" in flags:
        raw = flags["sentinel"]
    elif env.get(ENV_SENTINEL):
        raw = as_list(env[ENV_SENTINEL], ENV_SENTINEL)
    elif "sentinel" in file:
        raw = as_list(file["sentinel"], "sentinel")
    else:
        raw = []
    if (raw or sentinel_urls) and len(sentinel_urls) < len(urls):
        raise ConfigError("--sentinel and --redis-url both given: a run reads the master the "
                          "sentinels name, or the seeds, not both")
    if raw and sentinel_urls:
        raise ConfigError("--sentinel and a redis+sentinel:// URL both given: give one")
    if len(sentinel_urls) > 1:
        raise ConfigError("one redis+sentinel:// URL at a time (list every sentinel in it, "
                          "comma-separated)")
    url_password = None
    if sentinel_urls:
        options, has_password = parse_url(sentinel_urls[0])
        url_password = options.password
        if has_password and "redis_url" in flags:
            warnings.append("a password in --redis-url is visible to other local users; use "
                            f"{ENV_PASSWORD} or --sentinel-password-file")
        if "sentinel_master" in flags:
            options = replace(options, master=_master(flags["sentinel_master"]))
    elif raw:
        addresses = tuple(parse_address(a) for a in raw)
        schemes = {a.lower().split("://", 1)[0] for a in raw if "://" in a}
        if len(schemes) > 1:
            raise ConfigError("--sentinel: redis:// and rediss:// mixed; TLS is for all or none")
        master = flags.get("sentinel_master", env.get(ENV_MASTER) or file.get("sentinel_master"))
        if master is None:
            raise ConfigError("--sentinel needs --sentinel-master NAME: the master's name in "
                              "the sentinels' configuration")
        options = SentinelOptions(addresses, _master(master), tls=schemes == {"rediss"})
    else:
        for key in ("sentinel_master", "sentinel_username", "sentinel_password_file"):
            if key in flags or key in file:
                raise ConfigError(f"--{key.replace('_', '-')} goes with --sentinel")
        return None, warnings
    addresses = tuple(dict.fromkeys(options.addresses))
    if len(addresses) > MAX_SENTINELS:
        raise ConfigError(f"at most {MAX_SENTINELS} sentinels")
    if "sentinel_password_file" in flags:
        password = read_secret(flags["sentinel_password_file"], "sentinel password file")
    elif env.get(ENV_PASSWORD):
        password = env[ENV_PASSWORD]
    elif file.get("sentinel_password_file"):
        password = read_secret(str(file["sentinel_password_file"]), "sentinel password file")
    else:
        password = url_password
    username = flags.get("sentinel_username", file.get("sentinel_username")) or options.username
    return SentinelOptions(addresses, options.master, username, password, options.tls,
                           options.db), warnings
