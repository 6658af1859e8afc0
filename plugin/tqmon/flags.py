"""The command line: every option's flag and help, and the defaults they name. config.py
resolves them (flags over env over file); the man page and /etc/default/tqmon are generated
from this parser (devtools/debian.py), so a new option is documented where it is added."""

from __future__ import annotations

import argparse
from typing import Any

from . import __version__, contract
from .configfile import ConfigError
from .sentineloptions import add_arguments as add_sentinel_arguments

DEFAULT_URL = "redis://127.0.0.1:6379"
DEFAULT_TIMEOUT = 3.0  # seconds; Telegraf's exec default timeout is 5 s
COLLECTORS = ("nodes", "workers", "queues")
FORMATS = ("prometheus", "openmetrics")
MAX_WORKER_SERIES = 1000
RQ_WORKER_TTL = 420.0  # rq.defaults.DEFAULT_WORKER_TTL
DRAMATIQ_HEARTBEAT_TIMEOUT = 60.0  # dramatiq.brokers.redis.DEFAULT_HEARTBEAT_TIMEOUT (60,000 ms)
CELERY_VISIBILITY_TIMEOUT = 3600.0  # kombu.transport.redis.Channel.visibility_timeout
CELERY_HEARTBEAT_INTERVAL = 2.0  # celery.worker.heartbeat.Heart: --heartbeat-interval
ARQ_QUEUE = "arq:queue"  # arq.constants.default_queue_name
ARQ_HEALTH_CHECK_INTERVAL = 3600.0  # arq.worker.Worker(health_check_interval=3600)
ARQ_JOB_TIMEOUT = 300.0  # arq.worker.Worker(job_timeout=300)
# Sidekiq beats every 5 s (6.x) or 10 s (7+) and its process and work hashes expire 60 s after
# the last beat: a death must be seen before that for the jobs it held to be counted.
SIDEKIQ_HEARTBEAT_TIMEOUT = 30.0
ENV_URL, ENV_PASSWORD, ENV_CONFIG = "TQMON_REDIS_URL", "TQMON_REDIS_PASSWORD", "TQMON_CONFIG"
MAX_TIMEOUT = 3600.0  # seconds; far above any agent's exec timeout
MAX_SECONDS = 1e8  # ~3 years: any longer TTL, retention or interval is a typo


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tqmon",
        description="Collect Redis and task-queue metrics once and print them in Prometheus "
        "text format. The password comes from TQMON_REDIS_PASSWORD or --password-file.",
        argument_default=argparse.SUPPRESS,  # unset flags stay absent so env and file apply
        epilog="For a person at a terminal: `tqmon status [--watch SECONDS] [--json] [flags]` "
        "shows one collection; `tqmon doctor [flags]` checks the set-up and says how to fix it.",
    )
    p.add_argument("--config", metavar="FILE", help="YAML config file (env TQMON_CONFIG)")
    p.add_argument("--redis-url", metavar="URL", action="append", dest="redis_url",
                   help=f"seed node, repeatable (env {ENV_URL}, comma-separated; "
                   f"default {DEFAULT_URL}); redis:// or rediss://")
    add_sentinel_arguments(p)
    p.add_argument("--username", metavar="NAME", help="ACL username")
    p.add_argument("--password-file", metavar="PATH", help="file holding the password")
    p.add_argument("--tls-ca-file", metavar="PATH", help="CA bundle to verify the server")
    p.add_argument("--tls-cert-file", metavar="PATH", help="client certificate")
    p.add_argument("--tls-key-file", metavar="PATH", help="client private key")
    p.add_argument("--tls-server-name", metavar="NAME", help="name to verify the server as")
    p.add_argument("--tls-insecure", action="store_true", help="skip certificate verification")
    p.add_argument("--cluster-name", metavar="NAME", help="value of the cluster_name label")
    p.add_argument("--timeout", metavar="SECONDS", type=float,
                   help=f"deadline for the whole run (default {DEFAULT_TIMEOUT})")
    p.add_argument("--format", choices=FORMATS, help="exposition format (default prometheus)")
    p.add_argument("--textfile", metavar="PATH",
                   help="write atomically to PATH (node_exporter textfile) instead of stdout")
    p.add_argument("--interval", metavar="SECONDS", type=float,
                   help="repeat every SECONDS, rewriting --textfile, until SIGTERM/SIGINT")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="serve /metrics (a collection per scrape) and /healthz over HTTP")
    p.add_argument("--web-config-file", metavar="FILE",
                   help="with --listen: TLS and basic auth, in the Prometheus exporter-toolkit "
                   "web config format")
    p.add_argument("--collectors", metavar="LIST",
                   help=f"comma-separated collectors to run (default {','.join(COLLECTORS)})")
    p.add_argument("--prefix", metavar="P",
                   help=f"heartbeat contract key prefix: keys are {{P}}:... "
                   f"(default {contract.DEFAULT_PREFIX})")
    p.add_argument("--heartbeat-ttl", metavar="SECONDS", type=float,
                   help="a worker whose last heartbeat is older is dead (default 30)")
    p.add_argument("--dead-retention", metavar="SECONDS", type=float,
                   help="report dead workers as worker_up 0 this long, then prune them "
                   "(default 3600)")
    p.add_argument("--max-worker-series", metavar="N",
                   help="per-worker series for at most N workers, dead ones first (default "
                   f"{MAX_WORKER_SERIES}; 0: none; all: no cap); pools always count everyone")
    p.add_argument("--worker-pool-pattern", metavar="REGEX",
                   help="a worker's pool is the first group of REGEX on its name, when the "
                   "worker names none (default: its deployment, the name without pid, nonce, "
                   "uuid, hex id, pod suffix or instance number; per schema: docs/adapters.md)")
    p.add_argument("--read-only", action="store_true",
                   help="write nothing to Redis: deaths are reported, not recorded or pruned")
    p.add_argument("--queue", metavar="NAME=STREAM", action="append",
                   help="a queue to watch, repeatable: the priority label and its stream key "
                   "(default high, medium, low on {P}:queue:<name>)")
    p.add_argument("--group", metavar="NAME", action="append",
                   help="consumer group to report, repeatable (default workers)")
    p.add_argument("--requeue-orphans", action="store_true",
                   help="put the pending entries of dead workers back on their stream")
    p.add_argument("--max-redeliveries", metavar="N", type=int,
                   help="with --requeue-orphans: a task already requeued N times goes to the "
                   "dead-letter stream <stream>:dead instead "
                   f"(default {contract.MAX_REDELIVERIES})")
    p.add_argument("--schema", metavar="NAME",
                   help="whose keys to read: native (tqmon's heartbeat contract, default), rq, "
                   "dramatiq, celery, arq, sidekiq or bullmq (their own keys, never written)")
    p.add_argument("--rq-worker-ttl", metavar="SECONDS", type=float,
                   help="RQ: TTL of a worker hash that has no expiry (default 420, RQ's); "
                   "otherwise each worker's own TTL is read from its hash's expiry")
    p.add_argument("--dramatiq-namespace", metavar="NS",
                   help="Dramatiq: the RedisBroker namespace (default dramatiq)")
    p.add_argument("--dramatiq-heartbeat-timeout", metavar="SECONDS", type=float,
                   help="Dramatiq: a worker whose last heartbeat is older is dead "
                   "(default 60, the broker's)")
    p.add_argument("--dramatiq-queues", metavar="LIST",
                   help="Dramatiq: comma-separated queue names to watch (default default); "
                   "Dramatiq keeps no list of queues in Redis")
    p.add_argument("--celery-queues", metavar="LIST",
                   help="Celery: comma-separated queues to watch (default: every queue bound in "
                   "kombu's _kombu.binding.* sets, or celery)")
    p.add_argument("--celery-visibility-timeout", metavar="SECONDS", type=float,
                   help="Celery: kombu's visibility_timeout; unacked messages taken longer ago "
                   "are orphaned (default 3600)")
    p.add_argument("--celery-key-prefix", metavar="P",
                   help="Celery: kombu's global_keyprefix (default none)")
    p.add_argument("--celery-sep", metavar="SEP",
                   help="Celery: kombu's `sep` transport option, \\xNN escapes allowed (default: "
                   "detected from the binding members; kombu's is \\x06\\x16)")
    p.add_argument("--celery-priority-steps", metavar="LIST",
                   help="Celery: kombu's `priority_steps`, comma-separated (default: the lists "
                   "of steps 0-9 that exist; kombu's are 0,3,6,9)")
    p.add_argument("--celery-heartbeat-interval", metavar="SECONDS", type=float,
                   help="Celery: the workers' --heartbeat-interval; each run listens a little "
                   "longer than this for their heartbeats (default 2)")
    p.add_argument("--arq-queues", metavar="LIST",
                   help=f"arq: comma-separated queue names (default {ARQ_QUEUE})")
    p.add_argument("--arq-job-timeout", metavar="SECONDS", type=float,
                   help="the workers' longest job timeout (job_timeout, or a function's "
                   "timeout; default 300, arq's): arq's in-progress key lives it + 10 s, which "
                   "gives the running age")
    p.add_argument("--arq-health-check-interval", metavar="SECONDS", type=float,
                   help="arq: the workers' health_check_interval (default 3600, arq's)")
    p.add_argument("--sidekiq-heartbeat-timeout", metavar="SECONDS", type=float,
                   help="Sidekiq: a process whose last beat is older is dead (default 30; "
                   "its hashes expire 60 s after its last beat)")
    p.add_argument("--bullmq-prefix", metavar="PREFIX",
                   help="BullMQ: the key prefix, e.g. {bull} on Redis Cluster (default bull)")
    p.add_argument("--bullmq-queues", metavar="LIST",
                   help="BullMQ: comma-separated queue names to watch (default: the queues "
                   "of the workers connected now, from CLIENT LIST)")
    p.add_argument("--version", action="version", version=f"tqmon {__version__}")
    return p
