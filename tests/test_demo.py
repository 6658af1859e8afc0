"""`make demo` keeps working: cluster, fleet, a SIGKILLed worker seen dead, its tasks requeued."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

from devtools import ROOT, child_env


def _simulated_workers() -> set[str]:
    """Simulated workers started from this checkout (other checkouts may run theirs)."""
    found = subprocess.run(["pgrep", "-f", "devtools.simulate"], capture_output=True, text=True)
    ours = f"PYTHONPATH={ROOT}".encode()
    mine = set()
    for pid in found.stdout.split():
        with contextlib.suppress(OSError):
            if any(v.startswith(ours) for v in Path(f"/proc/{pid}/environ").read_bytes()
                   .split(b"\0")):
                mine.add(pid)
    return mine


def test_demo_runs_and_sees_the_killed_worker_die():
    before = _simulated_workers()
    proc = subprocess.run([sys.executable, "-m", "devtools.demo", "--quiet"], capture_output=True,
                          text=True, timeout=120, env=child_env())
    assert proc.returncode == 0, proc.stderr
    assert "Redis nodes up: 6 of 6" in proc.stdout
    assert "Workers: 5 alive, 0 dead" in proc.stdout
    assert "Workers: 4 alive, 1 dead (deaths detected so far: 1)" in proc.stdout
    assert "Queues (group workers; tasks requeued so far: 0)" in proc.stdout
    final = proc.stdout.rsplit("$ tqmon", 1)[1]
    assert "tasks requeued so far: 0)" not in final  # the dead worker's tasks came back
    assert "Traceback" not in proc.stderr
    assert _simulated_workers() <= before  # the demo's fleet was stopped
