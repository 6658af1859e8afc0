"""Run the real `tqmon` command and check every output it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from tqmon import catalog

from devtools import child_env

TQMON = [sys.executable, "-m", "tqmon"]
TIMED_TQMON = [sys.executable, str(Path(__file__).with_name("timed_tqmon.py"))]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    samples: list = field(default_factory=list)  # prometheus_client Sample tuples
    run_seconds: float | None = None  # from after start-up to the answer (run_tqmon(timed=))
    # poll_tqmon: when (time.monotonic()) the last run whose output failed the check began
    last_miss_started: float | None = None

    def values(self, metric: str, **labels: str) -> list[float]:
        return [s.value for s in self.samples if s.name == metric
                and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, metric: str, **labels: str) -> float:
        found = self.values(metric, **labels)
        assert len(found) == 1, f"{metric}{labels}: {len(found)} samples\n{self.stderr}"
        return found[0]

    def total(self, metric: str, **labels: str) -> float:
        """The sum over the matching series: e.g. workers_alive over every pool."""
        return sum(self.values(metric, **labels))

    def series(self, metric: str) -> list[dict[str, str]]:
        return [dict(s.labels) for s in self.samples if s.name == metric]


def catalog_name(sample_name: str) -> str:
    cat = catalog.default()
    if sample_name in cat:
        return sample_name
    for suffix in HISTOGRAM_SUFFIXES:
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in cat and cat[base].type == "histogram":
            return base
    raise AssertionError(f"{sample_name} is emitted but not in the catalog")


def _seed_name_lint(line: str) -> bool:
    """promtool's naming lint on a name the original system fixed (e.g. ..._ops_per_sec).

    Those names are requirements kept verbatim; any other promtool complaint fails the test.
    """
    name = line.split(" ", 1)[0]
    cat = catalog.default()
    return name in cat and cat[name].origin == "seed" and "metric names" in line


def check_exposition(text: str, fmt: str = "prometheus") -> list:
    """Parse with prometheus_client, lint with promtool, and check names against the catalog."""
    families = list(parse_om(text) if fmt == "openmetrics" else parse_text(text))
    samples = [s for f in families for s in f.samples]
    for sample in samples:
        catalog_name(sample.name)
    if fmt == "prometheus":
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                              capture_output=True, timeout=30)
        problems = [line for line in (lint.stdout + lint.stderr).splitlines()
                    if line.strip() and not _seed_name_lint(line)]
        assert not problems, "promtool check metrics:\n" + "\n".join(problems)
        assert lint.returncode == 0 or lint.stdout + lint.stderr, "promtool failed silently"
    return samples


def env_without_checkout(**extra: str) -> dict[str, str]:
    """For an installed tqmon (wheel, pipx, Debian package): no checkout on the path (make
    exports PYTHONPATH), no venv, no TQMON_* settings from this shell."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("TQMON_")}
    env.update(extra)
    return env


def run_tqmon(*args: str, env: dict[str, str] | None = None, secret: str | None = None,
              timeout: float = 30, check_output: bool = True, timed: bool = False) -> Result:
    """`timed`: run_seconds is the run without the interpreter's start-up (tests/timed_tqmon.py),
    what a deadline test bounds."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TQMON_")}
    full_env.update(env or {})
    timing = None
    if timed:
        fd, name = tempfile.mkstemp(prefix="tqmon-timed-")
        os.close(fd)
        full_env["TIMED_TQMON_FILE"], timing = name, Path(name)
    started = time.monotonic()
    try:
        proc = subprocess.run([*(TIMED_TQMON if timed else TQMON), *args], capture_output=True,
                              text=True, env=full_env, timeout=timeout)
        result = Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        if timing:
            result.run_seconds = float(timing.read_text())
    finally:
        if timing:
            timing.unlink()
    assert "Traceback" not in proc.stderr, proc.stderr
    if secret:
        assert secret not in proc.stdout and secret not in proc.stderr
    if check_output and proc.returncode == 0 and proc.stdout:
        fmt = "openmetrics" if "openmetrics" in args else "prometheus"
        result.samples = check_exposition(proc.stdout, fmt)
    return result


def read_textfile(path: Path) -> Result:
    text = path.read_text()
    return Result(0, text, "", 0.0, check_exposition(text))


class Worker:
    """A real worker process (devtools.simulate) publishing heartbeats through tqmon.heartbeat."""

    def __init__(self, url: str | None, name: str, *args: str, cluster: bool = False,
                 ttl: float = 2, interval: float = 0.3, env: dict[str, str] | None = None
                 ) -> None:
        """`url` None: `args` say where (--sentinel ... --sentinel-master NAME)."""
        command = [sys.executable, "-m", "devtools.simulate",
                   *(("--redis-url", url) if url else ()), "--name", name,
                   "--ttl", str(ttl), "--interval", str(interval), *args]
        if cluster:
            command.append("--cluster")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**child_env(), **(env or {})})
        line = self.proc.stdout.readline().split()
        assert line[:1] == ["ready"], (line, self.proc.stderr.read() if not line else "")
        self.worker_id = line[1]
        self.name = name
        self.started = time.time()

    def wait_done(self) -> tuple[int, int]:
        line = self.proc.stdout.readline().split()
        assert line[:1] == ["done"], line
        return int(line[1]), int(line[2])

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def run_in_process(*args: str):
    """One collection in this process (for property tests where a subprocess per example is too
    slow): returns the rendered text after checking it like run_tqmon does."""
    from tqmon import catalog as cat
    from tqmon import config, exposition, run

    text = exposition.render(cat.default(), run.collect_once(config.load(list(args), {})))
    return text.decode()
