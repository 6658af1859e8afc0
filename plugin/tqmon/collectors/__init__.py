"""Collectors: each turns one aspect of the topology into samples; none of them prints.

`nodes` reads Redis itself. `workers` and `queues` read the keys of the queue system chosen with
--schema, through the module schemas.SCHEMAS names for it.
"""

from __future__ import annotations

import importlib

from ..model import Samples
from ..schemas import SCHEMAS
from . import fleet, nodes
from .base import Collect, Context


def _workers(ctx: Context) -> Samples:
    schema = SCHEMAS[ctx.config.schema]
    samples = importlib.import_module(schema.module).collect_workers(ctx)
    if schema.caps_workers:
        return samples
    return fleet.cap_reported(samples, ctx.config.max_worker_series,
                              ctx.config.worker_pool_pattern)


def _queues(ctx: Context) -> Samples:
    return importlib.import_module(SCHEMAS[ctx.config.schema].module).collect_queues(ctx)


def registry() -> dict[str, Collect]:
    """Collector name -> function; the names are what --collectors accepts."""
    return {"nodes": nodes.collect, "workers": _workers, "queues": _queues}
