"""Pools name a deployment (tqmon.pools), and pool counters never fall (pool_counters +
lua/pool_totals.lua) under N collectors, on a real redis-server."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from tqmon import config as config_module
from tqmon.collectors import pool_counters
from tqmon.collectors.base import Context
from tqmon.collectors.pool_counters import Reading
from tqmon.parallel import Deadline
from tqmon.pools import Namer, deployment
from tqmon.topology import Topology


@pytest.mark.parametrize("names, pool", [
    (["host:31752:c91a849058f5", "host:4121:0f3a2b9c1d7e"], "host"),  # Sidekiq identities
    (["web-5d9f7c6b8-x2x7q", "web-5d9f7c6b8-k8s2p", "web-7c4b9d6f5-zq9xw"], "web"),  # pods
    (["web-5d9f7c6b8-x2x7q:12:0f3a2b9c1d7e", "web-6b8d9f7c5-2mz5b:7:9a8b7c6d5e4f"], "web"),
    (["celery@worker-0", "celery@worker-1", "celery@worker-2"], "celery@worker"),  # StatefulSet
    (["production_worker_12", "production_worker_3", "production_worker7"], "production_worker"),
    (["ds-x2x7q", "ds-b4n7z"], "ds"),  # DaemonSet
    (["billing.1234", "billing.99"], "billing"),  # name.pid
])
def test_names_of_one_deployment_share_a_pool(names, pool):
    assert {deployment(name) for name in names} == {pool}


@pytest.mark.parametrize("name", ["mail-queue", "api-server", "default", "arq:queue"])
def test_names_without_an_identity_stay(name):
    assert deployment(name) == name


def test_ids_fall_back_and_patterns_win():
    uuid = "4f1c0e6a9b2d4c7e8f0a1b2c3d4e5f60"
    assert deployment(uuid) == "" and deployment("4f1c0e6a-9b2d-4c7e-8f0a-1b2c3d4e5f60") == ""
    namer = Namer()
    assert namer(uuid, fallback="high,low") == "high,low"  # RQ: the queues
    assert namer(uuid) == uuid  # nothing else known: the name itself
    assert namer("host:1:abcdef12", prefer="myapp") == "myapp"  # Sidekiq: the tag
    assert Namer(re.compile(r"^(\w+)\.", re.S))("eu.web-3", prefer="tag") == "eu"


def _ctx(url: str, *extra: str) -> Context:
    cfg = config_module.load(["--redis-url", url, "--schema", "rq", *extra], env={})
    return Context(config=cfg, topology=Topology(mode="standalone", nodes=()), deadline=Deadline(5))


def test_pool_counters_never_fall_and_count_once(standalone):
    client = standalone.client(decode_responses=False)
    ctx = _ctx(standalone.url)

    def fold(*readings: Reading):
        return pool_counters.fold(ctx, client, "rq", readings)

    a, b = Reading("a|t0", "p", 500, 50), Reading("b|t0", "p", 10, 1)
    assert fold(a, b) == ({"p": 510.0}, {"p": 51.0})
    # four collectors at once read the same counts: each rise is added once
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: fold(Reading("a|t0", "p", 520, 50), b), range(4)))
    assert fold() == ({"p": 530.0}, {"p": 51.0})
    # the worker holding 520 leaves: the total stays; a stale, lower read adds nothing
    assert fold(Reading("b|t0", "p", 9, 1)) == ({"p": 530.0}, {"p": 51.0})
    # a restart under the same name is another life (its birth is part of its id)
    assert fold(Reading("a|t1", "p", 3, 0), b) == ({"p": 533.0}, {"p": 51.0})
    # --read-only reads the totals and writes nothing
    before = client.hgetall(b"{tq}:rq:pool_seen")
    assert pool_counters.fold(_ctx(standalone.url, "--read-only"), client, "rq",
                              [Reading("c|t0", "p", 99, 9)]) == ({"p": 533.0}, {"p": 51.0})
    assert client.hgetall(b"{tq}:rq:pool_seen") == before


def test_sidekiq_work_entries_read_as_sidekiq_writes_them():
    """The fast path reads Sidekiq's own compact JSON (queue first, run_at last) without
    parsing the payload, and agrees with a full parse; anything else is parsed."""
    import json

    from tqmon.collectors.sidekiq_work import Job, parse_job

    def compact(entry) -> bytes:
        return json.dumps(entry, separators=(",", ":")).encode()

    cases = [{"queue": "q3", "payload": json.dumps({"class": "J", "run_at": 5}), "run_at": 17},
             {"queue": "queue:q3", "payload": {"queue": "zz", "run_at": 7}, "run_at": 17.5},
             {"queue": "q3", "payload": {"x": '","run_at":9}'}, "run_at": 17},
             {"payload": {}, "queue": "q3", "run_at": 1_700_000_000_000}]  # ms, other order
    for entry in cases:
        assert parse_job(compact(entry)) == parse_job(json.dumps(entry).encode())
        assert parse_job(compact(entry)).queue == "q3"
    assert parse_job(compact(cases[2])) == Job("q3", 17.0)
    assert parse_job(b"not json") is None and parse_job(b'{"queue": 3}') is None
