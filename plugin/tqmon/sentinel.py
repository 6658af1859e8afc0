"""Ask the Redis Sentinels which node is the master, in parallel, inside the run's deadline.

Each sentinel gets one round trip (SENTINEL MASTER, REPLICAS, SENTINELS and CKQUORUM for the
configured name) on a client with no retries whose socket timeouts come from the deadline.
Discovery goes on as soon as a majority of the configured sentinels name the same master (or
all answered, or its share of the run is over): a stuck sentinel costs discovery nothing. Its
answer is still awaited while the collectors work; when they are done it gets a grace of
SETTLE_FACTOR times the slowest answer (at least SETTLE_MIN seconds since it was asked, never
past the deadline) and is then reported down: a SIGSTOPped sentinel costs a run about half a
second, not its whole deadline, and a network slow for every sentinel alike still waits.

Where sentinels disagree the master is the one most name (ties: the highest config epoch), and
the disagreement is reported (redis_cluster_sentinels_agreeing).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from . import connection
from .config import Config
from .failures import NODE_ERRORS
from .model import Samples, describe_error
from .parallel import Deadline

log = logging.getLogger(__name__)

# Why a sentinel is not up: a fixed set, the `reason` label of redis_cluster_sentinel_failed.
REASONS = ("unreachable", "timeout", "auth", "no_permission", "unknown_master", "error")
COMMANDS = ("MASTER", "REPLICAS", "SENTINELS", "CKQUORUM")
SETTLE_MIN, SETTLE_FACTOR = 0.5, 4.0
MAX_PEERS = 256  # replicas or sentinels read from one reply: a bound, far above real set-ups


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Peer:
    """A node or sentinel as a sentinel lists it."""

    host: str
    port: int
    flags: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return address(self.host, self.port)


@dataclass(frozen=True)
class Answer:
    """What one sentinel said; `reason` set when it said nothing useful."""

    master: Peer | None = None
    epoch: int | None = None
    quorum: int | None = None
    replicas: tuple[Peer, ...] = ()
    sentinels: tuple[Peer, ...] = ()
    quorum_ok: bool | None = None  # CKQUORUM; None: not answered or refused
    refused: tuple[str, ...] = ()  # SENTINEL subcommands refused by its ACL
    reason: str = ""
    detail: str = ""


def _fields(reply: Any) -> dict[str, str]:
    """A RESP2 flat list of names and values as a dict (a malformed one as {})."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    if not isinstance(reply, list) or len(reply) % 2:
        return {}
    return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def _peer(entry: Any) -> Peer | None:
    fields = _fields(entry)
    port = fields.get("port", "")
    if not fields.get("ip") or not (port.isascii() and port.isdigit()) \
            or not 0 < int(port) < 65536:
        return None
    return Peer(fields["ip"], int(port), tuple(fields.get("flags", "").split(",")))


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def _classify(exc: BaseException) -> str:
    text = describe_error(exc).lower()
    if isinstance(exc, redis.AuthenticationError) or "wrongpass" in text \
            or "invalid username-password" in text or "noauth" in text \
            or "authentication required" in text:
        return "auth"
    if isinstance(exc, redis.exceptions.NoPermissionError) or "noperm" in text:
        return "no_permission"
    if "no such master" in text:
        return "unknown_master"
    if isinstance(exc, TimeoutError | redis.TimeoutError) or "timeout" in text \
            or "timed out" in text:
        return "timeout"
    if isinstance(exc, NODE_ERRORS):
        return "unreachable"
    return "error"


