"""The wheel ships the plugin and the worker-side contract, nothing else, and the plugin starts
without the provisioning libraries."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=120)
    (path,) = out.glob("tqmon-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_the_plugin_and_the_contract_only(wheel):
    names = set(wheel.namelist())
    shipped = {n for n in names if not n.startswith("tqmon-")}
    assert all(n.startswith("tqmon/") for n in shipped), shipped
    for module in ("cli", "run", "model", "exposition", "serve", "heartbeat", "streams",
                   "contract", "schemas", "collectors/base", "collectors/rq",
                   "collectors/dramatiq", "collectors/celery/__init__", "collectors/celery/layout",
                   "collectors/celery/memory", "collectors/celery/queues", "collectors/arq",
                   "collectors/native/workers"):
        assert f"tqmon/{module}.py" in names
    assert "tqmon/catalog.json" in names and "tqmon/catalog.yaml" not in names
    assert {"tqmon/lua/detect.lua", "tqmon/lua/requeue.lua", "tqmon/lua/beat.lua",
            "tqmon/lua/celery_memory.lua", "tqmon/lua/dead_set.lua",
            "tqmon/lua/celery_seen.lua"} <= names
    for dev in ("devcluster", "simulate", "demo", "stack", "views", "sidevenv"):
        assert not any(n.endswith(f"/{dev}.py") for n in names), dev


def test_the_wheel_requires_only_the_runtime_libraries(wheel):
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel.read(meta).decode()).get_all("Requires-Dist")
    unconditional = {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].strip()
                     for r in requires if "extra ==" not in r}
    assert unconditional == {"redis", "prometheus_client", "pyyaml"}
    provisioning = [r for r in requires if 'extra == "provisioning"' in r]
    assert any(r.startswith("jinja2") for r in provisioning)
    assert any(r.startswith("grafanalib") for r in provisioning)


def test_the_plugin_imports_no_provisioning_or_dev_code():
    trace = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tqmon.cli"],
                           capture_output=True, text=True, check=True, cwd="/").stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in trace.splitlines()}
    for package in ("jinja2", "grafanalib", "promql_parser", "devtools", "yaml"):
        assert package not in loaded, package
