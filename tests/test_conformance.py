"""One meaning per signal, under every schema, against the real queue systems (issue 21).

Each schema's driver runs the same scenario with real workers on a fresh redis-server:
  1. three processes of one deployment are one pool;
  2. 18 failing and 2 good jobs: the pool counters count them (where the schema counts);
  3. each process is stopped cleanly and started again: no death, the same pool, counters
     that do not fall;
  4. a job running longer than RUNNING s shows in the running age;
  5. the busy process is SIGKILLed: `worker_up 0` (where per-worker series exist), counted
     once by two collectors running at once, counters still not lower;
  6. depth, registries and failures equal what the system's own API reports;
and the schema's signal table (catalog `signals`) matches what was emitted. A Driver's flags
state what a schema truly lacks, from what the real system writes (per_worker, counts_failures,
running_age, one_per_queue). The
series read along the way feed promtool cases at the end (test_promtool_on_recorded_series):
HighTaskFailureRate fires for the 90 % failing pool, the per-pool rate panel shows no spike
when workers leave, TasksPendingTooLong fires for the stuck job. The results table is in
docs/adapters.md ("Conformance").
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import redis
import yaml
from adapter_helpers import TESTS, Process, check_signals, poll_tqmon, started_processes
from helpers import Result, run_tqmon
from provisioning_helpers import promtool

from devtools import child_env, devcluster, sidevenv, views

RUNNING = 2.0  # seconds a job must have run to show in the running age
TOTAL, FAILING = 20, 18  # 90 % failing, at HighTaskFailureRate's minimum volume
RECORDED: dict[str, dict[str, list[float]]] = {}  # schema -> series read during its run


@dataclass
class Driver:
    """How to run one queue system's workers and ask it what it holds."""

    schema: str
    args: list[str]
    start: Callable[[str], Process]  # a worker process of the one deployment
    enqueue: Callable[[str, str, int], None]  # (url, kind: ok|fail|sleep, count)
    own: Callable[[str], dict[str, float]]  # the system's API: metric selector -> value
    busy: Callable[[redis.Redis, list[Process]], Process]  # the process running the sleep
    queue: str = "work"
    per_worker: bool = True  # worker_up series exist
    counts_deaths: bool = False  # dead_workers_detected_total exists
    counts_failures: bool = True  # pool counters exist
    name: str = ""  # the test id, when one schema has two drivers (BullMQ: Node, Python)
    # arq: a queue's processes share one health-check key: one worker series per queue
    one_per_queue: bool = False
    running_age: bool = True  # Dramatiq records no start times
    # the busy process is only known when it is the last one (BullMQ, arq, Dramatiq): the
    # others stop cleanly before the long job is sent
    busy_is_last: bool = False
    backlog: str = "backlog"  # a queue no worker serves
    # step 6: arq reports a queue without a health check as a dead worker: watched from then on
    backlog_args: list[str] = field(default_factory=list)
    # from step 5 on: BullMQ sees a queue without a connected worker only when named
    later_args: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.name or self.schema


# --- RQ -------------------------------------------------------------------------------------
def _rq_start(url: str) -> Process:
    return Process([sys.executable, "-m", "rq.cli", "worker", "--url", url, "--worker-ttl",
                    "3", "--job-monitoring-interval", "1", "--path", ".", "work"], url)


def _rq_enqueue(url: str, kind: str, count: int, queue: str = "work") -> None:
    import rq_jobs
    from rq import Queue
    q = Queue(queue, connection=redis.Redis.from_url(url))
    job, args = {"ok": (rq_jobs.add, (1, 2)), "fail": (rq_jobs.fail, ()),
                 "sleep": (rq_jobs.sleep, (60,))}[kind]
    for _ in range(count):
        q.enqueue(job, *args)


def _rq_own(url: str) -> dict[str, float]:
    from rq import Queue
    client = redis.Redis.from_url(url)
    work, backlog = Queue("work", connection=client), Queue("backlog", connection=client)
    return {'task_queue_depth{priority="backlog"}': backlog.count,
            'task_queue_registry_jobs{priority="work",registry="failed"}':
                work.failed_job_registry.count,
            'task_queue_registry_jobs{priority="work",registry="finished"}':
                work.finished_job_registry.count}


