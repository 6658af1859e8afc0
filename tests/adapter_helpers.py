"""Shared by the adapter tests (RQ, Dramatiq, Sidekiq, BullMQ): worker processes, polling,
key digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from helpers import Result, catalog_name, run_tqmon
from tqmon import catalog

from devtools import catalog_source, signals

TESTS = Path(__file__).parent


class Process:
    """A real worker process (rq, dramatiq, sidekiq, node); killed at the end whatever happened."""

    def __init__(self, command: list[str], url: str, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(TESTS), "TQMON_TEST_REDIS_URL": url, **(env or {})}
        self.proc = subprocess.Popen(command, cwd=TESTS, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def signal(self, signum: int) -> None:
        """To the CLI and its children (rq's work horse, dramatiq's worker processes)."""
        for pid in self.session():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def terminate(self) -> None:
        """A clean stop: SIGTERM to the CLI's main process alone, as Kubernetes, `docker stop`
        or systemd's KillMode=mixed send it; the CLI passes it on to its worker processes. Not
        to the whole session: Dramatiq's worker process takes a second SIGTERM (its CLI
        forwards the first) as "kill now" and exits 1 without giving back the messages it
        prefetched."""
        self.proc.send_signal(signal.SIGTERM)

    def session(self) -> list[int]:
        """Every process of the worker's session: RQ's work horse leaves the process group
        (os.setpgrp), not the session."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) == self.proc.pid:  # fields after the name: state ppid pgrp sid
                pids.append(int(stat.parent.name))
        return pids

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.proc.wait(10)


def started_processes() -> Iterator[list[Process]]:
    """Body of the tests' `processes` fixtures: whatever a test started is killed at the end,
    pass or fail."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def poll_tqmon(args: list[str], check: Callable[[Result], bool], timeout: float,
               what: str, env: dict[str, str] | None = None) -> Result:
    """Run tqmon until `check` holds for its output; the last result on success, with the start
    of the last run that failed the check (a death test bounds that, not a guess of how long a
    run takes on a loaded machine)."""
    deadline = time.monotonic() + timeout
    missed = None
    while True:
        started = time.monotonic()
        result = run_tqmon(*args, env=env)
        assert result.returncode == 0, result.stderr
        if check(result):
            result.last_miss_started = missed
            return result
        missed = started
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n"
                                 + result.stdout)
        time.sleep(0.3)


def digest(client: redis.Redis) -> dict[bytes, tuple[bytes, str]]:
    """Every key's type and a hash of its content, read in a canonical order: equal digests
    mean nothing was written. Not DUMP: a read may advance the incremental rehash of a
    hashtable-encoded hash or set, which reorders DUMP's bytes without changing a thing.
    Expiries are left out: they count down by themselves."""
    readers = {
        "string": lambda key: [client.get(key)],
        "list": lambda key: client.lrange(key, 0, -1),
        "set": lambda key: sorted(client.smembers(key)),
        "zset": lambda key: client.zrange(key, 0, -1, withscores=True),
        "hash": lambda key: sorted(client.hgetall(key).items()),
        "stream": lambda key: client.xrange(key),
    }
    out = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        name = kind.decode() if isinstance(kind, bytes) else kind
        content = repr(readers[name](key)).encode() if name in readers else client.dump(key)
        out[key] = (kind, hashlib.sha256(content or b"").hexdigest())
    return out


def system_digest(client: redis.Redis, prefix: str = "{tq}:") -> dict:
    """The digest of the queue system's keys: tqmon's own (`{tq}:` by default: its memory of
    deaths and its pool counters) left out."""
    return {k: v for k, v in digest(client).items()
            if not (k.decode() if isinstance(k, bytes) else k).startswith(prefix)}


def check_signals(schema: str, *results: Result) -> None:
    """The schema's table in the catalog (`signals`) against what real runs emitted: every
    worker or queue metric emitted is listed, and every one listed without a `when` is
    emitted by at least one of the runs."""
    cat = catalog.default()
    table = signals.parse_signals(catalog_source.read_yaml(), cat)[schema]
    emitted = {catalog_name(s.name) for r in results for s in r.samples}
    emitted = {m for m in emitted if cat[m].collector in signals.COLLECTORS}
    extra = emitted - set(table)
    assert not extra, f"{schema} emits metrics its table lacks: {sorted(extra)}"
    always = {m for m, s in table.items() if not s.when}
    assert always <= emitted, f"{schema} lacks metrics its table lists: {always - emitted}"
