"""The catalog's own rules, and that it matches what the plugin emits in both directions."""

from __future__ import annotations

import copy

import pytest
import yaml
from helpers import catalog_name, run_tqmon
from tqmon import catalog, collectors
from tqmon.catalog import CatalogError
from tqmon.heartbeat import Heartbeat
from tqmon.schemas import SCHEMAS
from tqmon.streams import TaskStreams

from devtools import catalog_source, signals

GOOD = {
    "version": 1,
    "labels": {"node_id": "one per node"},
    "metrics": [{"name": "x_up", "type": "gauge", "unit": "", "help": "h",
                 "labels": ["node_id"], "collector": "nodes", "origin": "tqmon"}],
}


def _with(**changes):
    doc = copy.deepcopy(GOOD)
    doc["metrics"][0].update(changes)
    return doc


@pytest.mark.parametrize(("doc", "message"), [
    ({**GOOD, "metrics": GOOD["metrics"] * 2}, "listed twice"),
    (_with(type="summary"), "type must be one of"),
    (_with(help=""), "help text is missing"),
    (_with(labels="node_id"), "labels must be a list"),
    (_with(labels=["node_id", "node_id"]), "duplicate label"),
    (_with(labels=["undeclared"]), "not declared"),
    (_with(name="bad-name"), "not a valid Prometheus metric name"),
    (_with(type="counter"), "counters, and only counters, end in _total"),
    (_with(name="x_total"), "counters, and only counters, end in _total"),
    (_with(name="x_bytes"), "declares no unit"),
    (_with(unit="bytes"), "must end in _bytes"),
    (_with(unit="furlongs"), "unit must be one of"),
    (_with(type="info"), "info metrics end in _info"),
    (_with(type="histogram", name="x_seconds", unit="seconds"), "list their bucket bounds"),
    (_with(type="histogram", name="x_seconds", unit="seconds", buckets=[2, 1]),
     "strictly increasing"),
    (_with(origin="elsewhere"), "origin must be one of"),
    (_with(colour="red"), "unknown keys"),
    ({**GOOD, "version": 2}, "version: 1"),
])
def test_invalid_catalogs_are_rejected(doc, message):
    with pytest.raises(CatalogError, match=message):
        catalog.parse(doc)


def test_valid_catalog_loads():
    assert list(catalog.parse(GOOD).metrics) == ["x_up"]


def test_shipped_catalog_is_valid_and_keeps_the_seed_names():
    cat = catalog.default()
    seed = {
        "redis_cluster_node_up": ("node_id", "role", "cluster_name"),
        "redis_cluster_memory_bytes": ("node_id", "role", "cluster_name"),
        "redis_cluster_connected_clients": ("node_id", "role", "cluster_name"),
        "redis_cluster_ops_per_sec": ("node_id", "role", "cluster_name"),
        "redis_cluster_replication_lag_seconds": ("master_id", "replica_id", "cluster_name"),
    }
    for name, labels in seed.items():
        assert cat[name].labels == labels and cat[name].origin == "seed"
    assert {m.name for m in cat.metrics.values() if m.origin == "seed"} >= set(seed)
    with open(catalog_source.SOURCE) as f:
        assert catalog.parse(yaml.safe_load(f)) == cat


def test_compiled_catalog_is_current():
    """catalog.json, which every run reads, is exactly what catalog.yaml compiles to."""
    assert catalog.COMPILED.read_text() == catalog_source.compiled_text(), "run `make catalog`"


def test_every_catalog_metric_is_emitted(cluster, replicated):
    """Drift the other way: a catalog entry no run emits is a stale entry or a broken collector."""
    client = replicated[0].client()
    live = Heartbeat(client, name="live", worker_id="catalog-live")
    live.beat()
    live.task_started()
    live.task_finished(0.1)
    Heartbeat(client, name="gone", worker_id="catalog-dead").beat()
    client.zadd("{tq}:workers", {"catalog-dead": 1})  # last beat long ago
    queues = TaskStreams(client)
    queues.ensure_groups()
    queues.enqueue("high", {"payload": "x"})
    queues.enqueue("high", {"payload": "y"})
    queues.next("catalog-dead")  # an orphan
    seen: set[str] = set()
    for url in (cluster.urls[0], replicated[0].url):
        result = run_tqmon("--redis-url", url)
        seen |= {catalog_name(s.name) for s in result.samples}
    client.delete(*client.scan_iter("{tq}:*"))
    implemented = {*collectors.registry(), "self"}
    # the native run emits its own signals; the other schemas' are checked against their
    # tables by their own tests (adapter_helpers.check_signals)
    native = signals.parse_signals(catalog_source.read_yaml())["native"]
    expected = {m.name for m in catalog.default().metrics.values() if m.collector in implemented
                and (m.collector not in signals.COLLECTORS or m.name in native)}
    assert expected - seen == set()


def test_signal_tables_cover_every_schema_and_say_who_keeps_counters():
    """Each schema's table lists catalog metrics of the workers and queues collectors, and
    every counter in it names what keeps it monotonic (docs/adapters.md is rendered from it)."""
    document = catalog_source.read_yaml()
    tables = signals.parse_signals(document)
    assert set(tables) == set(SCHEMAS)
    broken = copy.deepcopy(document)
    del broken["signals"]["rq"]["worker_pool_tasks_failed_total"]["monotonic"]
    with pytest.raises(CatalogError, match="monotonic"):
        signals.parse_signals(broken)
    broken = copy.deepcopy(document)
    broken["signals"]["rq"]["redis_cluster_node_up"] = {"from": "x"}
    with pytest.raises(CatalogError, match="not a workers or queues metric"):
        signals.parse_signals(broken)
    assert signals.rendered_doc(document, signals.DOC.read_text()) == signals.DOC.read_text(), (
        "docs/adapters.md's signal tables are stale: run `make catalog`")
