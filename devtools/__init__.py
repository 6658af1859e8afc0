"""Development tools, in the repository and not in the wheel: throwaway Redis servers, a
simulated worker fleet, the demo and the demo stack, and what the catalog compiler and the
dashboard and alert generators share. Run from the checkout: the Makefile and pytest put its
parent directory on the path."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for `python -m devtools.<tool>` in a child process, whatever its cwd."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    return env


@cache
def generator(name: str) -> ModuleType:
    """The generator script `<name>/generate.py` (dashboards, alerts, mixin), imported from its
    file: those folders are not packages."""
    spec = importlib.util.spec_from_file_location(f"{name}_generate", ROOT / name / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
