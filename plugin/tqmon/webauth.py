"""Basic auth for `--listen` that bad clients cannot starve.

bcrypt is slow on purpose (cost 10: ~75 ms; cost 31: days), so the work is split in two:

- `quick()`, on the event loop, answers every credential seen before at once: a keyed HMAC of
  user and password looked up in two caches, one of credentials that passed (never evicted by
  failures) and one of recent failures. The MAC's key is random per process, so the caches hold
  no password, and a lookup's time says nothing about how close a guess was.
- Anything new goes to `verify()` in one of SLOTS threads, only after `reserve()` found a free
  slot and no other check running for the same user name; otherwise the request is answered
  503 at once. A flood of wrong passwords, unknown users or a user whose hash has cost 31 can
  fill the slots, never a queue: a scraper whose password passed before is answered at once.
- An unknown user is checked against a dummy hash of the users' cost, so timing does not tell
  which user names exist (as exporter-toolkit does).
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass

# bcrypt checks at once: each takes a core while it runs, and the scrapes need one too
SLOTS = max(2, min(8, (os.cpu_count() or 2) - 1))
MAX_PASSED = 1024  # credentials that passed: the few scrapers a deployment has
MAX_FAILED = 4096  # recent failures, oldest forgotten first
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Attempt:
    """Credentials not seen before: checked by `verify` in a reserved slot."""

    user: str
    password: bytes
    token: bytes


class BasicAuth:
    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._passed: set[bytes] = set()
        self._failed: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._running: set[str] = set()  # user names with a check in a slot
        self._dummy = dummy_hash(users)

    def quick(self, header: str | None) -> bool | Attempt:
        """True or False for a missing, malformed or already-checked header (constant time,
        no bcrypt); an Attempt for credentials that need a bcrypt check."""
        creds = _credentials(header)
        if creds is None:
            return False
        user, password = creds
        token = hmac.new(self._key, user.encode() + b"\0" + password, hashlib.sha256).digest()
        with self._lock:
            if token in self._passed:
                return True
            if token in self._failed:
                self._failed.move_to_end(token)
                return False
        return Attempt(user, password, token)

    def reserve(self, attempt: Attempt) -> bool:
        """Take a slot for the attempt: False (answer 503) when every slot is busy or the same
        user name is being checked already (one slow hash holds one slot, never all)."""
        with self._lock:
            if len(self._running) >= SLOTS or attempt.user in self._running:
                return False
            self._running.add(attempt.user)
            return True

    def release(self, attempt: Attempt) -> None:
        """Give the slot back: called when the check's thread is done, not when its client
        leaves (the thread is busy until bcrypt returns)."""
        with self._lock:
            self._running.discard(attempt.user)

    def verify(self, attempt: Attempt) -> bool:
        """The bcrypt check (slow: in a reserved slot's thread), remembered either way."""
        import bcrypt  # the `web` extra: checked when the web config is loaded

        hashed = self.users.get(attempt.user)
        try:
            ok = bcrypt.checkpw(attempt.password, hashed or self._dummy) and hashed is not None
        except ValueError:  # e.g. a password over 72 bytes (bcrypt >= 5 refuses it)
            ok = False
        with self._lock:
            if ok and len(self._passed) < MAX_PASSED:
                self._passed.add(attempt.token)
            elif not ok:
                self._failed[attempt.token] = None
                while len(self._failed) > MAX_FAILED:
                    self._failed.popitem(last=False)
        return ok


def _credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True
                                               ).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password.encode()) if sep else None


def cost(hashed: bytes) -> int:
    """The cost of a `$2?$NN$...` hash."""
    return int(hashed[4:6])


def dummy_hash(users: dict[str, bytes]) -> bytes:
    """A well-formed hash no password matches, at the cost most users' hashes have (the
    lower on a tie): checking it costs what checking a real user's hash costs. Made up rather
    than computed, so a high cost costs nothing at start-up."""
    import bcrypt

    costs = collections.Counter(cost(h) for h in users.values())
    rounds = min(costs, key=lambda c: (-costs[c], c)) if costs else 10
    salt = bcrypt.gensalt(rounds=rounds)  # a canonical salt: bcrypt refuses some spellings
    return salt + "".join(secrets.choice(BCRYPT_ALPHABET) for _ in range(31)).encode()