def _rq_busy(client: redis.Redis, processes: list[Process]) -> Process:
    for key in client.smembers("rq:workers"):
        state, pid = client.hmget(key, "state", "pid")
        if state == b"busy":
            return next(p for p in processes if str(p.proc.pid).encode() == pid)
    raise AssertionError("no busy RQ worker")


# --- Celery (PyPI celery[redis], threads pool) ------------------------------------------------
# Node names as a Kubernetes Deployment makes them (`-n tasks@%h`): one pool, `tasks`.
_PODS = itertools.cycle(["x2x7q", "b4k9z", "q7w2m", "z5h8p", "c6v2n", "m9r4t", "t2p6w"])
CELERY_NODES: dict[int, str] = {}  # Process pid -> its node name


def _celery_start(url: str) -> Process:
    node = f"tasks@web-5d9f7c6b8-{next(_PODS)}"
    process = Process([sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P",
                       "threads", "-c", "2", "--without-mingle", "--without-gossip", "-l",
                       "WARNING", "--heartbeat-interval", "1", "-n", node, "-Q", "work"], url)
    CELERY_NODES[process.proc.pid] = node
    return process


def _celery_app(url: str):
    from celery import Celery
    return Celery("conformance", broker=url)


def _celery_enqueue(url: str, kind: str, count: int, queue: str = "work") -> None:
    task, args = {"ok": ("celery_app.add", (1, 2)), "fail": ("celery_app.fail", ()),
                  "sleep": ("celery_app.hold", (60,))}[kind]
    app = _celery_app(url)
    for _ in range(count):
        app.send_task(task, args, queue=queue)


def _celery_own(url: str) -> dict[str, float]:
    """kombu's own count of a queue (it sums the priority lists), and the sleeping task the
    killed worker held, still unacked."""
    with _celery_app(url).connection_for_write() as conn:
        backlog = conn.default_channel.queue_declare("backlog", passive=True).message_count
    return {'task_queue_depth{priority="backlog"}': backlog,
            'task_queue_pending{priority="work",group="celery"}': 1}


def _celery_busy(client: redis.Redis, processes: list[Process]) -> Process:
    kwargs = client.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    for _ in range(20):  # Celery's remote control: which node runs the task
        active = _celery_app(url).control.inspect(timeout=2).active() or {}
        nodes = {node for node, tasks in active.items() if tasks}
        for process in processes:
            if CELERY_NODES.get(process.proc.pid) in nodes:
                return process
    raise AssertionError("no busy Celery worker")


# --- Sidekiq (Debian's ruby-sidekiq) --------------------------------------------------------
SIDEKIQ_APP = str(TESTS / "sidekiq_app.rb")


def _sidekiq_start(url: str) -> Process:
    return Process(["sidekiq", "-r", SIDEKIQ_APP, "-c", "1", "-q", "work", "-t", "1"], url,
                   env={"REDIS_URL": url})


def _ruby(url: str, *args: str) -> str:
    return subprocess.run(["ruby", SIDEKIQ_APP, *args], check=True, timeout=30,
                          env={**os.environ, "REDIS_URL": url}, capture_output=True,
                          text=True).stdout


def _sidekiq_enqueue(url: str, kind: str, count: int, queue: str = "work") -> None:
    job = {"ok": "AddJob", "fail": "FailJob", "sleep": "SleepJob"}[kind]
    _ruby(url, job, queue, str(count), "60")


def _sidekiq_own(url: str) -> dict[str, float]:
    stats = json.loads(_ruby(url, "stats", "backlog"))
    return {'task_queue_depth{priority="backlog"}': stats["queues"]["backlog"],
            'task_queue_registry_jobs{priority="",registry="dead"}': stats["dead"],
            'worker_pool_tasks_failed_total{pool="sidekiq"}': stats["failed"],
            'worker_pool_tasks_processed_total{pool="sidekiq"}': stats["processed"]}


def _sidekiq_busy(client: redis.Redis, processes: list[Process]) -> Process:
    for identity in client.smembers("processes"):
        if client.hlen(identity + b":workers") or client.hlen(identity + b":work"):
            pid = identity.split(b":")[-2]
            return next(p for p in processes if str(p.proc.pid).encode() == pid)
    raise AssertionError("no busy Sidekiq process")


# --- BullMQ under Node (npm) ------------------------------------------------------------------
BULLMQ_APP = TESTS / "bullmq" / "app.js"


