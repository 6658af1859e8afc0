"""`python tests/timed_tqmon.py ARGS...`: the `tqmon` command, timed from after start-up to its
answer; the seconds go to the file TIMED_TQMON_FILE names. A deadline test asserts on this:
the interpreter's start and the imports come before any deadline exists, and a loaded machine
stretches them to seconds (measured: `tqmon --help` took 0.9 to 4.2 s beside 3 CPU burners)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tqmon.cli import main

started = time.monotonic()
code = main()
seconds = time.monotonic() - started
sys.stdout.flush()
sys.stderr.flush()
Path(os.environ["TIMED_TQMON_FILE"]).write_text(f"{seconds:.6f}\n")
os._exit(code)  # as tqmon.cli.console does: no teardown
