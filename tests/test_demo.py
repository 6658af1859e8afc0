"""`make demo` keeps working: the cluster, the fleet, a SIGKILLed worker seen dead."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_sees_the_killed_worker_die():
    proc = subprocess.run([sys.executable, "-m", "tqmon.demo", "--quiet"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Redis nodes up: 6 of 6" in proc.stdout
    assert "Workers: 5 alive, 0 dead" in proc.stdout
    assert "Workers: 4 alive, 1 dead (deaths detected so far: 1)" in proc.stdout
    assert "Traceback" not in proc.stderr
    leftovers = subprocess.run(["pgrep", "-f", "tqmon.simulate"], capture_output=True)
    assert leftovers.returncode == 1  # the fleet was stopped