def _bullmq_env(url: str) -> dict[str, str]:
    return {"REDIS_URL": url, "BULLMQ_MAJOR": "6", "BULLMQ_PREFIX": "bull",
            "BULLMQ_METRICS": "1"}


def _bullmq_start(url: str) -> Process:
    return Process(["node", str(BULLMQ_APP), "worker", "work", "-", "2000"], url,
                   env=_bullmq_env(url))


def _node(url: str, *args: str) -> str:
    return subprocess.run(["node", str(BULLMQ_APP), *args], check=True, timeout=60,
                          env={**os.environ, **_bullmq_env(url)}, capture_output=True,
                          text=True).stdout


def _bullmq_enqueue(url: str, kind: str, count: int, queue: str = "work") -> None:
    _node(url, "add", queue, {"ok": "job", "fail": "fail", "sleep": "sleep"}[kind], str(count))


def _bullmq_own(url: str) -> dict[str, float]:
    work = json.loads(_node(url, "counts", "work"))
    backlog = json.loads(_node(url, "counts", "backlog"))
    return {'task_queue_depth{priority="backlog"}': backlog.get("waiting", 0)
            + backlog.get("paused", 0) + backlog.get("prioritized", 0),
            'task_queue_registry_jobs{priority="work",registry="failed"}': work["failed"],
            'task_queue_registry_jobs{priority="work",registry="completed"}': work["completed"]}


def _last(client: redis.Redis, processes: list[Process]) -> Process:
    """BullMQ records no worker per job, Dramatiq's broker ids (uuids) and arq's health check
    (one per queue) name no process: the test keeps one process alive for the sleep."""
    return processes[-1]


# --- BullMQ under Python (PyPI `bullmq`, in build/bullmq-venv) ----------------------------------
BULLMQ_PY_APP = str(TESTS / "bullmq_py_app.py")


def _bullmq_py_start(url: str) -> Process:
    return Process([str(sidevenv.bullmq_python()), BULLMQ_PY_APP, "worker", "work", "-", "2000"],
                   url, env=_bullmq_env(url))


def _bullmq_py_enqueue(url: str, kind: str, count: int, queue: str = "work") -> None:
    subprocess.run([str(sidevenv.bullmq_python()), BULLMQ_PY_APP, "add", queue,
                    {"ok": "job", "fail": "fail", "sleep": "sleep"}[kind], str(count)],
                   check=True, timeout=60, env={**os.environ, **_bullmq_env(url)},
                   capture_output=True)


# --- Dramatiq (PyPI) -----------------------------------------------------------------------------
DRAMATIQ_APP = str(TESTS / "dramatiq_app.py")


def _dramatiq_start(url: str) -> Process:
    return Process([sys.executable, "-m", "dramatiq", "dramatiq_app", "--processes", "1",
                    "--threads", "1", "--queues", "work", "slow"], url)


def _dramatiq_app(url: str, *args: str) -> str:
    """A producer process of its own: dramatiq_app reads the broker's URL when imported."""
    return subprocess.run([sys.executable, DRAMATIQ_APP, *args], check=True, timeout=60,
                          env={**os.environ, "TQMON_TEST_REDIS_URL": url}, capture_output=True,
                          text=True).stdout


def _dramatiq_enqueue(url: str, kind: str, count: int) -> None:
    _dramatiq_app(url, "send", kind, str(count))


def _dramatiq_own(url: str) -> dict[str, float]:
    return {'task_queue_depth{priority="idle"}': float(_dramatiq_app(url, "qsize", "idle"))}


# --- arq (PyPI, build/arq-venv) ---------------------------------------------------------------
def _arq_start(url: str) -> Process:
    return Process([str(sidevenv.arq_python()), "-m", "arq", "arq_app.WorkerSettings"], url)


def _arq_app(url: str, *args: str) -> str:
    return subprocess.run([str(sidevenv.arq_python()), "arq_app.py", *args], cwd=TESTS,
                          check=True, timeout=60, capture_output=True, text=True,
                          env={"TQMON_TEST_REDIS_URL": url, "PATH": "/usr/bin:/bin"}).stdout


def _arq_enqueue(url: str, kind: str, count: int, queue: str = "arq:queue") -> None:
    _arq_app(url, "send", kind, str(count), queue)


