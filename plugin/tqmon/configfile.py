"""Reading what the configuration names without trusting it: files are read only when they are
regular files of a bounded size (a FIFO would block forever, /dev/zero never ends, a 10 MB YAML
file costs seconds and hundreds of MB), YAML aliases are refused (an alias bomb expands
exponentially), and every value must already have its declared type: a quoted "false" is a
string, and coercing it would turn TLS verification off or move tasks.
"""

from __future__ import annotations

import math
import os
import stat
from typing import Any

CONFIG_MAX_BYTES = 256 * 1024
SECRET_MAX_BYTES = 4096
MAX_DEPTH = 32  # collections inside collections: a config nests three deep
MAX_DIGITS = 30  # digits of an integer: any count or number of seconds has far fewer

# Declared type of every option a config file may set (the flags' dest names).
BOOLS = frozenset({"tls_insecure", "read_only", "requeue_orphans"})
TEXTS = frozenset({"username", "password_file", "tls_ca_file", "tls_cert_file", "tls_key_file",
                   "tls_server_name", "cluster_name", "textfile", "listen", "prefix", "schema",
                   "format", "dramatiq_namespace", "web_config_file", "worker_pool_pattern",
                   "celery_key_prefix", "celery_sep", "bullmq_prefix", "sentinel_master",
                   "sentinel_username", "sentinel_password_file"})
NUMBERS = frozenset({"timeout", "interval", "heartbeat_ttl", "dead_retention", "rq_worker_ttl",
                     "dramatiq_heartbeat_timeout", "celery_visibility_timeout",
                     "celery_heartbeat_interval", "arq_health_check_interval", "arq_job_timeout",
                     "sidekiq_heartbeat_timeout"})
INTEGERS = frozenset({"max_redeliveries"})
COUNT_OR_ALL = frozenset({"max_worker_series"})  # a whole number, or the string "all"
LISTS = frozenset({"redis_url", "collectors", "group", "dramatiq_queues", "celery_queues",
                   "arq_queues", "bullmq_queues", "sentinel"})  # str or [str]
QUEUES = frozenset({"queue"})  # NAME=STREAM str, a list of them, or {name: stream}
STEPS = frozenset({"celery_priority_steps"})  # "0,3,6,9" or [0, 3, 6, 9]


class ConfigError(Exception):
    """A usage or configuration error: reported as one line, exit status 2."""


def read_bounded(path: str, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; never blocks on a FIFO or device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError:  # a NUL in the path
        raise ConfigError(f"cannot read {what}: the path contains a NUL character") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"cannot read {what} {path}: not a regular file")
        if info.st_size > limit:
            raise ConfigError(f"{what} {path} is too large (over {limit} bytes)")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise ConfigError(f"{what} {path} is too large (over {limit} bytes)")
        return data
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def text(value: str, what: str) -> str:
    """`value` if it is valid UTF-8 text: arguments and environment arrive with undecodable
    bytes as surrogates, which would fail later, in a label or a Redis key."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} is not valid UTF-8") from None
    if "\0" in value:  # a NUL ends a C string: a path or key would silently be another
        raise ConfigError(f"{what} contains a NUL character")
    return value


def load_yaml(path: str, what: str = "config file") -> Any:
    """The YAML document of a bounded file: no aliases, at most MAX_DEPTH collections deep (the
    composer recurses: deeper would be a RecursionError), integers of at most MAX_DIGITS digits
    (Python refuses longer ones with a ValueError). Anything else wrong: one ConfigError."""
    import yaml  # only when a config file is used: PyYAML's import costs every run ~10 ms

    class Bounded(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise ConfigError(f"{what} {path}: YAML aliases (*name) are not allowed")
            if self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
                if self.depth >= MAX_DEPTH:
                    line = self.peek_event().start_mark.line + 1
                    raise ConfigError(f"{what} {path}: nested deeper than {MAX_DEPTH} at line "
                                      f"{line}")
                self.depth += 1
                try:
                    return super().compose_node(parent, index)
                finally:
                    self.depth -= 1
            return super().compose_node(parent, index)

        def construct_yaml_int(self, node: Any) -> Any:
            digits = sum(c.isdigit() for c in str(node.value))
            if digits > MAX_DIGITS:
                raise ConfigError(f"{what} {path}: number out of range at line "
                                  f"{node.start_mark.line + 1}")
            return super().construct_yaml_int(node)

    Bounded.add_constructor("tag:yaml.org,2002:int", Bounded.construct_yaml_int)
    raw = read_bounded(path, what, CONFIG_MAX_BYTES)
    try:
        return yaml.load(raw.decode("utf-8"), Loader=Bounded)  # a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"{what} {path} is not valid YAML{at}") from None


def check_types(data: dict[str, Any], path: str) -> dict[str, Any]:
    """Every value of a config file has its option's declared type, or a ConfigError names
    the key. Nothing is coerced."""
    for key, value in data.items():
        where = f"config file {path}: {key}"
        if key in BOOLS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false (unquoted), not {_kind(value)}")
        elif key in TEXTS:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, not {_kind(value)}")
            text(value, where)
        elif key in NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where} must be a number, not {_kind(value)}")
        elif key in INTEGERS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where} must be a whole number, not {_kind(value)}")
        elif key in COUNT_OR_ALL:
            if not (value == "all" or (isinstance(value, int) and not isinstance(value, bool))):
                raise ConfigError(f"{where} must be a whole number or \"all\", not {_kind(value)}")
        elif key in LISTS:
            if not _str_or_strs(value):
                raise ConfigError(f"{where} must be a string or a list of strings")
        elif key in STEPS and not (isinstance(value, str) or (isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value))):
            raise ConfigError(f"{where} must be a string or a list of whole numbers")
        elif key in QUEUES and not (_str_or_strs(value) or (
                isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in value.items()))):
            raise ConfigError(f"{where} must be NAME=STREAM strings or a mapping of name: stream")
    return data


def _str_or_strs(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a quoted string"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "a mapping"


def seconds(value: Any, what: str, maximum: float) -> float:
    """A number of seconds in (0, maximum]."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what} must be a number of seconds") from None
    if not (number > 0 and math.isfinite(number)) or number > maximum:
        raise ConfigError(f"{what} must be a positive number of seconds, at most {maximum:g}")
    return number
