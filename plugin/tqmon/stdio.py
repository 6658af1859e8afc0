"""Standard output that cannot be written: closed before tqmon started (`tqmon >&-`: Python
then has no sys.stdout at all) or its reader gone (`tqmon | head -1`: a broken pipe). Either
way the output is lost, so the exit status is 1 and stderr gets one line, never a traceback."""

from __future__ import annotations

import contextlib
import os
import sys


class OutputClosed(OSError):
    """Standard output was closed before tqmon started: nothing can be written."""


def output_lost(prog: str, exc: OSError) -> int:
    """One line for a stdout that is closed or whose reader left; exit 1 (the output is lost).
    stdout is pointed at /dev/null so that the final flush cannot fail again."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    why = "standard output is closed" if isinstance(exc, OutputClosed) else (
        "the reader closed the pipe")
    print(f"{prog}: error: cannot write output: {why}", file=sys.stderr)
    return 1
