"""Configuration from flags, environment and a YAML file: flags win over env, env over file.

Secrets (the Redis password) come from TQMON_REDIS_PASSWORD, a password file, or a URL; the
resolved Config keeps them out of repr() and every URL is stored without its credentials.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import configvalues, contract
from .configfile import ConfigError, check_types, load_yaml, text
from .configfile import seconds as _seconds
from .configvalues import Target
from .flags import (
    ARQ_HEALTH_CHECK_INTERVAL,
    ARQ_JOB_TIMEOUT,
    ARQ_QUEUE,
    CELERY_HEARTBEAT_INTERVAL,
    CELERY_VISIBILITY_TIMEOUT,
    COLLECTORS,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    DRAMATIQ_HEARTBEAT_TIMEOUT,
    ENV_CONFIG,
    ENV_PASSWORD,
    ENV_URL,
    FORMATS,
    MAX_SECONDS,
    MAX_TIMEOUT,
    MAX_WORKER_SERIES,
    RQ_WORKER_TTL,
    SIDEKIQ_HEARTBEAT_TIMEOUT,
    build_parser,
)
from .schemas import SCHEMAS
from .sentineloptions import ENV_NAMES as SENTINEL_ENV_NAMES
from .sentineloptions import SentinelOptions, is_sentinel_url
from .sentineloptions import resolve as resolve_sentinel

# the value checks (configvalues.py), under the names this module always used
_read_secret, _parse_url, _as_list = (configvalues.read_secret, configvalues.parse_url,
                                      configvalues.as_list)
_listen, _queues = configvalues.listen_address, configvalues.queue_pairs
_count, _max_series = configvalues.whole_number, configvalues.max_series

__all__ = ["Config", "ConfigError", "Target", "build_parser", "load"]

@dataclass(frozen=True)
class Config:
    targets: tuple[Target, ...] = (Target("127.0.0.1", 6379, tls=False),)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_server_name: str | None = None
    tls_insecure: bool = False
    cluster_name: str = "default"
    timeout: float = DEFAULT_TIMEOUT
    format: str = "prometheus"
    textfile: Path | None = None
    interval: float | None = None
    listen: tuple[str, int] | None = None
    web_config_file: str | None = None
    collectors: tuple[str, ...] = COLLECTORS
    prefix: str = contract.DEFAULT_PREFIX
    heartbeat_ttl: float = 30.0
    max_worker_series: int | None = MAX_WORKER_SERIES  # None: no cap
    worker_pool_pattern: re.Pattern[str] | None = None  # None: pools.deployment()
    dead_retention: float = 3600.0
    read_only: bool = False
    queues: tuple[tuple[str, str], ...] = ()  # (priority label, stream key); () = contract's
    groups: tuple[str, ...] = ("workers",)
    requeue_orphans: bool = False
    max_redeliveries: int = contract.MAX_REDELIVERIES
    schema: str = "native"
    rq_worker_ttl: float = RQ_WORKER_TTL  # only for a worker hash without an expiry
    dramatiq_namespace: str = "dramatiq"
    dramatiq_heartbeat_timeout: float = DRAMATIQ_HEARTBEAT_TIMEOUT
    dramatiq_queues: tuple[str, ...] = ("default",)
    celery_queues: tuple[str, ...] = ()  # () = every queue bound in kombu's binding sets
    celery_visibility_timeout: float = CELERY_VISIBILITY_TIMEOUT
    celery_key_prefix: str = ""  # kombu's global_keyprefix
    celery_sep: str | None = None  # kombu's `sep`; None = detected from the binding members
    celery_priority_steps: tuple[int, ...] | None = None  # kombu's; None = steps 0..9 probed
    celery_heartbeat_interval: float = CELERY_HEARTBEAT_INTERVAL
    arq_queues: tuple[str, ...] = (ARQ_QUEUE,)
    arq_health_check_interval: float = ARQ_HEALTH_CHECK_INTERVAL
    arq_job_timeout: float = ARQ_JOB_TIMEOUT
    sidekiq_heartbeat_timeout: float = SIDEKIQ_HEARTBEAT_TIMEOUT
    bullmq_prefix: str = "bull"
    bullmq_queues: tuple[str, ...] = ()  # () = the queues connected workers name (CLIENT LIST)
    warnings: tuple[str, ...] = ()
    sentinel: SentinelOptions | None = None  # set: the master comes from these sentinels

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every password this run holds, for redaction."""
        found = [self.password, self.sentinel.password if self.sentinel else None]
        return tuple(s for s in found if s)

    @property
    def tls(self) -> bool:
        """Whether the data nodes are reached over TLS."""
        if self.sentinel is not None:
            return self.sentinel.tls
        return any(t.tls for t in self.targets)

    @property
    def streams(self) -> tuple[tuple[str, str], ...]:
        """(priority, stream key) pairs: configured, or the contract's {P}:queue:<priority>."""
        keys = contract.Keys(self.prefix)
        return self.queues or tuple((p, keys.queue(p)) for p in contract.PRIORITIES)

    @property
    def db(self) -> int:
        """The database the queue's keys live in: the first URL's /N (0 in a cluster)."""
        if self.sentinel is not None:
            return self.sentinel.db
        return self.targets[0].db if self.targets else 0