def parse(replies: list[Any]) -> Answer:
    """One sentinel's four replies (an error reply in its slot) as an Answer."""
    master_reply, replicas_reply, sentinels_reply, quorum_reply = replies
    if isinstance(master_reply, BaseException):
        return Answer(reason=_classify(master_reply), detail=describe_error(master_reply))
    fields = _fields(master_reply)
    master = _peer(master_reply)
    if master is None:
        return Answer(reason="error", detail="unexpected SENTINEL MASTER reply")
    refused = tuple(name for name, reply in zip(COMMANDS, replies, strict=True)
                    if isinstance(reply, BaseException) and _classify(reply) == "no_permission")

    def peers(reply: Any) -> tuple[Peer, ...]:
        found = [_peer(e) for e in reply[:MAX_PEERS]] if isinstance(reply, list) else []
        return tuple(p for p in found if p is not None)

    quorum_ok = None
    if isinstance(quorum_reply, str):
        quorum_ok = quorum_reply.startswith("OK")
    elif isinstance(quorum_reply, BaseException) and "noquorum" in str(quorum_reply).lower():
        quorum_ok = False
    return Answer(master=master, epoch=_int(fields.get("config-epoch")),
                  quorum=_int(fields.get("quorum")), replicas=peers(replicas_reply),
                  sentinels=peers(sentinels_reply), quorum_ok=quorum_ok, refused=refused)


def ask(config: Config, host: str, port: int, deadline: Deadline) -> Answer:
    """One round trip to one sentinel; a connection failure is an Answer with its reason."""
    assert config.sentinel is not None
    name = config.sentinel.master
    client = connection.client(config, host, port, deadline, tls=config.sentinel.tls,
                               sentinel=True)
    try:
        replies = connection.pipelined(client, [("SENTINEL", c, name) for c in COMMANDS])
    except Exception as exc:  # reported per sentinel, never raised into the run
        return Answer(reason=_classify(exc), detail=describe_error(exc))
    finally:
        client.close()
    return parse(replies)


@dataclass
class View:
    """The sentinels' answers as they arrive; `settle` waits for the rest."""

    config: Config
    addresses: tuple[tuple[str, int], ...]
    answers: dict[str, Answer] = field(default_factory=dict)
    _done: threading.Condition = field(default_factory=threading.Condition)
    _started: float = 0.0
    _slowest: float = 0.0  # seconds the slowest sentinel that named a master took

    @property
    def names(self) -> list[str]:
        return [address(h, p) for h, p in self.addresses]

    def start(self, deadline: Deadline) -> View:
        self._started = time.monotonic()
        for (host, port), name in zip(self.addresses, self.names, strict=True):
            threading.Thread(target=self._ask, args=(name, host, port, deadline), daemon=True,
                             name="tqmon-sentinel").start()
        return self

    def _ask(self, name: str, host: str, port: int, deadline: Deadline) -> None:
        answer = ask(self.config, host, port, deadline)
        with self._done:
            self.answers[name] = answer
            if answer.master is not None:
                self._slowest = max(self._slowest, time.monotonic() - self._started)
            self._done.notify_all()

    def wait(self, deadline: Deadline, majority: bool) -> dict[str, Answer]:
        """Until every sentinel answered, or (with `majority`) a majority of the configured
        ones name one master, or the deadline; the answers so far."""
        def enough() -> bool:
            if len(self.answers) == len(self.addresses):
                return True
            return majority and self._agreeing(self._master()) * 2 > len(self.addresses)

        with self._done:
            while not enough() and deadline.remaining() > 0:
                self._done.wait(deadline.remaining())
            return dict(self.answers)

    def settle(self, deadline: Deadline) -> dict[str, Answer]:
        """Every sentinel's answer; one still silent after its grace (see above) or at the
        deadline is timed out."""
        with self._done:
            while len(self.answers) < len(self.addresses):
                until = deadline.end
                if self._slowest:
                    until = min(until, self._started + max(SETTLE_MIN,
                                                           SETTLE_FACTOR * self._slowest))
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._done.wait(left)
            answers = dict(self.answers)
        waited = time.monotonic() - self._started
        for name in self.names:
            answers.setdefault(name, Answer(
                reason="timeout", detail=f"no answer in {waited * 1000:.0f} ms"
                + (", while the others answered" if self._slowest else "")))
        return answers

    def _master(self, answers: dict[str, Answer] | None = None) -> Peer | None:
        """The master most sentinels name; ties go to the highest config epoch."""
        answers = self.answers if answers is None else answers
        votes: dict[str, tuple[int, int, Peer]] = {}
        for answer in answers.values():
            if answer.master is None:
                continue
            count, epoch, peer = votes.get(answer.master.address, (0, -1, answer.master))
            votes[answer.master.address] = (count + 1, max(epoch, answer.epoch or 0), peer)
        if not votes:
            return None
        return max(votes.values(), key=lambda v: (v[0], v[1]))[2]

    def _agreeing(self, master: Peer | None, answers: dict[str, Answer] | None = None) -> int:
        answers = self.answers if answers is None else answers
        return 0 if master is None else sum(
            1 for a in answers.values() if a.master and a.master.address == master.address)

    def master(self, answers: dict[str, Answer]) -> tuple[Peer | None, list[Answer]]:
        """The majority's master and the answers that name it."""
        master = self._master(answers)
        agreeing = [a for a in answers.values()
                    if master is not None and a.master and a.master.address == master.address]
        return master, agreeing


