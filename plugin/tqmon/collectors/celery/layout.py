"""Where kombu's Redis transport keeps a Celery app's queues, for every layout its users
configure (`broker_transport_options`: `sep`, `priority_steps`, `global_keyprefix`).

  P<queue>                      LIST of waiting messages at priority step 0 (served first)
  P<queue><sep><n>              the other priority steps' lists (LPUSH; served from the tail)
  P_kombu.binding.<exchange>    SET of `routing_key<sep>pattern<sep>queue`
  P_kombu.binding.celery.pidbox SET of the workers' mailboxes, `<sep><sep><node>.celery.pidbox`

P is global_keyprefix (--celery-key-prefix). The separator (kombu's default `\\x06\\x16`) is
--celery-sep or detected from the binding members, which have a known shape: a direct binding
(every Celery queue) is `queue<sep><sep>queue`, a fanout one `<sep><sep>queue`. The steps are
--celery-priority-steps added to 0..9, probed with LLEN: every step a priority 0-9 can map to,
so kombu's default (0, 3, 6, 9) and `range(10)` both are found without KEYS.

Whatever tqmon cannot read (a member that does not split, bindings only under another prefix, a
list of another type) is never silent: one stderr line per run names it and the option that
fixes it (`tqmon doctor` shows the same lines as findings).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from ... import connection
from ...config import Config
from ..base import BATCH

log = logging.getLogger(__name__)

DEFAULT_SEP = b"\x06\x16"  # kombu's `sep`
PROBED_STEPS = tuple(range(10))  # a Celery priority is 0..9: every step it can map to
BINDING = b"_kombu.binding."
PIDBOX = b"celery.pidbox"  # the control exchange (Celery's `control_exchange`, default celery)
INTERNAL_EXCHANGES = (b"celeryev",)  # events: pub/sub, no lists; *.pidbox: remote control
DEFAULT_QUEUE = b"celery"
DISCOVERY_SCAN_CALLS = 100  # SCAN ... COUNT 1000 calls: at most 100,000 keys looked at
MAX_SEP = 8  # the longest separator detection tries
UNREADABLE = "celery: cannot read"  # the stderr lines doctor turns into findings
NAMED = 3  # keys named in one stderr line


@dataclass(frozen=True)
class Layout:
    prefix: bytes
    sep: bytes
    steps: tuple[int, ...]

    def lists(self, queue: bytes) -> list[bytes]:
        """The priority lists of `queue` (kombu's _q_for_pri): step 0 is the bare name."""
        return [self.prefix + queue if step == 0 else
                self.prefix + queue + self.sep + str(step).encode() for step in self.steps]

    def binding(self, exchange: bytes) -> bytes:
        return self.prefix + BINDING + exchange

    @property
    def pidbox_key(self) -> bytes:
        return self.binding(PIDBOX)

    def pidbox_member(self) -> tuple[bytes, bytes]:
        """Head and tail of a worker's pidbox member: head + nodename + tail."""
        return self.sep + self.sep, b"." + PIDBOX


def layout(config: Config, sep: bytes | None) -> Layout:
    steps = tuple(sorted({*PROBED_STEPS, *(config.celery_priority_steps or ())}))
    return Layout(config.celery_key_prefix.encode(), sep or DEFAULT_SEP, steps)


def configured_sep(config: Config) -> bytes | None:
    return None if config.celery_sep is None else config.celery_sep.encode()


def sep_of(member: bytes) -> bytes | None:
    """The separator of one binding member, from its shape (None if it has neither)."""
    if member.count(DEFAULT_SEP) == 2:
        return DEFAULT_SEP
    for size in range(1, MAX_SEP + 1):  # direct: queue<sep><sep>queue
        half, odd = divmod(len(member) - 2 * size, 2)
        if half > 0 and not odd:
            queue, sep = member[:half], member[half:half + size]
            if member == queue + sep + sep + queue:
                return sep
    for size in range(1, MAX_SEP + 1):  # fanout: <sep><sep>queue
        if len(member) > 2 * size and member[:size] == member[size:2 * size]:
            return member[:size]
    return None


def detect_sep(members: Iterable[bytes]) -> bytes | None:
    """The separator most members have; None if none tells."""
    votes = Counter(sep for sep in map(sep_of, members) if sep is not None)
    return votes.most_common(1)[0][0] if votes else None


def warn(what: str, names: list[bytes], fix: str) -> None:
    """One stderr line: what could not be read, the first few names, and the option."""
    if not names:
        return
    shown = ", ".join(repr(n)[2:-1] for n in names[:NAMED])
    more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
    log.warning("%s %s: %s%s; %s", UNREADABLE, what, shown, more, fix)


def unreadable(lines: Iterable[str]) -> list[tuple[str, str]]:
    """(what, fix) of each `warn` line among a run's stderr lines: doctor's findings."""
    found = []
    for line in lines:
        if line.startswith(UNREADABLE):
            what, _, fix = line.rpartition("; ")
            found.append((what.removeprefix("celery: "), fix))
    return found


def discover(client: redis.Redis, prefix: bytes) -> tuple[list[bytes], list[bytes], bool]:
    """Binding set keys under `prefix`, binding keys under any other prefix, by one SCAN
    bounded to DISCOVERY_SCAN_CALLS; and whether it finished."""
    found: list[bytes] = []
    cursor, complete = 0, False
    for _ in range(DISCOVERY_SCAN_CALLS):
        cursor, keys = client.execute_command("SCAN", cursor, "MATCH", b"*" + _glob(BINDING)
                                              + b"*", "COUNT", BATCH)
        found += keys
        if int(cursor) == 0:
            complete = True
            break
    found = sorted(set(found))
    mine = [key for key in found if key.startswith(prefix + BINDING)]
    others = [key for key in found if not key.startswith(prefix + BINDING)]
    return mine, others, complete


def _glob(text: bytes) -> bytes:
    """`text` as a literal in a SCAN MATCH pattern."""
    return b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c]) for c in text)