def _load_file(path: str) -> dict[str, Any]:
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of option: value")
    allowed = {a.dest for a in build_parser()._actions} - {"help", "version", "config"}
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    if unknown := sorted(set(data) - allowed):
        raise ConfigError(f"config file {path}: unknown option {unknown[0]!r}")
    return check_types(data, path)


def _check_flags(flags: dict[str, Any]) -> None:
    """Arguments arrive with undecodable bytes as surrogates: refuse them here, by name."""
    for key, value in flags.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                text(item, "--" + key.replace("_", "-"))


def _celery_sep(value: str | None) -> str | None:
    """kombu's `sep`: text, with \\xNN escapes for the control characters kombu uses."""
    if value is None:
        return None
    try:
        sep = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
    except ValueError:
        sep = ""
    if not sep:
        raise ConfigError("--celery-sep must not be empty")
    return sep


def _celery_steps(value: Any) -> tuple[int, ...] | None:
    """kombu's `priority_steps`: distinct whole numbers from 0 to 255, sorted (kombu bisects)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    try:
        steps = sorted({int(str(v).strip()) for v in items if str(v).strip()})
    except ValueError:
        steps = []
    if not steps or not all(0 <= step <= 255 for step in steps):
        raise ConfigError("--celery-priority-steps must be whole numbers from 0 to 255, "
                          "comma-separated (kombu's default: 0,3,6,9)")
    return tuple(steps)


class _Sources:
    """Where each option comes from: a flag wins over the config file, the file over the
    option's default. (Only the URL, the password and the config path also have an env var.)"""

    def __init__(self, flags: dict[str, Any], env: Mapping[str, str],
                 file: dict[str, Any]) -> None:
        self.flags, self.env, self.file = flags, env, file

    def pick(self, key: str, default: Any = None) -> Any:
        return self.flags.get(key, self.file.get(key, default))


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Resolve the configuration: flags, then environment, then config file, then defaults."""
    src = _sources(argv, os.environ if env is None else env)
    warnings: list[str] = []
    sentinel = _sentinel(src, warnings)
    targets, url_user, url_password = ((), None, None) if sentinel else _redis_urls(src, warnings)
    output = _output(src)
    native = _native(src)
    schema = _schema(src, requeue=native["requeue_orphans"])
    return Config(
        targets=targets,
        username=src.pick("username") or url_user,
        password=_password(src, url_password),
        cluster_name=src.pick("cluster_name", "default"),
        **_tls(src, targets, sentinel),
        **output,
        **native,
        # never write theirs; a schema with memory writes only tqmon's own {P} keys
        read_only=src.pick("read_only", False) or not (SCHEMAS[schema["schema"]].owns_keys
                                                       or SCHEMAS[schema["schema"]].memory),
        **schema,
        warnings=tuple(warnings),
        sentinel=sentinel,
    )


def _sources(argv: Sequence[str] | None, env: Mapping[str, str]) -> _Sources:
    """Precedence's inputs: the parsed flags, the environment and the config file they name."""
    flags = vars(build_parser().parse_args(argv))
    _check_flags(flags)
    for name in (ENV_URL, ENV_PASSWORD, ENV_CONFIG, *SENTINEL_ENV_NAMES):
        if name in env:
            text(env[name], name)
    config_path = flags.get("config") or env.get(ENV_CONFIG)
    return _Sources(flags, env, _load_file(config_path) if config_path else {})


def _redis_urls(src: _Sources, warnings: list[str]
                ) -> tuple[tuple[Target, ...], str | None, str | None]:
    """The seed targets (flag > env > file > default) and any user/password a URL carries."""
    flags, env, file = src.flags, src.env, src.file
    if "redis_url" in flags:
        urls, source = flags["redis_url"], "flag"
    elif env.get(ENV_URL):
        urls, source = _as_list(env[ENV_URL], ENV_URL), "env"
    elif "redis_url" in file:
        urls, source = _as_list(file["redis_url"], "redis_url"), "file"
    else:
        urls, source = [DEFAULT_URL], "default"
    if not urls:
        raise ConfigError("no Redis URL given")
    parsed = [_parse_url(u) for u in urls]
    targets = tuple(dict.fromkeys(t for t, _, _ in parsed))
    url_user = next((u for _, u, _ in parsed if u), None)
    url_password = next((p for _, _, p in parsed if p), None)
    if url_password and source == "flag":
        warnings.append("a password in --redis-url is visible to other local users; "
                        f"use {ENV_PASSWORD} or --password-file")
    return targets, url_user, url_password


