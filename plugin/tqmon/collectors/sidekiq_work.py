"""Sidekiq's work hashes, read for the workers and the queues side alike: the jobs a process
runs now, `<identity>:work` (7+; `<identity>:workers` in 6.x), HASH thread id -> JSON
`{"queue": ..., "payload": ..., "run_at": <Unix seconds (ms in 8) the job started>}`.

The jobs of dead processes are orphaned (collectors.sidekiq); the oldest `run_at` among live
processes' jobs is each queue's running age (collectors.running). One HVALS per hash name,
pipelined 1,000 at a time (the queues side reads the dead and the busy processes' together);
each value parsed with boundedjson (a bad one is `bad_value`).
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import redis

from .. import boundedjson, connection
from .base import BATCH, cut
from .running import RunningAge

WORK_SUFFIXES = (b":work", b":workers")  # Sidekiq 7+, 6.x
MILLISECONDS_ABOVE = 1e11  # a Unix time above this is in milliseconds (Sidekiq 8)


class Job(NamedTuple):  # a tuple: one per running job, built fast
    queue: str
    run_at: float | None  # Unix seconds it started, None when unreadable


def unix_seconds(raw: object) -> float | None:
    """Seconds from a Sidekiq time: float seconds, or integer milliseconds (Sidekiq 8)."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not 0 <= value < float("inf"):
        return None
    return value / 1000 if value > MILLISECONDS_ABOVE else value


# The entry as Sidekiq writes it (Ruby's compact JSON): the queue first, `run_at` last, the
# payload between (an object in 6.x, a string in 7+), read with two byte searches instead of
# parsing the payload. Anything else is parsed.
_HEAD, _TAIL = b'{"queue":"', b',"run_at":'


def parse_job(raw: bytes) -> Job | None:
    """A work-hash entry, or None if it is not one."""
    if raw.startswith(_HEAD) and raw.endswith(b"}") and len(raw) <= boundedjson.MAX_BYTES:
        end, at = raw.find(b'"', len(_HEAD)), raw.rfind(_TAIL)
        if len(_HEAD) < end < at and raw[end + 1:end + 2] == b"," and b"\\" not in raw[:end]:
            run_at = unix_seconds(raw[at + len(_TAIL):-1].decode("ascii", "replace"))
            if run_at is not None:
                queue = raw[len(_HEAD):end].decode("utf-8", "backslashreplace")
                return Job(cut(queue.removeprefix("queue:")), run_at)
    try:
        entry = boundedjson.loads(raw)
    except boundedjson.BadJSON:
        return None
    if not isinstance(entry, dict):
        return None
    queue = entry.get("queue")
    if not isinstance(queue, str) or not queue:
        return None
    return Job(cut(queue.removeprefix("queue:")), unix_seconds(entry.get("run_at")))


def read(client: redis.Redis, identities: list[bytes], skips: Counter[str],
         suffixes: tuple[bytes, ...] | dict[bytes, tuple[bytes, ...]] = WORK_SUFFIXES
         ) -> dict[bytes, list[Job]]:
    """The jobs in the processes' work hashes (HVALS, pipelined BATCH at a time): both names,
    or the ones `suffixes` maps each identity to (its version known: `work_suffix`)."""
    found: dict[bytes, list[Job]] = {}
    batch: list[tuple[bytes, int]] = []  # identity, its number of hashes
    commands: list[tuple[bytes, bytes]] = []

    def flush() -> None:
        replies = connection.pipelined(client, commands) if commands else []
        at = 0
        for identity, count in batch:
            jobs: list[Job] = []
            for reply in replies[at:at + count]:
                if isinstance(reply, Exception):
                    skips["wrong_type"] += 1
                    continue
                for raw in reply:
                    job = parse_job(raw)
                    if job is None:
                        skips["bad_value"] += 1
                    else:
                        jobs.append(job)
            found[identity] = jobs
            at += count
        batch.clear()
        commands.clear()

    for identity in identities:
        names = suffixes if isinstance(suffixes, tuple) else suffixes[identity]
        batch.append((identity, len(names)))
        commands.extend((b"HVALS", identity + suffix) for suffix in names)
        if len(commands) >= BATCH:
            flush()
    if batch:
        flush()
    return found


def work_suffix(concurrency: object) -> tuple[bytes]:
    """The work hash's name from the process hash: Sidekiq 7+ writes `concurrency` there (and
    `<identity>:work`), 6.x neither (`<identity>:workers`)."""
    return WORK_SUFFIXES[:1] if concurrency is not None else WORK_SUFFIXES[1:]


def by_queue(jobs: list[Job]) -> Counter[str]:
    return Counter(job.queue for job in jobs)


def running(work: dict[bytes, list[Job]], skips: Counter[str]) -> RunningAge:
    """The oldest `run_at` per queue among the jobs read."""
    ages = RunningAge()
    for jobs in work.values():
        for job in jobs:
            if job.run_at is None:
                skips["bad_value"] += 1
            else:
                ages.started(job.queue, job.run_at)
    return ages