def _arq_own(url: str) -> dict[str, float]:
    return {'task_queue_depth{priority="arq:backlog"}': float(_arq_app(url, "queued",
                                                                       "arq:backlog"))}


DRIVERS = [
    Driver("rq", ["--schema", "rq"], _rq_start, _rq_enqueue, _rq_own, _rq_busy),
    # Celery counts no failures (no pool failure counter): its processed counter is checked by
    # tests/test_celery_deploy.py
    Driver("celery", ["--schema", "celery", "--celery-heartbeat-interval", "1"],
           _celery_start, _celery_enqueue, _celery_own, _celery_busy, counts_deaths=True,
           counts_failures=False),
    Driver("sidekiq", ["--schema", "sidekiq", "--sidekiq-heartbeat-timeout", "3"],
           _sidekiq_start, _sidekiq_enqueue, _sidekiq_own, _sidekiq_busy, counts_deaths=True),
    Driver("bullmq", ["--schema", "bullmq", "--bullmq-queues", "work,backlog"], _bullmq_start,
           _bullmq_enqueue, _bullmq_own, _last, per_worker=False, busy_is_last=True),
    # discovered from the Python workers' connections alone, until none is left
    Driver("bullmq", ["--schema", "bullmq"], _bullmq_py_start, _bullmq_py_enqueue, _bullmq_own,
           _last, per_worker=False, busy_is_last=True, name="bullmq-python",
           later_args=["--bullmq-queues", "work,backlog"]),
    # no counts, no start times; a clean stop stays in the heartbeats with no ack set: forgotten
    Driver("dramatiq", ["--schema", "dramatiq", "--dramatiq-heartbeat-timeout", "2",
                        "--dramatiq-queues", "work,slow,idle"], _dramatiq_start,
           _dramatiq_enqueue, _dramatiq_own, _last, queue="slow",
           counts_failures=False, running_age=False,
           busy_is_last=True, backlog="idle"),
    # three processes write one `arq:queue:health-check`, each its own counts over the
    # others': the pool counters undercount (exact with one worker: tests/test_arq.py)
    Driver("arq", ["--schema", "arq", "--arq-queues", "arq:queue",
                   "--arq-health-check-interval", "1"], _arq_start, _arq_enqueue, _arq_own,
           _last, queue="arq:queue", counts_failures=False, one_per_queue=True,
           busy_is_last=True, backlog="arq:backlog",
           backlog_args=["--arq-queues", "arq:queue,arq:backlog"]),
]
NEEDS = {"sidekiq": "sidekiq", "bullmq": "node"}


@pytest.fixture
def processes():
    yield from started_processes()


def _value(result: Result, selector: str) -> float:
    name, _, labels = selector.partition("{")
    pairs = dict(p.split("=", 1) for p in labels.rstrip("}").split(",") if p)
    return result.value(name, **{k: v.strip('"') for k, v in pairs.items()})


def _pools(result: Result) -> dict[str, float]:
    return {s["pool"]: v for s, v in zip(result.series("workers_alive"),
                                         result.values("workers_alive"), strict=True) if v}


def _counters(result: Result, pool: str) -> tuple[float, float]:
    return (sum(result.values("worker_pool_tasks_processed_total", pool=pool)),
            sum(result.values("worker_pool_tasks_failed_total", pool=pool)))


@pytest.mark.parametrize("driver", DRIVERS, ids=[d.id for d in DRIVERS])
def test_one_meaning_per_signal(driver: Driver, processes):
    if (tool := NEEDS.get(driver.schema)) and not shutil.which(tool):
        pytest.fail(f"{tool} is missing: run .ci/system-deps")
    server = devcluster.start_standalone()
    try:
        _scenario(driver, server.url, redis.Redis.from_url(server.url), processes)
    finally:
        for process in processes:
            process.stop()
        processes.clear()
        server.stop()