def samples(view: View, deadline: Deadline, cluster_name: str) -> Samples:
    """The sentinel metrics, once every answer is in or the deadline passed; one stderr line
    per kind of failure, naming the sentinels it hit."""
    answers = view.settle(deadline)
    master, agreeing = view.master(answers)
    name = view.config.sentinel.master if view.config.sentinel else ""
    base = {"master_name": name, "cluster_name": cluster_name}
    out = Samples()
    failed: dict[str, list[str]] = {}
    for sentinel in view.names:
        answer = answers[sentinel]
        up = answer.master is not None
        out.add("redis_cluster_sentinel_up", {"sentinel": sentinel, **base}, 1.0 if up else 0.0)
        if not up:
            out.add("redis_cluster_sentinel_failed",
                    {"sentinel": sentinel, "reason": answer.reason, **base}, 1.0)
            failed.setdefault(answer.reason, []).append(sentinel)
    for reason, where in failed.items():
        detail = next(answers[s].detail for s in where)
        log.warning("sentinel %s: %s", ", ".join(where), _why(reason, name, detail))
    refused = sorted({c for a in answers.values() for c in a.refused})
    if refused:
        log.warning("sentinel: its ACL refuses SENTINEL %s: run `tqmon doctor` for the fix",
                    ", ".join(refused))
    if master is None:
        return out
    out.add("redis_cluster_sentinels_agreeing", base, float(len(agreeing)))
    out.add("redis_cluster_sentinel_master_info", {**base, "master_id": master.address}, 1.0)
    epochs = [a.epoch for a in agreeing if a.epoch is not None]
    if epochs:
        out.add("redis_cluster_sentinel_master_config_epoch", base, float(max(epochs)))
    # by count, not address: sentinels announce IPs where tqmon may be given host names
    out.add("redis_cluster_sentinels_known", base,
            float(max(len(a.sentinels) + 1 for a in answers.values() if a.master)))
    verdicts = [a.quorum_ok for a in agreeing if a.quorum_ok is not None]
    if verdicts:
        out.add("redis_cluster_sentinel_quorum_ok", base, 1.0 if any(verdicts) else 0.0)
    return out


def _why(reason: str, name: str, detail: str) -> str:
    return {
        "auth": "authentication failed: check TQMON_SENTINEL_PASSWORD / "
                "--sentinel-password-file and --sentinel-username",
        "unknown_master": f"no master named {name!r} (--sentinel-master): see `SENTINEL "
                          "MASTERS` on a sentinel",
        "no_permission": f"its ACL refuses SENTINEL MASTER ({detail})",
        "timeout": detail,
    }.get(reason, detail)
