"""--schema celery as users configure and deploy Celery, with real `celery worker` processes
(prefork and threads pools) on one redis-server shared by the module (a database per case):
every kombu layout, a rolling restart that is no death in exec, --interval and --listen modes
(and no alert in promtool fed with what they reported), two SIGKILLed workers each counted
once by two collectors at once, and the observed waiting age.

Workers beat every second (`--heartbeat-interval 1`) and tqmon listens for that long
(`--celery-heartbeat-interval 1`), so each run takes ~1.3 s.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import yaml
from adapter_helpers import (
    Process,
    check_signals,
    digest,
    poll_tqmon,
    started_processes,
    wait_for,
)
from celery import Celery
from helpers import TQMON, Result, check_exposition, run_tqmon
from provisioning_helpers import promtool

from devtools import devcluster, generator

BEAT = "1"
CELERY = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-c", "2",
          "--without-mingle", "--without-gossip", "-l", "WARNING", "--heartbeat-interval", BEAT]
BASE = ["--schema", "celery", "--celery-heartbeat-interval", BEAT]


@pytest.fixture(scope="module")
def server():
    started = devcluster.start_standalone()
    yield started
    started.stop()


@pytest.fixture
def processes():
    yield from started_processes()


def _worker(url: str, name: str, queues: str, pool: str, transport: dict | None = None
            ) -> Process:
    env = {"TQMON_TEST_CELERY_TRANSPORT": json.dumps(transport or {})}
    return Process([*CELERY, "-P", pool, "-n", name, "-Q", queues], url, env)


def _producer(url: str, transport: dict | None = None) -> Celery:
    return Celery("producer", broker=url, broker_transport_options=transport or {})


def _up(result: Result, name: str) -> list[float]:
    return result.values("worker_up", worker_id=name, worker_name=name)


def _lists_sum(client: redis.Redis, prefix: str, queue: str, sep: str) -> int:
    """What Redis holds for `queue`: the sum of every list kombu may have made for it."""
    total = 0
    for key in client.scan_iter(match=None, count=1000):
        name = key.decode()
        if not name.startswith(prefix + queue) or client.type(key) != b"list":
            continue
        rest = name[len(prefix + queue):]
        if rest == "" or (rest.startswith(sep) and rest[len(sep):].isdigit()):
            total += client.llen(key)
    return total


LAYOUTS = {
    "defaults": ({}, "threads", "backlog", "\\x06\\x16", "0,3,6,9", ""),
    "sep-steps-priority": ({"sep": ":", "priority_steps": list(range(10)),
                            "queue_order_strategy": "priority"}, "prefork", "backlog", ":",
                           ",".join(map(str, range(10))), ""),
    "global-keyprefix": ({"global_keyprefix": "myapp:"}, "threads", "backlog", "\\x06\\x16",
                         "0,3,6,9", "myapp:"),
    "dots-and-colons": ({}, "prefork", "jobs.v2:high", "\\x06\\x16", "0,3,6,9", ""),
}


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_every_kombu_layout(server, processes, case):
    """Depth per queue is the sum of the lists Redis holds, found with and without the
    options; the worker is heard on the layout's channel; its clean stop is no death, and in
    the layouts that move its mailbox (sep, key prefix) its SIGKILL is one."""
    transport, pool, queue, sep, steps, prefix = LAYOUTS[case]
    db = 1 + list(LAYOUTS).index(case)
    url = f"{server.url}/{db}"
    client = redis.Redis.from_url(url)
    name = f"{case}@host"
    processes.append(_worker(url, name, "work", pool, transport))
    producer = _producer(url, transport)
    for priority in range(10):
        producer.send_task("celery_app.add", (priority, 1), queue=queue, priority=priority)
    for _ in range(2):
        producer.send_task("celery_app.add", (1, 1), queue="other")
    raw_sep = sep.encode().decode("unicode_escape")
    expected = {queue: _lists_sum(client, prefix, queue, raw_sep),
                "other": _lists_sum(client, prefix, "other", raw_sep)}
    assert expected == {queue: 10, "other": 2}

    keyprefix = ["--celery-key-prefix", prefix] if prefix else []
    args = [*BASE, "--redis-url", url, *keyprefix]
    explicit = [*args, "--celery-sep", sep, "--celery-priority-steps", steps]
    for given in (args, explicit):
        result = poll_tqmon([*given, "--collectors", "workers,queues"],
                            lambda r: _up(r, name) == [1.0], 30, f"{name} heard")
        for each, depth in expected.items():
            assert result.value("task_queue_depth", priority=each) == depth, result.stderr
        assert sum(result.values("tqmon_skipped_entries")) == 0, result.stdout
        assert "cannot read" not in result.stderr
    if prefix:  # without the prefix: nothing found, and said so, naming the option
        result = run_tqmon(*BASE, "--redis-url", url, "--collectors", "queues")
        assert "bindings under another key prefix: myapp:_kombu.binding." in result.stderr
        assert "set --celery-key-prefix" in result.stderr

    if sep != "\\x06\\x16" or prefix:  # its mailbox is read in this layout: a kill is a death
        processes[0].stop()
        result = poll_tqmon([*args, "--collectors", "workers"], lambda r: _up(r, name) == [0.0],
                            20, f"{name} dead")
        assert result.value("dead_workers_detected_total") == 1
        return
    processes[0].proc.send_signal(signal.SIGTERM)  # a clean stop: forgotten, never counted
    assert processes[0].proc.wait(30) == 0
    result = poll_tqmon([*args, "--collectors", "workers"], lambda r: not _up(r, name), 20,
                        f"{name} forgotten")
    assert result.value("dead_workers_detected_total") == 0


class Observer:
    """tqmon watching the deployment every 2 s in one mode, keeping every result with the time
    it was taken (monotonic)."""

    def __init__(self, mode: str, url: str, tmp: Path, processes: list[Process]) -> None:
        self.mode, self.url, self.results = mode, url, []
        self.stop = threading.Event()
        args = [*BASE, "--redis-url", url]
        if mode == "interval":
            self.path = tmp / "celery.prom"
            processes.append(Process([*TQMON, *args, "--interval", "2", "--textfile",
                                      str(self.path)], url))
        elif mode == "listen":
            self.port = devcluster.free_port()
            processes.append(Process([*TQMON, *args, "--listen", f"127.0.0.1:{self.port}"], url))
        self.args = args
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _once(self) -> Result | None:
        if self.mode == "exec":
            return run_tqmon(*self.args)
        try:
            if self.mode == "interval":
                text = self.path.read_text()
            else:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                            timeout=10) as reply:
                    text = reply.read().decode()
        except OSError:
            return None  # not up yet
        return Result(0, text, "", 0.0, check_exposition(text))

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            result = self._once()
            if result is not None:
                self.results.append((time.monotonic(), result))
            self.stop.wait(max(0.0, 2 - (time.monotonic() - started)))

    def seen(self, check) -> bool:
        return bool(self.results) and check(self.results[-1][1])

    def finish(self) -> list[tuple[float, Result]]:
        self.stop.set()
        self.thread.join(30)
        return self.results


def test_rolling_restart_is_no_death_and_two_killed_are_counted_once(server, processes,
                                                                    tmp_path):
    url = f"{server.url}/9"
    client = redis.Redis.from_url(url)
    producer = _producer(url)
    # node names as a Kubernetes Deployment makes them (`-n tasks@%h`, the pod's hostname)
    names = [f"tasks@web-5d9f7c6b8-{pod}" for pod in ("x2x7q", "b4k9z", "q7w2m", "z5h8p")]
    pools = ["threads", "prefork", "threads", "prefork"]
    processes += [_worker(url, name, "work", pool) for name, pool in zip(names, pools,
                                                                          strict=True)]
    workers = list(processes)
    for _ in range(3):  # nobody consumes "idle" until the last replacement: waiting age grows
        producer.send_task("celery_app.add", (1, 1), queue="idle")
    producer.send_task("celery_app.add", (1, 1), queue="stuck")  # never consumed
    observers = [Observer(mode, url, tmp_path, processes) for mode in ("exec", "interval",
                                                                        "listen")]
    alive = lambda want: lambda r: all(_up(r, n) == [1.0] for n in want)  # noqa: E731
    for observer in observers:
        wait_for(lambda o=observer: o.seen(alive(names)), 40, f"{observer.mode}: 4 workers")

    # rolling restart: each worker SIGTERMed (its main process, as an orchestrator does) and
    # replaced by a new one (a new pod: a new node name)
    replacements = [f"tasks@web-5d9f7c6b8-{pod}" for pod in ("c6v2n", "m9r4t", "t2p6w", "h8g5k")]
    for i, (worker, name) in enumerate(zip(workers, replacements, strict=True)):
        for n in range(20):  # tasks done all along: counts that leave with each worker
            producer.send_task("celery_app.add", (n, i), queue="work")
        # drained first: a prefork worker SIGTERMed while taking messages can hang in its
        # warm shutdown (seen with Celery 5.7; its pidbox binding is gone by then all the same)
        wait_for(lambda: not client.llen("work") and not client.zcard("unacked_index"), 20,
                 "the work queue drained")
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(30) == 0
        queues = "work,idle" if i == 3 else "work"  # the last one drains "idle"
        processes.append(_worker(url, name, queues, pools[i]))
        wait_for(lambda n=name: observers[0].seen(alive([n])), 30, f"{name} up")
    gone = lambda r: not any(_up(r, n) for n in names)  # noqa: E731
    for observer in observers:
        wait_for(lambda o=observer: o.seen(lambda r: gone(r) and alive(replacements)(r)), 30,
                 f"{observer.mode}: the stopped ones forgotten")

    # the same deployment, two workers SIGKILLed: each death counted once, by 2 at once
    killed_at = time.monotonic()
    for process in processes[-4:-2]:
        process.stop()
    killed = replacements[:2]

    def both_dead(result: Result) -> bool:
        return all(_up(result, n) == [0.0] for n in killed)

    deadline = time.monotonic() + 30
    while True:
        with ThreadPoolExecutor(2) as pool:
            pair = list(pool.map(lambda _: run_tqmon(*BASE, "--redis-url", url), range(2)))
        if all(both_dead(r) for r in pair):
            break
        assert time.monotonic() < deadline, pair[0].stdout
    with ThreadPoolExecutor(2) as pool:
        pair += list(pool.map(lambda _: run_tqmon(*BASE, "--redis-url", url), range(2)))
    assert [r.value("dead_workers_detected_total") for r in pair] == [2, 2, 2, 2]
    # N collectors agree on the observed waiting age: the same first sighting, in Redis
    ages = [r.value("task_queue_oldest_waiting_age_seconds", priority="stuck",
                    group="celery") for r in pair[:2]]
    assert abs(ages[0] - ages[1]) < 1.5, ages
    for observer in observers[1:]:  # the in-process memories count them too
        wait_for(lambda o=observer: o.seen(both_dead), 30, f"{observer.mode}: the two dead")
    histories = {o.mode: o.finish() for o in observers}

    for mode, history in histories.items():
        during = [r for at, r in history if at < killed_at]
        assert during, mode
        # no death and no worker_up 0 at any time before the kills
        assert all(0.0 not in r.values("worker_up") for r in during), mode
        assert all(r.values("dead_workers_detected_total") == [0.0] for r in during), mode
        assert history[-1][1].value("dead_workers_detected_total") == 2, mode
        # one pool for the deployment, through every restart; its counter never falls
        assert all({s["pool"] for s in r.series("workers_alive")} == {"tasks"}
                   for _, r in history), mode
        counts = [r.values("worker_pool_tasks_processed_total", pool="tasks")
                  for _, r in history]
        counts = [c[0] for c in counts if c]
        assert counts and counts[-1] >= 20, (mode, counts)  # some heard only by the last run
        assert all(b >= a for a, b in itertools.pairwise(counts)), (mode, counts)
        assert not history[-1][1].values("worker_pool_tasks_failed_total")  # none counted
    check_signals("celery", *(r for _, r in histories["exec"]))
    _waiting_age_grew_and_fell(histories["exec"])
    _no_alert_in_promtool([r for at, r in histories["exec"] if at < killed_at], tmp_path)


def _waiting_age_grew_and_fell(history: list[tuple[float, Result]]) -> None:
    """With no consumer, "idle"'s age grows by about the time between runs; drained, 0."""
    ages = [(at, r.values("task_queue_oldest_waiting_age_seconds", priority="idle",
                          group="celery")) for at, r in history]
    ages = [(at, a[0]) for at, a in ages if a]
    growing = [(at, age) for at, age in ages if age > 0]
    assert len(growing) >= 3, ages
    for (at1, age1), (at2, age2) in itertools.pairwise(growing):
        assert abs((age2 - age1) - (at2 - at1)) < 1.5, ages  # the interval's resolution
    assert ages[-1][1] == 0, ages