def _scenario(driver: Driver, url: str, client: redis.Redis, processes: list[Process]) -> None:
    args = [*driver.args, "--redis-url", url]
    record = RECORDED.setdefault(driver.id, {"processed": [], "failed": [],
                                                 "leaving": [], "running": []})
    seen: list[Result] = []

    def poll(check: Callable[[Result], bool], what: str, timeout: float = 30) -> Result:
        result = poll_tqmon(args, check, timeout, what)
        seen.append(result)
        return result

    # 1. three processes of one deployment: one pool (arq: one worker series per queue)
    everyone, after_stop = (1, 1) if driver.one_per_queue else (3, 2)
    processes += [driver.start(url) for _ in range(3)]
    result = poll(lambda r: sum(_pools(r).values()) == everyone, "three workers")
    (pool,) = _pools(result)
    # 2. 90 % failing: the pool counters count every job
    driver.enqueue(url, "fail", FAILING)
    driver.enqueue(url, "ok", TOTAL - FAILING)
    if driver.counts_failures:
        counter_pool = "sidekiq" if driver.schema == "sidekiq" else pool
        record["processed"].append(0.0)
        record["failed"].append(0.0)
        result = poll(lambda r: _counters(r, counter_pool) == (TOTAL, FAILING),
                      "the pool counters")
        record["processed"].append(TOTAL)
        record["failed"].append(FAILING)
    # 3. each process stopped cleanly and started again: no death, one pool, no fall
    for index in range(3):
        old = processes[index]
        old.terminate()  # the main process, as an orchestrator does
        old.proc.wait(30)
        result = poll(lambda r: sum(_pools(r).values()) == after_stop, "a clean stop")
        assert result.total("workers_dead") == 0, "a clean stop counted as a death"
        assert 0.0 not in result.values("worker_up")
        if driver.counts_failures:
            record["leaving"].append(_counters(result, counter_pool)[0])
        processes[index] = driver.start(url)
        result = poll(lambda r: _pools(r) == {pool: everyone}, "the restarted worker in its pool")
        if driver.counts_failures:
            assert _counters(result, counter_pool) == (TOTAL, FAILING)
            record["leaving"].append(_counters(result, counter_pool)[0])
    # 4. a job running longer than RUNNING s shows in the running age
    if driver.busy_is_last:  # the busy one must be known: two leave cleanly first
        for process in processes[:2]:
            process.terminate()
            process.proc.wait(30)
    running = {"priority": driver.queue, "group": driver.schema}
    driver.enqueue(url, "sleep", 1)

    def ran(r: Result) -> bool:
        age = r.values("task_queue_oldest_pending_idle_seconds", **running)
        record["running"].append(age[0] if age else 0.0)
        return bool(age) and age[0] >= RUNNING

    if driver.running_age:
        result = poll(ran, "the running age", 30)
    else:  # no start times (Dramatiq): the job is fetched, into the worker's ack set
        result = poll(lambda r: r.value("task_queue_depth", priority=driver.queue) == 0,
                      "the long job fetched")
    # 5. the busy process SIGKILLed: dead, counted once by two collectors at once
    busy = driver.busy(client, processes)
    busy.signal(signal.SIGKILL)
    args += driver.later_args
    if driver.per_worker:
        result = poll(lambda r: r.total("workers_dead") == 1, "the death", 30)
        dead = result.total("workers_dead")
        with ThreadPoolExecutor(2) as pair:
            both = list(pair.map(lambda _: run_tqmon(*args), range(2)))
        for one in both:
            assert one.total("workers_dead") == dead
            assert one.values("worker_up").count(0.0) == dead
            if driver.counts_deaths:
                assert one.value("dead_workers_detected_total") == 1
        seen += both
    else:  # BullMQ: no worker keys; the job's lock expires, it is orphaned
        result = poll(lambda r: r.value("task_queue_orphaned", **running) == 1, "the orphan")
    if driver.counts_failures:
        assert _counters(result, counter_pool) >= (TOTAL, FAILING)
    # 6. what the system's own API reports
    _enqueue_backlog(driver, url)
    args += driver.backlog_args
    expected = driver.own(url)
    result = poll(lambda r: all(_value(r, s) == v for s, v in expected.items()),
                  f"tqmon to agree with {driver.schema}'s API: {expected}", 15)
    check_signals(driver.schema, *seen)


def _enqueue_backlog(driver: Driver, url: str) -> None:
    """Four jobs on a queue no worker serves."""
    if driver.schema == "rq":
        _rq_enqueue(url, "ok", 4, "backlog")
    elif driver.schema == "celery":
        _celery_enqueue(url, "ok", 4, "backlog")
    elif driver.schema == "sidekiq":
        _ruby(url, "AddJob", "backlog", "4")
    elif driver.schema == "dramatiq":
        _dramatiq_enqueue(url, "idle", 4)
    elif driver.schema == "arq":
        _arq_enqueue(url, "ok", 4, "arq:backlog")
    else:
        _bullmq_enqueue(url, "ok", 4, "backlog")


