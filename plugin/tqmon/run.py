"""One collection pass: topology, then every selected collector in parallel, then self-metrics."""

from __future__ import annotations

import logging
import time

from . import __version__, sentinel
from .collectors import registry
from .collectors.base import Context
from .config import Config
from .failures import Failures, NodeDown
from .model import Samples, describe_error
from .parallel import Deadline, run_parallel
from .topology import discover

log = logging.getLogger(__name__)

# Shares of --timeout: network calls end by 90%; collectors then have until 95% to turn answers
# into samples, which leaves the rest for rendering and writing the output.
NETWORK_SHARE, COLLECTOR_SHARE = 0.90, 0.95


def collect_once(config: Config) -> Samples:
    """Collect everything once; never raises for a Redis or collector failure."""
    collectors_done = Deadline(config.timeout * COLLECTOR_SHARE)
    deadline = collectors_done.sub(NETWORK_SHARE / COLLECTOR_SHARE)
    try:
        return _collect(config, collectors_done, deadline)
    finally:
        collectors_done.abandon()  # the answer is given: close what is still open, act no more


def _collect(config: Config, collectors_done: Deadline, deadline: Deadline) -> Samples:
    failures = Failures()
    ctx = Context(config=config, topology=discover(config, deadline, failures),
                  deadline=deadline, failures=failures)
    collectors = registry()

    def timed(name: str) -> tuple[Samples, bool, float]:
        started = time.monotonic()
        try:
            samples, ok = collectors[name](ctx), True
        except NodeDown:  # the node's failure is on stderr already: one line per failure
            samples, ok = Samples(), False
        except Exception as exc:  # one failing collector must not take the others down
            log.warning("collector %s failed: %s", name, describe_error(exc))
            samples, ok = Samples(), False
        return samples, ok, time.monotonic() - started

    started = time.monotonic()
    results = run_parallel({n: (lambda n=n: timed(n)) for n in config.collectors},
                           collectors_done)
    samples = Samples()
    for name in config.collectors:
        result = results[name]
        if isinstance(result, BaseException):
            log.warning("collector %s: %s", name, describe_error(result))
            result = (Samples(), False, time.monotonic() - started)
        collected, ok, seconds = result
        samples.extend(collected)
        samples.add("tqmon_collector_up", {"collector": name}, 1.0 if ok else 0.0)
        samples.add("tqmon_collection_duration_seconds", {"collector": name}, seconds)
    if ctx.topology.sentinel is not None:  # the sentinels that answered late count too
        samples.extend(sentinel.samples(ctx.topology.sentinel, deadline,
                                        config.cluster_name))
    samples.add("tqmon_build_info", {"version": __version__}, 1.0)
    samples.add("tqmon_last_collection_timestamp_seconds", {}, time.time())
    samples.add("tqmon_series", {}, float(samples.exposed() + 1))  # + this one
    return samples
