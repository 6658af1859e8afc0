"""Virtualenvs of their own under build/, for tools whose pins clash with tqmon's.

arq pins redis-py below 6 and rq-exporter below 6, while tqmon needs 8: the arq workers of the
tests and the bench run from build/arq-venv, built here from PyPI on first use; Python BullMQ
workers (PyPI `bullmq`, its own pins) from build/bullmq-venv, the Datadog check from
build/datadog-venv.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

from . import ROOT

ARQ = "arq==0.28.0"  # the release the arq adapter is tested with (docs/adapters.md)
BULLMQ = "bullmq==3.4.4"  # Python BullMQ (PyPI), the release the BullMQ adapter is tested with
# the Datadog OpenMetrics V2 check with the few packages it imports (its [deps] extra pins
# versions of its own), for tests/test_datadog.py
DATADOG = ("datadog-checks-base==38.7.0 requests requests-unixsocket2 prometheus-client pyyaml "
           "lazy-loader binary python-dateutil wrapt pydantic")


def python(name: str, requirement: str) -> Path:
    """build/<name>/bin/python with `requirement` installed; (re)built when the requirement
    changed. A lock file keeps two builders (two test sessions) from racing."""
    venv = ROOT / "build" / name
    marker, interpreter = venv / ".requirement", venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == requirement and interpreter.exists():
            return interpreter
        print(f"creating build/{name} (pip install {requirement}) ...", file=sys.stderr,
              flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(interpreter), "-m", "pip", "install", "-q", *requirement.split()],
                       check=True)
        marker.write_text(requirement)
    return interpreter


def arq_python() -> Path:
    return python("arq-venv", ARQ)


def bullmq_python() -> Path:
    return python("bullmq-venv", BULLMQ)


def datadog_python() -> Path:
    return python("datadog-venv", DATADOG)