def _no_alert_in_promtool(results: list[Result], tmp: Path) -> None:
    """The series one exec agent reported during the rolling restart, fed to promtool at
    their real 2 s spacing, against the rules with every `for:` at 0: nothing fires."""
    metrics = ("worker_up", "workers_alive", "workers_dead", "dead_workers_detected_total")
    series: dict[str, list[str]] = {}
    for step, result in enumerate(results):
        for sample in result.samples:
            if sample.name not in metrics:
                continue
            labels = {**sample.labels, "instance": "a", "job": "tqmon"}
            text = sample.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(
                labels.items())) + "}"
            series.setdefault(text, ["_"] * len(results))[step] = repr(sample.value)
    overrides = tmp / "overrides.yaml"
    overrides.write_text("all_alerts: {for: 0s}\n")
    rules = tmp / "rules.yaml"
    assert generator("alerts").main(["--overrides", str(overrides), "--output",
                                     str(rules)]) == 0
    alerts = ("WorkerDown", "WorkersLost", "DeadWorkersDetected")
    tests = {"rule_files": [str(rules)], "evaluation_interval": "2s", "tests": [{
        "interval": "2s",
        "input_series": [{"series": s, "values": " ".join(v)} for s, v in series.items()],
        "alert_rule_test": [{"eval_time": f"{2 * step}s", "alertname": alert, "exp_alerts": []}
                            for step in range(len(results)) for alert in alerts]}]}
    path = tmp / "rolling.test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr



