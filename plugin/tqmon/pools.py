"""Pool names: a pool names a deployment, so the processes of one deployment share it and a
restart makes no new one.

`deployment(name)` removes from a process's name what differs between processes of one
deployment, or between two lives of one process: a pid or instance number, a nonce, uuid or
hex id, a Kubernetes pod suffix (Deployment `-5d9f7c6b8-x2x7q`, DaemonSet `-x2x7q`,
StatefulSet `-3`). `Namer` applies either these rules or the user's --worker-pool-pattern, and
takes the adapter's hint first: what the queue system itself says a process belongs to
(Sidekiq's `tag`, a worker's queues, Celery's node name, BullMQ's queue). docs/adapters.md
lists the rule per schema.

    deployment("host:31752:c91a849058f5")       -> "host"          (Sidekiq identity)
    deployment("web-5d9f7c6b8-x2x7q")           -> "web"           (Kubernetes pod)
    deployment("celery@worker-3")               -> "celery@worker" (StatefulSet)
    deployment("production_worker_12")          -> "production_worker"
    deployment("w1")                            -> "w"
    deployment("4f1c0e6a9b2d4c7e8f0a1b2c3d4e5f60") -> ""           (nothing names it)
"""

from __future__ import annotations

import re

from .labels import cut

# Kubernetes' name suffixes use this alphabet (no vowels, no 0 1 3: no words, no look-alikes)
_K8S = "[bcdfghjklmnpqrstvwxz2456789]"
_SEP = "[-_.:@/ ]"
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
_POD = re.compile(rf"-{_K8S}{{6,10}}-{_K8S}{{5}}(?={_SEP}|$)")  # ReplicaSet hash + pod id
# A part that differs from process to process, with the separator before it: a number, a hex
# id (6+ hex digits, a digit and a letter among them), or after `-` a DaemonSet's or bare
# pod's 5 characters (a digit among them). One pass of one compiled pattern: a fleet of
# 100,000 workers names its pools in milliseconds.
_IDENTITY = re.compile(
    rf"(?:^|{_SEP}+)(?:\d+|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{{6,}})(?={_SEP}|$)"
    rf"|-(?=[^-_.:@/ ]*\d){_K8S}{{5}}(?={_SEP}|$)", re.I)
_TRAILING_NUMBER = re.compile(r"\d+$")
_ID_ONLY = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                      re.I)


def deployment(name: str) -> str:
    """`name` without the parts that tell processes of one deployment apart ("" if nothing
    else is left)."""
    # each pattern runs only where it can match (a uuid needs 32 characters, a pod suffix a
    # `-`): a fleet's names are named in half the time, with the same results
    size = len(name)
    if size in (32, 36) and _ID_ONLY.fullmatch(name):  # RQ's default names, Dramatiq's ids
        return ""
    text = _UUID.sub("", name) if size >= 32 else name
    if "-" in text:
        text = _POD.sub("", text)
    text = _IDENTITY.sub("", text).lstrip("-_.:@/ ")
    if not text[-1:].isdigit():  # isdigit() takes every \d (and more): no trailing number
        return text
    return _TRAILING_NUMBER.sub("", text) or text  # `worker12`: an instance number too


class Namer:
    """A worker's pool. With --worker-pool-pattern: its first group on the worker's name (the
    user's rule wins). Otherwise deployment() of, in this order: what the queue system says
    the worker belongs to (`prefer`: Sidekiq's tag), the worker's name, `fallback` (its
    queues, for a name that is only an id, as RQ's default uuid is); else the name itself."""

    def __init__(self, pattern: re.Pattern[str] | None = None) -> None:
        self.pattern = pattern
        self._cache: dict[str, str] = {}  # source -> its deployment (tags, queues repeat)

    def __call__(self, name: str, prefer: str = "", fallback: str = "") -> str:
        if self.pattern is not None:
            match = self.pattern.match(name)
            return cut((match.group(1) if match and match.groups() else "") or name)
        for source in (prefer, name, fallback):
            if source and (pool := self._deployment(source)):
                return pool
        return cut(name)

    def _deployment(self, source: str) -> str:
        pool = self._cache.get(source)
        if pool is None:
            pool = self._cache[source] = cut(deployment(source))
        return pool
