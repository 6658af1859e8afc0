"""The queue systems tqmon reads (`--schema NAME`): the one place a new one is registered.

Each entry names the module whose `collect_workers(ctx)` and `collect_queues(ctx)` turn that
system's keys into the catalog's worker and queue metrics. Modules are imported only when their
schema is chosen, so this table costs nothing at start-up and sits below config, which checks
`--schema` against it. Adding a queue system means adding its module under collectors/ and one
line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schema:
    module: str  # provides collect_workers(ctx) and collect_queues(ctx)
    owns_keys: bool  # tqmon's own contract: it may write (detection, requeue); others are
    # read as they are, never written
    memory: bool = False  # keeps what it heard under tqmon's own {P} keys (never the queue
    # system's): written unless --read-only, as dead-worker detection and the pool counters
    # (collectors.pool_counters) need it
    caps_workers: bool = False  # reports pools and applies --max-worker-series itself (reading
    # only the chosen workers); otherwise it reports every worker and collectors.fleet does both


SCHEMAS: dict[str, Schema] = {
    "native": Schema("tqmon.collectors.native", owns_keys=True, caps_workers=True),
    "rq": Schema("tqmon.collectors.rq", owns_keys=False, memory=True),
    "dramatiq": Schema("tqmon.collectors.dramatiq", owns_keys=False),
    "celery": Schema("tqmon.collectors.celery", owns_keys=False, memory=True),
    "arq": Schema("tqmon.collectors.arq", owns_keys=False, memory=True),
    "sidekiq": Schema("tqmon.collectors.sidekiq", owns_keys=False, memory=True),
    "bullmq": Schema("tqmon.collectors.bullmq", owns_keys=False),
}
