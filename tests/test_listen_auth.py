"""`--listen` basic auth cannot be starved (issue 22): a flood of wrong passwords, unknown users
and a user whose hash has cost 31 leaves a scraper whose password passed before answered in
under 1 s (measured during the flood); new checks wait in no queue (a full set of slots answers
503 at once); an unknown user costs what a known one does; a failed password is remembered."""

from __future__ import annotations

import secrets
import statistics
import threading
import time

import bcrypt
import pytest
from test_listen_safety import _auth, _request, _start, _stop

FLOOD_SECONDS = 3.0


@pytest.fixture(scope="module")
def hashes():
    return {"prometheus": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=10)).decode(),
            "victim": bcrypt.hashpw(b"other", bcrypt.gensalt(rounds=10)).decode(),
            # cost 31: days per check; nobody can compute it, so a made-up one will do
            "slow": bcrypt.gensalt(rounds=31).decode() + "a" * 31}


@pytest.fixture(scope="module")
def server(hashes, tmp_path_factory):
    from devtools import devcluster

    redis = devcluster.start_standalone()
    web = tmp_path_factory.mktemp("web") / "web.yml"
    web.write_text("basic_auth_users:\n" + "".join(f"  {u}: '{h}'\n" for u, h in hashes.items()))
    proc, port = _start("--redis-url", redis.url, "--collectors", "nodes",
                        "--web-config-file", str(web))
    yield port
    _stop(proc)
    redis.stop()


def _timed(port: int, user: str, password: str, timeout: float = 5) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = _request(port, path="/healthz", headers=_auth(user, password),
                          timeout=timeout)[0]
    except OSError:
        status = 0  # no answer within the timeout
    return status, time.monotonic() - started


def test_valid_scrape_stays_fast_during_a_flood(server):
    port = server
    assert _timed(port, "prometheus", "right", timeout=10)[0] == 200  # checked once, remembered
    stop = threading.Event()
    answers: list[tuple[str, int, float]] = []

    def flood(kind: str) -> None:
        while not stop.is_set():
            user = {"wrong": "victim", "unknown": f"nobody-{secrets.token_hex(4)}",
                    "slow": "slow"}[kind]
            status, took = _timed(port, user, secrets.token_hex(8), timeout=3)
            answers.append((kind, status, took))

    threads = [threading.Thread(target=flood, args=(kind,), daemon=True)
               for kind in ("wrong", "unknown", "slow") * 8]
    for t in threads:
        t.start()
    valid: list[tuple[int, float]] = []
    end = time.monotonic() + FLOOD_SECONDS
    while time.monotonic() < end:
        valid.append(_timed(port, "prometheus", "right"))
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(10)
    took = sorted(t for _, t in valid)
    print(f"valid scrapes during the flood: {len(took)}, median {statistics.median(took):.3f} s,"
          f" max {took[-1]:.3f} s; flood answers: {len(answers)}, 503: "
          f"{sum(s == 503 for _, s, _ in answers)}")
    assert valid and all(status == 200 for status, _ in valid), valid
    assert max(took for _, took in valid) < 1.0, sorted(took for _, took in valid)[-5:]
    # the flood was real: checks were refused at once when the slots were full
    fast = [(s, t) for kind, s, t in answers if kind != "slow"]
    assert {s for s, _ in fast} <= {401, 503} and any(s == 503 for s, _ in fast), answers[:20]
    refused = [t for s, t in fast if s == 503]
    assert statistics.median(refused) < 0.5, refused


def test_unknown_user_costs_what_a_known_one_does(server):
    port = server
    known = [_timed(port, "victim", secrets.token_hex(8), timeout=10) for _ in range(4)]
    unknown = [_timed(port, f"ghost{i}", secrets.token_hex(8), timeout=10) for i in range(4)]
    assert {s for s, _ in known + unknown} == {401}, (known, unknown)
    k, u = statistics.median(t for _, t in known), statistics.median(t for _, t in unknown)
    print(f"401 median: known user {k:.3f} s, unknown user {u:.3f} s")
    assert u > 0.3 * k, (k, u)  # before: 0.006 s against 0.203 s


def test_a_failed_password_is_remembered(server):
    port = server
    first = _timed(port, "victim", "guess-1", timeout=10)
    again = [_timed(port, "victim", "guess-1") for _ in range(3)]
    assert first[0] == 401 and {s for s, _ in again} == {401}
    assert statistics.median(t for _, t in again) < first[1] / 2, (first, again)