def test_read_only_waiting_age_needs_memory(server, processes):
    """--read-only: `--listen` remembers the first sighting in the process (the age grows
    between scrapes, nothing is written); exec mode has no memory (no age for a queue that
    holds messages without an eta)."""
    url = f"{server.url}/10"
    client = redis.Redis.from_url(url)
    producer = _producer(url)
    for _ in range(2):
        producer.send_task("celery_app.add", (1, 1), queue="waiting")
    before = digest(client)
    port = devcluster.free_port()
    processes.append(Process([*TQMON, *BASE, "--redis-url", url, "--read-only", "--collectors",
                              "queues", "--listen", f"127.0.0.1:{port}"], url))

    def scrape() -> tuple[float, float, float] | None:
        """(before, after, age): the scrape read the age somewhere between the two."""
        before = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError:
            return None
        age = Result(0, text, "", 0.0, check_exposition(text)).value(
            "task_queue_oldest_waiting_age_seconds", priority="waiting", group="celery")
        return before, time.monotonic(), age

    wait_for(lambda: scrape() is not None, 30, "tqmon --listen")
    first = scrape()
    time.sleep(1.5)  # the age must grow by the time between two scrapes
    second = scrape()
    assert first is not None and second is not None
    grown = second[2] - first[2]  # within the time between the scrapes, however slow each was
    assert second[0] - first[1] - 0.1 <= grown <= second[1] - first[0] + 0.1, (first, second)
    assert second[2] >= 1.0
    assert digest(client) == before
    result = run_tqmon(*BASE, "--redis-url", url, "--read-only", "--collectors", "queues")
    assert result.value("task_queue_depth", priority="waiting") == 2
    assert not result.values("task_queue_oldest_waiting_age_seconds", priority="waiting")