def internal(exchange: bytes) -> bool:
    return exchange in INTERNAL_EXCHANGES or exchange.endswith(b".pidbox")


@dataclass
class Bindings:
    layout: Layout
    queues: list[bytes]
    routes: dict[tuple[bytes, bytes], bytes]  # (exchange, routing key) -> queue


def bindings(config: Config, client: redis.Redis, skips: Counter[str]) -> Bindings:
    """The queues to report, the routes to attribute unacked messages with, and the layout
    (the separator detected from the members unless configured)."""
    prefix = config.celery_key_prefix.encode()
    configured = [q.encode() for q in config.celery_queues]
    if configured:
        keys = [prefix + BINDING + name for name in dict.fromkeys([*configured, DEFAULT_QUEUE])]
    else:
        keys, others, complete = discover(client, prefix)
        if not complete:
            log.warning("celery: queue discovery stopped after %d SCAN calls; name the queues "
                        "with --celery-queues", DISCOVERY_SCAN_CALLS)
        if not keys:
            warn("bindings under another key prefix", others,
                 "set --celery-key-prefix to kombu's global_keyprefix")
    exchanges = [key[len(prefix + BINDING):] for key in keys]
    keep = [(key, ex) for key, ex in zip(keys, exchanges, strict=True) if not internal(ex)]
    replies = connection.pipelined(client, [(b"SMEMBERS", key) for key, _ in keep])
    read = [(key, ex, members) for (key, ex), members in zip(keep, replies, strict=True)]
    sep = configured_sep(config) or detect_sep(
        m for _, _, members in read if not isinstance(members, Exception) for m in members)
    found = layout(config, sep)
    routes: dict[tuple[bytes, bytes], bytes] = {}
    bound: list[bytes] = []
    wrong, unsplit = [], []
    for key, exchange, members in read:
        if isinstance(members, Exception):
            skips["wrong_type"] += 1
            wrong.append(key)
            continue
        for member in members:
            parts = member.split(found.sep)
            if len(parts) != 3 or not parts[2]:
                skips["bad_value"] += 1
                unsplit.append(key + b" " + member)
                continue
            routing_key, _, queue = parts
            routes.setdefault((exchange, routing_key), queue)
            bound.append(queue)
    warn("binding sets of another type", wrong, "they are not kombu's")
    warn(f"binding members that do not split by the separator {found.sep!r}", unsplit,
         "set --celery-sep to kombu's `sep` transport option")
    queues = configured or sorted(set(bound)) or [DEFAULT_QUEUE]
    return Bindings(found, queues, routes)