def _sentinel(src: _Sources, warnings: list[str]) -> SentinelOptions | None:
    """--sentinel / a redis+sentinel:// URL (sentineloptions), or None for seeds."""
    def listed(value: Any, what: str) -> list[str]:  # a sentinel URL lists its hosts with ,
        return [value.strip()] if isinstance(value, str) and is_sentinel_url(value) \
            else _as_list(value, what)

    if "redis_url" in src.flags:
        urls = src.flags["redis_url"]
    elif src.env.get(ENV_URL):
        urls = listed(src.env[ENV_URL], ENV_URL)
    elif "redis_url" in src.file:
        urls = listed(src.file["redis_url"], "redis_url")
    else:
        urls = []
    sentinel, more = resolve_sentinel(src.flags, src.env, src.file, urls, _read_secret,
                                      _as_list)
    warnings += more
    return sentinel


def _password(src: _Sources, url_password: str | None) -> str | None:
    """--password-file > TQMON_REDIS_PASSWORD > the file's password_file > the URL's."""
    if "password_file" in src.flags:
        return _read_secret(src.flags["password_file"], "password file")
    if src.env.get(ENV_PASSWORD):
        return src.env[ENV_PASSWORD]
    if src.file.get("password_file"):
        return _read_secret(str(src.file["password_file"]), "password file")
    return url_password


def _tls(src: _Sources, targets: tuple[Target, ...], sentinel: SentinelOptions | None
         ) -> dict[str, Any]:
    """TLS to Redis: readable regular files, only with a rediss:// URL, cert and key together."""
    files = {}
    for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        value = src.pick(key)
        if value is not None:
            if not os.access(value, os.R_OK):
                raise ConfigError(f"cannot read {key.replace('_', '-')} {value}")
            if not Path(value).is_file():
                raise ConfigError(f"cannot read {key.replace('_', '-')} {value}: "
                                  "not a regular file")
            files[key] = value
    insecure = src.pick("tls_insecure", False)
    server_name = src.pick("tls_server_name")
    uses_tls = sentinel.tls if sentinel else any(t.tls for t in targets)
    if (files or server_name or insecure) and not uses_tls:
        raise ConfigError("TLS options are set but no URL uses rediss://")
    if ("tls_cert_file" in files) != ("tls_key_file" in files):
        raise ConfigError("--tls-cert-file and --tls-key-file go together")
    return {**files, "tls_server_name": server_name, "tls_insecure": insecure}


def _output(src: _Sources) -> dict[str, Any]:
    """How and where the run reports: deadline, format, textfile/interval or --listen."""
    pick = src.pick
    timeout = _seconds(pick("timeout", DEFAULT_TIMEOUT), "timeout", MAX_TIMEOUT)
    interval = pick("interval")
    interval = None if interval is None else _seconds(interval, "interval", MAX_SECONDS)
    textfile = pick("textfile")
    if interval is not None and not textfile:
        raise ConfigError("--interval needs --textfile to write to")
    listen = _listen(pick("listen")) if pick("listen") is not None else None
    web_config_file = pick("web_config_file")
    if web_config_file is not None and listen is None:
        raise ConfigError("--web-config-file configures --listen: give --listen too")
    if listen and (textfile or interval is not None):
        raise ConfigError("--listen serves over HTTP: it does not go with --textfile or --interval")
    fmt = pick("format", "prometheus")
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}")
    collectors = tuple(dict.fromkeys(_as_list(pick("collectors", list(COLLECTORS)), "collectors")))
    if unknown := [c for c in collectors if c not in COLLECTORS]:
        raise ConfigError(f"unknown collector {unknown[0]!r} (choose from {', '.join(COLLECTORS)})")
    if not collectors:
        raise ConfigError("no collectors selected")
    if textfile:
        directory = Path(textfile).parent
        if Path(textfile).is_dir() or not directory.is_dir():
            raise ConfigError(f"--textfile {textfile}: not a file in an existing directory")
        if not os.access(directory, os.W_OK):
            raise ConfigError(f"--textfile {textfile}: directory {directory} is not writable")
    return {"timeout": timeout, "interval": interval, "format": fmt, "listen": listen,
            "textfile": Path(textfile) if textfile else None,
            "web_config_file": web_config_file, "collectors": collectors}