# --- promtool, on the series recorded above ---------------------------------------------------
def _series(values: list[float], then: str) -> str:
    return " ".join(repr(float(v)) for v in values) + " " + then


def test_promtool_on_recorded_series(tmp_path):
    """The recorded series, one sample a minute, through the generated rules and the per-pool
    panel's query: HighTaskFailureRate fires for each schema's 90 % failing pool, the rate of
    a pool whose workers left and came back shows no spike, TasksPendingTooLong fires for the
    stuck job (threshold set per deployment in the overrides)."""
    missing = [d.id for d in DRIVERS
               if d.running_age and not RECORDED.get(d.id, {}).get("running")]
    assert not missing, f"no recorded run for {missing}: their conformance test failed"
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"params": {"pending_too_long_seconds": 60}}))
    rules = tmp_path / "rules.yaml"
    subprocess.run([sys.executable, str(TESTS.parent / "alerts" / "generate.py"),
                    "--overrides", str(overrides), "--output", str(rules)], check=True,
                   env=child_env())
    panel = next(q for _, panels in views.load_views().rows for p in panels
                 if p.title == "Tasks finished per pool" for q, _ in p.targets)
    rate = panel.replace("$__rate_interval", "5m").replace("$job", ".+").replace(
        "$instance", ".+").replace("$cluster_name", ".*")
    tests = []
    for name, series in RECORDED.items():
        if not series["running"]:  # Dramatiq: no start times, no counts
            continue
        schema = next(d.schema for d in DRIVERS if d.id == name)
        labels = f'job="tqmon", instance="a", pool="{name}"'
        grouped = f'job="tqmon", instance="a", priority="work", group="{schema}"'
        case: dict = {"interval": "1m", "input_series": [
            {"series": f"task_queue_oldest_pending_idle_seconds{{{grouped}}}",
             "values": _series(series["running"], f"{series['running'][-1]}+60x10")}],
            "promql_expr_test": [{
                "expr": 'ALERTS{alertname="TasksPendingTooLong", alertstate="firing"}',
                "eval_time": f"{len(series['running']) + 7}m",
                "exp_samples": [{"labels": 'ALERTS{alertname="TasksPendingTooLong", '
                                 f'alertstate="firing", severity="warning", priority="work", '
                                 f'group="{schema}"}}', "value": 1}]}]}
        if series["processed"]:
            leaving = series["leaving"]
            case["input_series"] += [
                {"series": f"worker_pool_tasks_processed_total{{{labels}}}",
                 "values": _series(series["processed"] + leaving, f"{leaving[-1]}x12")},
                {"series": f"worker_pool_tasks_failed_total{{{labels}}}",
                 "values": _series(series["failed"] * 1 + [series["failed"][-1]] * len(leaving),
                                   f"{series['failed'][-1]}x12")}]
            case["promql_expr_test"] += [
                {"expr": 'ALERTS{alertname="HighTaskFailureRate", alertstate="firing"}',
                 "eval_time": "8m",
                 "exp_samples": [{"labels": 'ALERTS{alertname="HighTaskFailureRate", '
                                  f'alertstate="firing", severity="warning", pool="{name}"}}',
                                  "value": 1}]},
                # workers left and came back after the jobs: the rate is 0, not a spike
                {"expr": rate, "eval_time": f"{len(series['processed']) + len(leaving) + 5}m",
                 "exp_samples": [{"labels": f'{{pool="{name}"}}', "value": 0}]}]
        tests.append(case)
    # the control: a sum over the workers present, falling when one leaves, is a spike
    tests.append({"interval": "1m", "input_series": [
        {"series": 'worker_pool_tasks_processed_total{job="tqmon", instance="a", pool="sum"}',
         "values": "0 20 20 20 10 10 10 10 10 10"}],
        "promql_expr_test": [{"expr": f"count({rate} > 0)", "eval_time": "6m",
                              "exp_samples": [{"labels": "{}", "value": 1}]}]})
    spec = tmp_path / "recorded.test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m",
                                    "tests": tests}))
    result = promtool("test", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
