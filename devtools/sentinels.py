"""Throwaway Redis Sentinel set-ups for tests, the demo and the benchmark: a master, its
replicas and N sentinels (Debian's redis-sentinel) on free loopback ports, returned once every
sentinel sees every replica and every other sentinel, so a failover can be asked for at once.

    with running_sentinels(password="s3cret") as s:
        s.urls, s.master_server(), s.failover()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from .devcluster import HOST, DevClusterError, RedisServer, free_port, start_replicated, wait_for

MASTER_NAME = "tqmon-master"
DOWN_AFTER_MS = 1000  # short: a SIGSTOPped master is failed over within a few seconds
ATTEMPT_S = 12  # a forced failover that has not moved the master by then is asked for again


def redis_sentinel_binary() -> str:
    path = shutil.which("redis-sentinel")
    if not path:
        raise DevClusterError("redis-sentinel not found: install it (apt-get install "
                              "redis-sentinel; .ci/system-deps does)")
    return path


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here: the sentinels then listen there too (--sentinel [::1]:P)."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _as_dict(reply: Any) -> dict[str, str]:
    """A SENTINEL reply's entry (RESP2: a flat list of names and values) as field: value."""
    return dict(zip(reply[::2], reply[1::2], strict=False)) if isinstance(reply, list) \
        else dict(reply)