def _native(src: _Sources) -> dict[str, Any]:
    """The heartbeat contract's options: prefix, TTLs, pools, streams, groups, requeueing."""
    pick = src.pick
    prefix = pick("prefix", contract.DEFAULT_PREFIX)
    try:
        contract.check_prefix(prefix)
    except ValueError as exc:
        raise ConfigError(f"--prefix: {exc}") from None
    groups = tuple(dict.fromkeys(_as_list(pick("group", ["workers"]), "group")))
    if not groups or not all(groups):
        raise ConfigError("--group needs a non-empty name")
    requeue = pick("requeue_orphans", False)
    if requeue and pick("read_only", False):
        raise ConfigError("--requeue-orphans writes to Redis: it cannot go with --read-only")
    try:
        raw_pattern = pick("worker_pool_pattern")
        pool_pattern = None if raw_pattern is None else re.compile(raw_pattern, re.S)
    except re.error as exc:
        raise ConfigError(f"--worker-pool-pattern: {exc}") from None
    if pool_pattern is not None and pool_pattern.groups < 1:
        raise ConfigError("--worker-pool-pattern needs a group: the pool is its first group")
    return {
        "prefix": prefix,
        "heartbeat_ttl": _seconds(pick("heartbeat_ttl", 30.0), "heartbeat-ttl", MAX_SECONDS),
        "dead_retention": _seconds(pick("dead_retention", 3600.0), "dead-retention",
                                   MAX_SECONDS),
        "max_worker_series": _max_series(pick("max_worker_series", MAX_WORKER_SERIES)),
        "worker_pool_pattern": pool_pattern,
        "queues": _queues(pick("queue", [])),
        "groups": groups,
        "requeue_orphans": requeue,
        "max_redeliveries": _count(pick("max_redeliveries", contract.MAX_REDELIVERIES),
                                   "max-redeliveries"),
    }


def _schema(src: _Sources, requeue: bool) -> dict[str, Any]:
    """--schema and each queue system's options, with that system's own defaults."""
    pick = src.pick
    schema = pick("schema", "native")
    if schema not in SCHEMAS:
        raise ConfigError(f"schema must be one of {', '.join(SCHEMAS)}, not {schema!r}")
    if requeue and not SCHEMAS[schema].owns_keys:
        raise ConfigError(f"--requeue-orphans writes to Redis: --schema {schema} is read-only")

    def names(key: str, default: list[str], required: bool) -> tuple[str, ...]:
        flag = key.replace("_", "-")
        out = tuple(dict.fromkeys(_as_list(pick(key, default), flag)))
        if required and not out:
            raise ConfigError(f"--{flag} needs at least one queue name")
        return out

    def secs(key: str, default: float) -> float:
        return _seconds(pick(key, default), key.replace("_", "-"), MAX_SECONDS)

    bullmq_prefix = pick("bullmq_prefix", "bull")
    if not bullmq_prefix:
        raise ConfigError("--bullmq-prefix must not be empty")
    return {
        "schema": schema,
        "rq_worker_ttl": secs("rq_worker_ttl", RQ_WORKER_TTL),
        "dramatiq_namespace": pick("dramatiq_namespace", "dramatiq"),
        "dramatiq_heartbeat_timeout": secs("dramatiq_heartbeat_timeout",
                                           DRAMATIQ_HEARTBEAT_TIMEOUT),
        "dramatiq_queues": names("dramatiq_queues", ["default"], required=True),
        "celery_queues": names("celery_queues", [], required=False),
        "celery_visibility_timeout": secs("celery_visibility_timeout",
                                          CELERY_VISIBILITY_TIMEOUT),
        "celery_key_prefix": pick("celery_key_prefix", ""),
        "celery_sep": _celery_sep(pick("celery_sep")),
        "celery_priority_steps": _celery_steps(pick("celery_priority_steps")),
        "celery_heartbeat_interval": secs("celery_heartbeat_interval",
                                          CELERY_HEARTBEAT_INTERVAL),
        "arq_queues": names("arq_queues", [ARQ_QUEUE], required=True),
        "arq_health_check_interval": secs("arq_health_check_interval",
                                          ARQ_HEALTH_CHECK_INTERVAL),
        "arq_job_timeout": secs("arq_job_timeout", ARQ_JOB_TIMEOUT),
        "sidekiq_heartbeat_timeout": secs("sidekiq_heartbeat_timeout",
                                          SIDEKIQ_HEARTBEAT_TIMEOUT),
        "bullmq_prefix": bullmq_prefix,
        "bullmq_queues": names("bullmq_queues", [], required=False),
    }
