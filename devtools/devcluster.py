"""Throwaway redis-server processes on free loopback ports, for the demo, tests and benchmark.

Standalone servers, a master with a replica, and a Redis Cluster (3 masters + 3 replicas by
default), each in its own temporary directory, never persisted, stopped on exit.
"""

from __future__ import annotations

import atexit
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

import redis

HOST = "127.0.0.1"
_live: set[RedisServer] = set()


class DevClusterError(RuntimeError):
    pass


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise DevClusterError("redis-server not found: install it (apt-get install redis-server)")
    return path


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(cluster_bus: bool = False) -> int:
    """A free loopback port; with cluster_bus, port + 10000 is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if not cluster_bus or (port < 55535 and _port_free(port + 10000)):
            return port
    raise DevClusterError("no free port pair found")


@dataclass(eq=False)
class RedisServer:
    """One redis-server process; `args` are extra config directives as command-line options."""

    port: int
    args: Sequence[str] = ()
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tqmon-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.address}"

    def start(self) -> RedisServer:
        command = [
            redis_server_binary(), "--port", str(self.port), "--bind", HOST,
            "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--logfile", str(self.workdir / "redis.log"),
            "--repl-diskless-sync-delay", "0",  # replicas sync at once, not after 5 s
            *self.args,
        ]
        # a session of its own: Ctrl-C in the terminal reaches the demo or the tests, which
        # stop the servers after the workers using them, never the servers first
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        _live.add(self)
        return self

    def client(self, **kwargs: object) -> redis.Redis:
        options: dict[str, object] = {"decode_responses": True, "socket_timeout": 5}
        options.update(kwargs)
        return redis.Redis(host=HOST, port=self.port, **options)  # type: ignore[arg-type]

    def wait_ready(self, timeout: float = 15.0, **client_kwargs: object) -> None:
        """Wait until the server accepts connections (a PING error like NOAUTH counts too)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process is not None and self.process.poll() is not None:
                log = (self.workdir / "redis.log")
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise DevClusterError(f"redis-server on {self.port} exited: {tail}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise DevClusterError(f"redis-server on {self.port} did not start")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL: the node dies as in a crash."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        _live.discard(self)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start().wait_ready()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()


def start_servers(count: int, args: Sequence[str] = (), cluster: bool = False) -> list[RedisServer]:
    servers = [RedisServer(free_port(cluster), args).start() for _ in range(count)]
    try:
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def start_standalone(args: Sequence[str] = ()) -> RedisServer:
    return start_servers(1, args)[0]


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    end = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < end:
        try:
            if predicate():  # type: ignore[operator]
                return
        except redis.RedisError as exc:
            last = exc
        time.sleep(interval)
    raise DevClusterError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))


def start_replicated(replicas: int = 1) -> list[RedisServer]:
    """A master followed by its replicas, returned once every replica's link is up."""
    servers = start_servers(1 + replicas)
    master = servers[0]
    for replica in servers[1:]:
        replica.client().replicaof(HOST, master.port)
    wait_for(lambda: all(r.client().info("replication").get("master_link_status") == "up"
                         for r in servers[1:]), 15, "replication link up")
    return servers


@dataclass
class Cluster:
    servers: list[RedisServer]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def by_address(self, address: str) -> RedisServer:
        return next(s for s in self.servers if s.address == address)

    def roles(self) -> dict[str, str]:
        """address -> master | replica, as each live node sees itself."""
        out = {}
        for server in self.servers:
            if server.process is not None and server.process.poll() is None:
                role = server.client().info("replication")["role"]
                out[server.address] = "replica" if role == "slave" else "master"
        return out

    def masters(self) -> list[RedisServer]:
        roles = self.roles()
        return [s for s in self.servers if roles.get(s.address) == "master"]

    def replicas(self) -> list[RedisServer]:
        roles = self.roles()
        return [s for s in self.servers if roles.get(s.address) == "replica"]

    def client(self) -> redis.RedisCluster:
        live = next(s for s in self.servers if s.process and s.process.poll() is None)
        return redis.RedisCluster(host=HOST, port=live.port, decode_responses=True)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def _cluster_ok(servers: Sequence[RedisServer]) -> bool:
    for server in servers:
        info = server.client().cluster("info")
        if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) != len(servers):
            return False
        if int(info.get("cluster_slots_ok", 0)) != 16384:
            return False
    return True


def _form_cluster(servers: Sequence[RedisServer], masters: int, replicas: int) -> None:
    """What `redis-cli --cluster create` does, without its one-second sleeps: assign slots,
    give each master its own epoch, MEET, then attach the replicas."""
    clients = [s.client() for s in servers]
    per = 16384 // masters
    for i, client in enumerate(clients[:masters]):
        high = 16383 if i == masters - 1 else (i + 1) * per - 1
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, high)
        client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
    for server in servers[1:]:
        clients[0].execute_command("CLUSTER", "MEET", HOST, server.port)
    wait_for(lambda: all(int(c.cluster("info")["cluster_known_nodes"]) == len(servers)
                         and "handshake" not in c.execute_command("CLUSTER", "NODES")
                         for c in clients), 30, "every node to know every other", 0.05)
    ids = [c.cluster("myid") for c in clients]
    for n, client in enumerate(clients[masters:]):
        master_id = ids[n % masters]
        wait_for(lambda c=client, m=master_id: c.execute_command("CLUSTER", "REPLICATE", m)
                 == "OK", 30, "replica attached", 0.05)


def start_cluster(masters: int = 3, replicas_per_master: int = 1,
                  node_timeout_ms: int = 2000, args: Sequence[str] = ()) -> Cluster:
    """A Redis Cluster formed with `redis-cli --cluster create`, returned once it is ok."""
    count = masters * (1 + replicas_per_master)
    servers = start_servers(count, [
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(node_timeout_ms), *args,
    ], cluster=True)
    try:
        _form_cluster(servers, masters, replicas_per_master)
        wait_for(lambda: _cluster_ok(servers), 30, "cluster state ok on every node", 0.05)
        cluster = Cluster(servers)
        wait_for(lambda: all(r.client().info("replication").get("master_link_status") == "up"
                             for r in cluster.replicas()), 30, "replica links up", 0.1)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return cluster


@contextlib.contextmanager
def running_cluster(**kwargs: object) -> Iterator[Cluster]:
    cluster = start_cluster(**kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()
