"""Readers for other task queues' own Redis keys (`--schema rq`, `--schema dramatiq`).

Each adapter maps what RQ or Dramatiq already write onto the catalog's worker and queue metrics,
so the same dashboard and alerts work unchanged. Adapters never write: they send only read
commands, batched in pipelines, and never KEYS. Neither RQ nor Dramatiq supports Redis Cluster,
so an adapter reads one node: the master holding the schema's registry key, in the URL's
database.
"""

from __future__ import annotations

import datetime

from ..collectors import Context, Samples

UTC = datetime.timezone.utc
BATCH = 1000  # commands of one kind per pipelined round trip


def parse_timestamp(raw: bytes | None) -> float | None:
    """Unix seconds from a date RQ wrote, or None if it is not one.

    RQ writes `2026-11-28T10:00:00.123456Z` (utcformat); RQ before 1.0 and other tools wrote
    it without microseconds, with an offset instead of `Z`, or with no zone at all (UTC then).
    datetime.fromisoformat (Python 3.11) reads all of these in C, fast enough for big fleets.
    """
    if not raw:
        return None
    try:
        text = raw.decode("ascii")
        if text.endswith("Z"):  # Python 3.10's fromisoformat does not take the Z
            text = text[:-1] + "+00:00"
        parsed = datetime.datetime.fromisoformat(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def collect_workers(ctx: Context) -> Samples:
    """The workers collector's samples under --schema rq|dramatiq."""
    if ctx.config.schema == "rq":
        from . import rq

        return rq.collect_workers(ctx)
    from . import dramatiq

    return dramatiq.collect_workers(ctx)


def collect_queues(ctx: Context) -> Samples:
    """The queues collector's samples under --schema rq|dramatiq."""
    if ctx.config.schema == "rq":
        from . import rq

        return rq.collect_queues(ctx)
    from . import dramatiq

    return dramatiq.collect_queues(ctx)
