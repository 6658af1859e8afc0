"""Nothing read from Redis acts on the terminal (issue 22): worker ids, names and queue names
with escape sequences, newlines and bidi overrides are shown escaped by `tqmon status` (piped),
`tqmon doctor` and on stderr; `status --json` keeps them exact."""

from __future__ import annotations

import json
import re

import pytest
from helpers import run_tqmon
from hostile import Scripted
from tqmon.heartbeat import Heartbeat

from devtools import devcluster

TITLE = "\x1b]0;PWNED\x07"
CLEAR = "\x1b[2J"
FORGED = "\nFAKE-ROW dead"
BIDI = "\u202egnp.exe"
EVIL = [f"a{TITLE}", f"b{FORGED}", f"c{BIDI}", f"d{CLEAR}\x9b1m\x7f"]
# what must never reach a terminal: C0 (but the newline ending a line), DEL, C1, bidi controls
ACTIVE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _inert(text: str) -> None:
    assert not ACTIVE.search(text), repr(text)
    assert not any(line.lstrip(" !").startswith("FAKE-ROW") for line in text.splitlines()), text


@pytest.fixture(scope="module")
def hostile():
    server = devcluster.start_standalone()
    client = server.client()
    for name in EVIL:
        Heartbeat(client, name=name, worker_id=name, ttl=30, interval=10).beat()
    Heartbeat(client, name="ok-1", worker_id=f"ok{CLEAR}-2", ttl=1, interval=0.5).beat()
    # a key of another contract prefix: doctor suggests `try --prefix ...` with its name
    client.sadd(f"{{x{CLEAR}{FORGED}}}:workers", "w")
    client.sadd("rq:queues", f"rq:queue:q{FORGED}", f"rq:queue:{TITLE}")
    client.rpush(f"rq:queue:q{FORGED}", "job")
    yield server
    server.stop()


def test_status_piped_shows_hostile_names_escaped(hostile):
    result = run_tqmon("status", "--redis-url", hostile.url, "--read-only", check_output=False)
    assert result.returncode == 0, result.stderr
    _inert(result.stdout + result.stderr)
    assert "\\x1b]0;PWNED\\x07" in result.stdout and "\\nFAKE-ROW dead" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    assert "c\\u202egnp.exe" in result.stdout and "d\\x1b[2J\\x9b1m\\x7f" in result.stdout


def test_status_json_stays_exact(hostile):
    result = run_tqmon("status", "--redis-url", hostile.url, "--read-only", "--json",
                       check_output=False)
    ids = {w["id"] for w in json.loads(result.stdout)["workers"]["list"]}
    assert set(EVIL) < ids and f"ok{CLEAR}-2" in ids


def test_status_rq_queue_names_escaped(hostile):
    result = run_tqmon("status", "--redis-url", hostile.url, "--schema", "rq",
                       check_output=False)
    assert result.returncode == 0, result.stderr
    _inert(result.stdout + result.stderr)
    assert "q\\nFAKE-ROW dead" in result.stdout and "\\x1b]0;PWNED" in result.stdout


def test_doctor_shows_hostile_key_names_escaped(hostile):
    result = run_tqmon("doctor", "--redis-url", hostile.url, "--prefix", "nothing",
                       check_output=False)
    _inert(result.stdout + result.stderr)
    assert "--prefix x\\x1b[2J\\nFAKE-ROW" in result.stdout, result.stdout


def test_stderr_lines_are_escaped():
    """An error text chosen by whoever answers as Redis lands on stderr escaped."""
    evil = b"-ERR " + (TITLE + CLEAR + "\x9b2J\u202e").encode() + b"\r\n"
    server = Scripted(lambda words: evil)
    try:
        result = run_tqmon("--redis-url", server.url, "--collectors", "nodes", "--timeout", "1",
                           check_output=False)
    finally:
        server.close()
    assert result.returncode == 0 and result.stderr, result
    _inert(result.stdout + result.stderr)
    assert "\\x1b]0;PWNED\\x07" in result.stderr, result.stderr