@dataclass(eq=False)
class SentinelServer:
    """One redis-sentinel process monitoring `master_port` under MASTER_NAME."""

    port: int
    master_port: int
    quorum: int = 2
    password: str | None = None
    extra: Sequence[str] = ()  # more sentinel.conf lines; with `tls-port P` it speaks TLS only
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tqmon-sent-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> SentinelServer:
        tls_only = any(line.startswith("tls-port") for line in self.extra)
        lines = [
            f"port {0 if tls_only else self.port}",
            f"bind {HOST}{' ::1' if ipv6_loopback() else ''}",
            "daemonize no", f"dir {self.workdir}",
            f"logfile {self.workdir / 'sentinel.log'}",
            f"sentinel monitor {MASTER_NAME} {HOST} {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} 3000",
            f"sentinel parallel-syncs {MASTER_NAME} 2", *self.extra,
        ]
        if self.password:  # the sentinels' own password; they use it with each other too
            lines += [f"requirepass {self.password}", f"sentinel sentinel-pass {self.password}"]
        conf = self.workdir / "sentinel.conf"  # sentinel rewrites it: its own, writable
        conf.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen([redis_sentinel_binary(), str(conf)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, password=self.password,
                           decode_responses=True, socket_timeout=5)

    def master(self) -> dict[str, str]:
        """SENTINEL MASTER, as field: value."""
        return _as_dict(self.client().execute_command("SENTINEL", "MASTER", MASTER_NAME))

    def replicas(self) -> list[dict[str, str]]:
        """SENTINEL REPLICAS: this sentinel's view of each replica, as field: value."""
        reply = self.client().execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
        return [_as_dict(entry) for entry in reply]

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class SentinelSet:
    servers: list[RedisServer]  # the data nodes, the first the master at the start
    sentinels: list[SentinelServer]

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def args(self) -> list[str]:
        """tqmon's flags for this set (the password goes by environment)."""
        return [a for s in self.sentinels for a in ("--sentinel", s.address)] + [
            "--sentinel-master", MASTER_NAME]

    def master_address(self, sentinel: SentinelServer | None = None) -> str:
        info = (sentinel or self.sentinels[0]).master()
        return f"{info['ip']}:{info['port']}"

    def server(self, address: str) -> RedisServer:
        return next(s for s in self.servers if s.address == address)

    def master_server(self) -> RedisServer:
        return self.server(self.master_address())

    def ready(self, live: Sequence[SentinelServer] | None = None) -> bool:
        """Every live sentinel sees the same master, its replicas as linked replicas and the
        other sentinels. A sentinel refreshes a replica's INFO every 10 s: just after a
        failover it still sees the old master as a master with a broken link, and a failover
        asked for then may find no replica good enough and abort."""
        live = list(self.sentinels if live is None else live)
        views = [s.master() for s in live]
        replicas = len(self.servers) - 1
        return all(v["flags"] == "master" and int(v["num-slaves"]) >= replicas
                   and int(v["num-other-sentinels"]) >= len(self.sentinels) - 1 for v in views) \
            and len({(v["ip"], v["port"]) for v in views}) == 1 \
            and all(r["flags"] == "slave" and r["role-reported"] == "slave"
                    and r["master-link-status"] == "ok" for s in live for r in s.replicas())

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(self.ready, timeout, "the sentinels to see every replica and each other", 0.1)

    def failover(self, timeout: float = 60) -> str:
        """SENTINEL FAILOVER; returns the new master's address once every sentinel names it
        and it answers as a master.

        A forced failover Sentinel accepts can still abort (no replica good enough in its last
        INFO, the promotion slower than failover-timeout on a loaded machine) and is not
        retried by Sentinel itself: it is asked for again until the master moves."""
        old = self.master_address()
        end = time.monotonic() + timeout
        # a failover just before leaves replicas resyncing with the new master: Sentinel then
        # finds no good replica and aborts this one, so wait until they are in step
        wait_for(lambda: self.ready() and self.replicas_in_sync(old), timeout,
                 "the replicas to be in sync with the master", 0.1)
        while True:
            with contextlib.suppress(redis.ResponseError):  # INPROG, NOGOODSLAVE: wait, ask again
                self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            try:
                return self.wait_master_moved(old, min(ATTEMPT_S, max(end - time.monotonic(), 1)))
            except DevClusterError as exc:
                if time.monotonic() >= end:
                    raise DevClusterError(f"{exc}; the sentinels' log:\n{self.log_tail()}") from exc

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every sentinel's log (why a failover aborted: -failover-abort-*)."""
        out = []
        for s in self.sentinels:
            with contextlib.suppress(OSError):
                tail = (s.workdir / "sentinel.log").read_text(errors="replace").splitlines()
                out += [f"{s.address}: {line}" for line in tail[-lines:]]
        return "\n".join(out)

    def replicas_in_sync(self, master: str) -> bool:
        """Every other running data node replicates `master` with its link up."""
        for server in self.servers:
            stopped = server.process is None or server.process.poll() is not None
            if server.address == master or stopped:
                continue
            info = server.client().info("replication")
            if (info.get("role") != "slave" or info.get("master_link_status") != "up"
                    or f"{info.get('master_host')}:{info.get('master_port')}" != master):
                return False
        return True

    def wait_master_moved(self, old: str, timeout: float = 30,
                          live: Sequence[SentinelServer] | None = None) -> str:
        live = list(self.sentinels if live is None else live)

        def moved() -> bool:
            named = {self.master_address(s) for s in live}
            if len(named) != 1 or old in named:
                return False
            role = self.server(named.pop()).client().info("replication").get("role")
            return role == "master"
        wait_for(moved, timeout, f"the sentinels to name a new master instead of {old}", 0.1)
        return self.master_address(live[0])

    def stop(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.stop()


def start_sentinels(sentinels: int = 3, replicas: int = 2, password: str | None = None
                    ) -> SentinelSet:
    """A master with `replicas` replicas and `sentinels` sentinels (quorum: a majority)."""
    servers = start_replicated(replicas)
    quorum = sentinels // 2 + 1
    started = SentinelSet(servers, [SentinelServer(free_port(), servers[0].port, quorum,
                                                   password).start()
                                    for _ in range(sentinels)])
    try:
        for sentinel in started.sentinels:
            wait_for(lambda s=sentinel: s.client().ping(), 15, "a sentinel to start")
        started.wait_ready()
    except BaseException:
        started.stop()
        raise
    return started


@contextlib.contextmanager
def running_sentinels(**kwargs: object) -> Iterator[SentinelSet]:
    started = start_sentinels(**kwargs)  # type: ignore[arg-type]
    try:
        yield started
    finally:
        started.stop()
