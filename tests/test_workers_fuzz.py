"""Property: whatever other code wrote into the contract's hashes, the worker collector neither
crashes nor emits output the exposition parser or promtool would reject."""

from __future__ import annotations

import pytest
from helpers import check_exposition, run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools import devcluster

FIELDS = ["name", "hostname", "started_at", "status", "tasks_processed", "tasks_failed",
          "current_task", "pid"]
blobs = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40),
    st.sampled_from(["nan", "inf", "-1", "1e400", "0x10", "12", "3.5", "idle", "processing",
                     "", " ", "\x00", "\\", '"', "\n"]),
)
worker_hash = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)),
                              blobs, max_size=10)
latency_field = st.one_of(
    st.builds(lambda le, s: f"bucket|{le}|{s}",
              st.sampled_from(["0.005", "1.0", "+Inf", "7", "x"]), st.text(max_size=20)),
    st.builds(lambda s: f"sum|{s}", st.text(max_size=20)),
    st.text(max_size=20),
)


@pytest.fixture(scope="module")
def server():
    started = devcluster.start_standalone()
    yield started
    started.stop()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    workers=st.dictionaries(st.one_of(st.binary(min_size=1, max_size=30),
                                      st.text(min_size=1, max_size=30)),
                            st.tuples(st.floats(allow_nan=False, min_value=0, max_value=4e9),
                                      worker_hash), max_size=6),
    latency=st.dictionaries(latency_field, blobs, max_size=8),
    stats=st.dictionaries(st.sampled_from(["dead_workers_detected", "tasks_reassigned", "x"]),
                          blobs, max_size=3),
)
def test_arbitrary_contract_data_never_breaks_output(server, workers, latency, stats):
    client = server.client(decode_responses=False)
    client.flushall()
    for worker_id, (score, fields) in workers.items():
        raw_id = worker_id if isinstance(worker_id, bytes) else worker_id.encode()
        client.zadd(b"{tq}:workers", {raw_id: score})
        if fields:
            client.hset(b"{tq}:worker:" + raw_id, mapping=fields)
    if latency:
        client.hset(b"{tq}:latency", mapping=latency)
    if stats:
        client.hset(b"{tq}:stats", mapping=stats)
    text = run_in_process("--redis-url", server.url, "--collectors", "workers")
    samples = check_exposition(text)
    up = [s.value for s in samples if s.name == "tqmon_collector_up"]
    assert up == [1.0]
    assert len([s for s in samples if s.name == "worker_up"]) == len(
        {(k if isinstance(k, bytes) else k.encode()) for k in workers})
