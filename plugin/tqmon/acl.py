"""The Redis commands each collector runs, per schema: what `tqmon doctor` checks the ACL user
against, and what its `ACL SETUSER` fix line grants.

Each need is one command with arguments of the right arity on a key the collector really reads
(so key patterns are checked too), bounded so that running a read to test it costs nothing:
`ZRANGE k 0 0`, `XRANGE k - + COUNT 1`. Commands that only run inside tqmon's Lua scripts are
marked `in_script`: doctor never runs those (they write); it asks Redis whether they would be
allowed (ACL DRYRUN, or redis.acl_check_cmd inside a read-only script). The lists follow the
collectors' code and the ACLs documented in docs/heartbeat-contract.md and docs/adapters.md; a
test runs doctor as exactly the documented users.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from . import contract
from .config import Config


@dataclass(frozen=True)
class Need:
    collector: str
    argv: tuple[str, ...]  # a harmless, bounded instance of the command
    key_pattern: str = ""  # the pattern to grant when the key is refused ("" : no key)
    in_script: bool = False  # run only inside tqmon's EVAL scripts (writes): never run to test

    @property
    def rule(self) -> str:
        """The ACL rule naming the command: +xpending, +xinfo|groups."""
        words = self.argv[:2] if self.argv[0].upper() in _CONTAINERS else self.argv[:1]
        return "+" + "|".join(w.lower() for w in words)


_CONTAINERS = {"CLUSTER", "XINFO", "XGROUP", "CLIENT", "ACL", "CONFIG", "SCRIPT", "COMMAND"}


def _reads(collector: str, key: str, pattern: str, *argvs: tuple[str, ...]) -> list[Need]:
    return [Need(collector, tuple(a.replace("$K", key) for a in argv), pattern)
            for argv in argvs]


def _script(collector: str, key: str, pattern: str, *commands: str) -> list[Need]:
    """EVAL itself, and the commands the script runs, each on a key of its pattern."""
    out = [Need(collector, ("EVAL", "return 0", "0"), "")]
    for command in commands:
        out.append(Need(collector, _SCRIPT_ARGV[command](key), pattern, in_script=True))
    return out


_SCRIPT_ARGV = {
    "hset": lambda k: ("HSET", k, "f", "v"), "hget": lambda k: ("HGET", k, "f"),
    "hdel": lambda k: ("HDEL", k, "f"), "hincrby": lambda k: ("HINCRBY", k, "f", "1"),
    "hmget": lambda k: ("HMGET", k, "f"), "hsetnx": lambda k: ("HSETNX", k, "f", "v"),
    "hgetall": lambda k: ("HGETALL", k),
    "zrangebyscore": lambda k: ("ZRANGEBYSCORE", k, "0", "0", "LIMIT", "0", "1"),
    "zadd": lambda k: ("ZADD", k, "1", "m"), "zrem": lambda k: ("ZREM", k, "m"),
    "zscore": lambda k: ("ZSCORE", k, "m"), "zrange": lambda k: ("ZRANGE", k, "0", "0"),
    "zcard": lambda k: ("ZCARD", k), "zremrangebyrank": lambda k: ("ZREMRANGEBYRANK", k, "0", "0"),
    "srem": lambda k: ("SREM", k, "m"), "sismember": lambda k: ("SISMEMBER", k, "m"),
    "del": lambda k: ("DEL", k), "exists": lambda k: ("EXISTS", k), "time": lambda k: ("TIME",),
    "xadd": lambda k: ("XADD", k, "*", "f", "v"), "xack": lambda k: ("XACK", k, "g", "0-1"),
    "xdel": lambda k: ("XDEL", k, "0-1"),
    "xinfo|consumers": lambda k: ("XINFO", "CONSUMERS", k, "g"),
    "xgroup|delconsumer": lambda k: ("XGROUP", "DELCONSUMER", k, "g", "c"),
}

_NODES = [Need("nodes", ("INFO", "replication")), Need("nodes", ("CLUSTER", "INFO")),
          Need("nodes", ("CLUSTER", "NODES"))]


def _native(config: Config) -> list[Need]:
    keys = contract.Keys(config.prefix)
    pattern = f"~{keys.tag}:*"
    out = _reads("workers", keys.workers, pattern,
                 ("TIME",), ("ZCARD", "$K"), ("ZRANGE", "$K", "0", "0"),
                 ("ZMSCORE", "$K", "m"), ("ZCOUNT", "$K", "0", "0"), ("SMEMBERS", "$K"),
                 ("HMGET", "$K", "f"), ("HGET", "$K", "f"), ("HLEN", "$K"),
                 ("HGETALL", "$K"), ("HSCAN", "$K", "0", "COUNT", "1"))
    if not config.read_only:
        out += _script("workers", keys.workers, pattern, "hget", "hset", "hincrby", "zadd",
                       "zrem", "zscore", "srem", "del", "zremrangebyrank")
        stream = config.streams[0][1] if config.streams else keys.queue("high")
        out += [Need("workers", ("XINFO", "CONSUMERS", stream, "g"), _pattern_of(stream)),
                Need("workers", ("EXISTS", stream), _pattern_of(stream), in_script=True),
                Need("workers", ("XGROUP", "DELCONSUMER", stream, "g", "c"),
                     _pattern_of(stream), in_script=True)]
    for _, stream in config.streams:
        out += _reads("queues", stream, _pattern_of(stream),
                      ("TIME",), ("XLEN", "$K"), ("XINFO", "GROUPS", "$K"),
                      ("XPENDING", "$K", "g"), ("XRANGE", "$K", "-", "+", "COUNT", "1"))
        if config.requeue_orphans:
            out += _script("queues", stream, _pattern_of(stream), "xadd", "xack", "xdel")
    return out


def _pattern_of(key: str) -> str:
    """A key pattern to grant for `key`: its hash tag's keys, or its first segment's."""
    if key.startswith("{") and "}" in key:
        return "~" + key[:key.index("}") + 1] + ":*"
    head, sep, _ = key.partition(":")
    return f"~{head}:*" if sep else f"~{key}"


def _pool_counters(config: Config, schema: str) -> list[Need]:
    """collectors.pool_counters: lua/pool_totals.lua on {P}:<schema>:pool_*, or, read-only,
    HGETALL of the totals."""
    tag = contract.Keys(config.prefix).tag
    key, pattern = f"{tag}:{schema}:pool_stats", f"~{tag}:{schema}:*"
    if config.read_only:
        return _reads("workers", key, pattern, ("HGETALL", "$K"))
    return _script("workers", key, pattern, "hmget", "hset", "hsetnx", "hincrby", "zadd",
                   "zrangebyscore", "hdel", "zrem", "hgetall")


def _rq(config: Config) -> list[Need]:
    return _pool_counters(config, "rq") + (_reads(
                "workers", "rq:workers", "~rq:*", ("TIME",), ("SCARD", "$K"),
                   ("SSCAN", "$K", "0", "COUNT", "1"), ("HMGET", "rq:worker:x", "f"),
                   ("PTTL", "rq:worker:x"))
            + _reads("queues", "rq:queues", "~rq:*", ("TIME",), ("SMEMBERS", "$K"),
                     ("LLEN", "rq:queue:default"), ("ZCARD", "rq:wip:default"),
                     ("ZCOUNT", "rq:wip:default", "0", "0")))


def _dramatiq(config: Config) -> list[Need]:
    ns = config.dramatiq_namespace
    queue = f"{ns}:{config.dramatiq_queues[0]}"
    return (_reads("workers", f"{ns}:__heartbeats__", f"~{ns}:*", ("TIME",),
                   ("ZRANGE", "$K", "0", "0"), ("ZCARD", "$K"),
                   ("EXISTS", f"{ns}:__acks__.x.q"))
            + _reads("queues", queue, f"~{ns}:*", ("TIME",), ("LLEN", "$K"),
                     ("HLEN", f"{queue}.DQ.msgs"), ("ZCARD", f"{queue}.XQ"),
                     ("SCARD", f"{ns}:__acks__.x.q"),
                     ("ZRANGEBYSCORE", f"{ns}:__heartbeats__", "0", "0")))


def _celery(config: Config) -> list[Need]:
    p = config.celery_key_prefix
    queue = p + (config.celery_queues[0] if config.celery_queues else "celery")
    pidbox = f"{p}_kombu.binding.celery.pidbox"  # only read: a worker's mailbox, or gone
    out = _reads("workers", queue, "", ("TIME",),
                 ("PSUBSCRIBE", f"{p}/{config.db}.celeryev/worker.*"))
    memory = config.listen is not None or config.interval is not None
    if not config.read_only or memory:
        out += _reads("workers", pidbox, "", ("SRANDMEMBER", "$K", "1"),
                      *([("SMISMEMBER", "$K", "m")] if memory else []))
    tag = contract.Keys(config.prefix).tag
    if not config.read_only:
        out += _script("workers", f"{tag}:celery:workers", f"~{tag}:celery:*", "zadd", "zrange",
                       "hset", "hget", "hmget", "hdel", "zrem", "hincrby")
        out.append(Need("workers", ("SISMEMBER", pidbox, "m"), "~" + pidbox, in_script=True))
        out += _script("queues", f"{tag}:celery:seen", f"~{tag}:celery:*", "hmget", "hset",
                       "hdel")
    out += _pool_counters(config, "celery")
    out += _reads("queues", queue, "", ("TIME",), ("LLEN", "$K"), ("LINDEX", "$K", "-1"),
                  ("SMEMBERS", f"{p}_kombu.binding.celery"), ("HMGET", f"{p}unacked", "f"),
                  ("ZCARD", f"{p}unacked_index"), ("ZRANGE", f"{p}unacked_index", "0", "0"))
    if not config.celery_queues:
        out.append(Need("queues", ("SCAN", "0", "MATCH", "*_kombu.binding.*", "COUNT", "1")))
    return [n if n.key_pattern or len(n.argv) < 2 or n.argv[0] in ("PSUBSCRIBE", "SCAN")
            else Need(n.collector, n.argv, "~" + n.argv[1], n.in_script) for n in out]


def _arq(config: Config) -> list[Need]:
    queue = config.arq_queues[0]
    pattern = _pattern_of(queue)
    return _pool_counters(config, "arq") + (_reads(
                "workers", f"{queue}:health-check", pattern, ("GET", "$K"), ("PTTL", "$K"),
                   ("TIME",))
            + _reads("queues", queue, pattern, ("TIME",), ("ZCARD", "$K"),
                     ("ZCOUNT", "$K", "0", "0"), ("ZRANGE", "$K", "0", "0"),
                     ("EXISTS", "arq:in-progress:x")))


def _sidekiq(config: Config) -> list[Need]:
    out = _reads("workers", "processes", "~processes", ("TIME",), ("SCARD", "$K"),
                 ("SSCAN", "$K", "0", "COUNT", "1"), ("HMGET", "host:1:x", "f"),
                 ("HVALS", "host:1:x:work"), ("GET", "stat:processed"))
    if not config.read_only:
        tag = contract.Keys(config.prefix).tag
        out += _script("workers", f"{tag}:sidekiq:dead", f"~{tag}:sidekiq:*", "zadd", "zrange",
                       "hset", "hdel", "zrem", "hincrby", "sismember")
    out += _reads("queues", "queues", "~queues", ("TIME",), ("SMEMBERS", "$K"),
                  ("LLEN", "queue:default"), ("LINDEX", "queue:default", "-1"),
                  ("ZCARD", "schedule"))
    return out


def _bullmq(config: Config) -> list[Need]:
    prefix = config.bullmq_prefix
    queue = f"{prefix}:{config.bullmq_queues[0] if config.bullmq_queues else 'q'}"
    pattern = f"~{prefix}:*"
    return [Need("workers", ("CLIENT", "LIST")),
            *_reads("queues", queue, pattern, ("TIME",), ("TYPE", f"{queue}:wait"),
                     ("LLEN", f"{queue}:wait"), ("LINDEX", f"{queue}:wait", "-1"),
                     ("LRANGE", f"{queue}:active", "0", "0"), ("ZCARD", f"{queue}:delayed"),
                     ("HGET", f"{queue}:meta", "paused"), ("HMGET", f"{queue}:1", "f"),
                     ("EXISTS", f"{queue}:1:lock"))]


_BY_SCHEMA = {"native": _native, "rq": _rq, "dramatiq": _dramatiq, "celery": _celery,
              "arq": _arq, "sidekiq": _sidekiq, "bullmq": _bullmq}


def needs(config: Config) -> list[Need]:
    """What the enabled collectors run, for the configured schema and options."""
    out = list(_NODES) + _BY_SCHEMA[config.schema](config)
    return [n for n in out if n.collector in config.collectors]


def fix_line(user: str, rules: list[str]) -> str:
    """The ACL SETUSER line adding what is missing: additive, and never a password."""
    return " ".join(["ACL SETUSER", user, *dict.fromkeys(rules)])


# A read-only script (Redis refuses any write from it) that asks Redis whether the user may run
# each command, without running it: ARGV is a count of words, then the words, repeated.
_ASK = """#!lua flags=no-writes
local out, i = {}, 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(ARGV, i + 1, i + n))
  out[#out + 1] = (ok and allowed) and 1 or 0
  i = i + n + 1
end
return out
"""


def check(client: redis.Redis, user: str, wanted: list[Need]) -> tuple[dict[Need, str | None],
                                                                      str]:
    """For each need: None when allowed, else why not ("" when it could not be checked); and
    how it was found out. Nothing here writes: ACL DRYRUN when the user may run it (an admin),
    else each read is run as the collector would (bounded), and the commands tqmon's scripts
    run are asked about inside a no-writes script."""
    pipe = client.pipeline(transaction=False)
    for need in wanted:
        pipe.execute_command("ACL", "DRYRUN", user, *need.argv)
    replies = pipe.execute(raise_on_error=False)
    if replies and not isinstance(replies[0], Exception):
        return {n: None if r == "OK" else _reason(r)
                for n, r in zip(wanted, replies, strict=True)}, "ACL DRYRUN"
    result: dict[Need, str | None] = {}
    direct = [n for n in wanted if not n.in_script and n.argv[0] != "PSUBSCRIBE"]
    pipe = client.pipeline(transaction=False)
    for need in direct:
        pipe.execute_command(*need.argv)
    for need, reply in zip(direct, pipe.execute(raise_on_error=False), strict=True):
        denied = isinstance(reply, redis.exceptions.NoPermissionError)
        result[need] = _reason(str(reply)) if denied else None
    for need in wanted:
        if need.argv[0] == "PSUBSCRIBE":
            result[need] = _psubscribe(client, need)
    scripted = [n for n in wanted if n.in_script]
    may_eval = any(n.argv[0] == "EVAL" and result.get(n) is None for n in wanted)
    if scripted and may_eval:
        words: list[str] = []
        for need in scripted:
            words += [str(len(need.argv)), *need.argv]
        try:
            answers = client.eval(_ASK, 0, *words)
        except redis.RedisError:  # before Redis 7 (no acl_check_cmd, no flags): not checked
            answers = None
        if not isinstance(answers, list) or len(answers) != len(scripted):
            answers = [None] * len(scripted)
        key_refused = {n.key_pattern: result[n] for n in direct
                       if n.key_pattern and "key" in (result[n] or "")}
        for need, answer in zip(scripted, answers, strict=True):
            # acl_check_cmd says no for a command and for a key alike: a key its pattern's
            # reads were refused explains it; otherwise it is the command
            refused = key_refused.get(need.key_pattern) or "command not allowed"
            result[need] = None if answer == 1 else "" if answer is None else refused
    else:
        for need in scripted:
            result[need] = ""  # not checked: EVAL itself is missing, or nothing needs it
    return result, "reads tried"


def _psubscribe(client: redis.Redis, need: Need) -> str | None:
    """PSUBSCRIBE turns its connection into a subscriber: on a connection of its own."""
    pool = client.connection_pool
    conn = pool.make_connection()
    try:
        conn.send_command(*need.argv)
        reply = conn.read_response()
    except redis.exceptions.NoPermissionError as exc:
        return _reason(str(exc))
    except redis.RedisError:
        return ""
    finally:
        conn.disconnect()
    return None if reply else ""


def _reason(reply: object) -> str:
    text = str(reply).removeprefix("NOPERM ").strip()
    return text.splitlines()[0] if text else "not allowed"


# --- the ACLs the docs give: generated from the needs above (devtools/acl_docs.py) ----------

def grants(config: Config) -> tuple[list[str], list[str]]:
    """(key patterns, command rules) that let tqmon run with `config`, in first-need order."""
    wanted = needs(config)
    return (list(dict.fromkeys(n.key_pattern for n in wanted if n.key_pattern)),
            list(dict.fromkeys(n.rule for n in wanted)))


def setuser(user: str, patterns: list[str], groups: list[list[str]], width: int = 92) -> str:
    """`ACL SETUSER user on >PASSWORD resetkeys <patterns> -@all` and the rules as the docs
    show it: each group of rules starts a line, continuation lines are indented, no line
    longer than `width`."""
    lines = [" ".join(["ACL SETUSER", user, "on", ">PASSWORD", "resetkeys", *patterns,
                       "-@all"])]
    for index, rules in enumerate(group for group in groups if group):
        for rule in rules:
            start = index == 0 and lines[-1].endswith("-@all")
            if not start and (rule is rules[0] or len(lines[-1]) + 1 + len(rule) > width):
                lines.append("  " + rule)
            else:
                lines[-1] += " " + rule
    return "\n".join(lines)
