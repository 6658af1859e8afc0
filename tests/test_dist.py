"""The release: `make dist` builds an sdist and a wheel that pass `twine check`, carry complete
metadata, install into a fresh venv (pip and pipx) and collect from a real redis-server with no
checkout on the path; the sdist rebuilt in an isolated build environment gives the same wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from helpers import check_exposition, env_without_checkout
from readme_renderer.markdown import render

from devtools import devcluster

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "build" / "dist"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dist() -> tuple[Path, Path]:
    """`make dist` as a user runs it (its recipe includes `twine check --strict`)."""
    make = subprocess.run(["make", "-s", "dist"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert make.returncode == 0, make.stdout + make.stderr
    assert make.stdout.count("PASSED") == 2, make.stdout
    (sdist,) = DIST.glob("tqmon-*.tar.gz")
    (wheel,) = DIST.glob("tqmon-*-py3-none-any.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def server():
    started = devcluster.start_standalone()
    yield started
    started.stop()


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(z.read(name).decode())


def test_metadata_is_complete_and_the_description_renders(dist):
    _, wheel = dist
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    with zipfile.ZipFile(wheel) as z:
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in z.namelist())
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier")
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "Topic :: System :: Monitoring" in classifiers
    assert {"prometheus", "redis", "task-queue"} <= set(meta["Keywords"].split(","))
    extras = set(meta.get_all("Provides-Extra"))
    assert {"provisioning", "web"} <= extras
    readme = (ROOT / "README.md").read_text()
    for extra in extras - {"dev"}:  # every extra a user installs is explained in the README
        assert f"tqmon[{extra}]" in readme, extra
    assert meta["Description-Content-Type"] == "text/markdown"
    html = render(meta.get_payload(), variant="GFM")
    assert html and re.search(r"<h1[^>]*>tqmon<", html) and "make demo" in html
    assert "<table>" in html and "<code>redis_cluster_node_up</code>" in html  # GFM tables


def _run_installed(tqmon: Path, server: devcluster.RedisServer, cwd: Path) -> None:
    env = env_without_checkout()
    version = subprocess.run([str(tqmon), "--version"], capture_output=True, text=True,
                             env=env, cwd=cwd, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("tqmon "), version
    where = subprocess.run([str(tqmon.parent / "python"), "-c",
                            "import tqmon; print(tqmon.__file__)"],
                           capture_output=True, text=True, env=env, cwd=cwd, timeout=30)
    assert not where.stdout.startswith(str(ROOT)), where.stdout  # the installed copy
    run = subprocess.run([str(tqmon), "--redis-url", server.url, "--cluster-name", "wheel"],
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=30)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    samples = check_exposition(run.stdout)
    up = [s for s in samples if s.name == "redis_cluster_node_up"]
    assert up and all(s.value == 1 and s.labels["cluster_name"] == "wheel" for s in up)


def test_a_fresh_venv_installs_the_wheel_with_pip(dist, server, tmp_path):
    _, wheel = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    pip = subprocess.run([str(BIN / "pip"), "--python", str(venv / "bin" / "python"), "install",
                          "-q", str(wheel)], capture_output=True, text=True, timeout=240,
                         env=env_without_checkout(), cwd=tmp_path)
    assert pip.returncode == 0, pip.stderr
    _run_installed(venv / "bin" / "tqmon", server, tmp_path)


def test_pipx_installs_the_wheel(dist, server, tmp_path):
    _, wheel = dist
    home, bindir = tmp_path / "pipx", tmp_path / "bin"
    env = env_without_checkout(PIPX_HOME=str(home), PIPX_BIN_DIR=str(bindir),
                     PIPX_MAN_DIR=str(tmp_path / "man"))
    pipx = subprocess.run([str(BIN / "pipx"), "install", "--python", sys.executable, str(wheel)],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert pipx.returncode == 0, pipx.stdout + pipx.stderr
    tqmon = home / "venvs" / "tqmon" / "bin" / "tqmon"
    assert (bindir / "tqmon").resolve() == tqmon.resolve()
    _run_installed(tqmon, server, tmp_path)


def _contents(wheel: Path) -> dict[str, bytes]:
    """Every file of a wheel; the WHEEL file's Generator line (which setuptools built it) and
    RECORD's line for WHEEL are the only parts allowed to differ between build environments."""
    with zipfile.ZipFile(wheel) as z:
        files = {n: z.read(n) for n in z.namelist()}
    for name in list(files):
        if name.endswith(".dist-info/WHEEL"):
            files[name] = b"".join(line for line in files[name].splitlines(keepends=True)
                                   if not line.startswith(b"Generator:"))
        elif name.endswith(".dist-info/RECORD"):
            files[name] = b"".join(line for line in files[name].splitlines(keepends=True)
                                   if b".dist-info/WHEEL," not in line)
    return files


def test_the_sdist_rebuilt_in_isolation_gives_the_same_wheel(dist, tmp_path):
    sdist, wheel = dist
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (src,) = tmp_path.glob("tqmon-*")
    out = tmp_path / "out"
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out),
                            str(src)], capture_output=True, text=True, timeout=300,
                           env=env_without_checkout(), cwd=tmp_path)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "Creating isolated environment" in build.stdout + build.stderr
    (rebuilt,) = out.glob("tqmon-*.whl")
    assert rebuilt.name == wheel.name
    mine, theirs = _contents(wheel), _contents(rebuilt)
    assert sorted(mine) == sorted(theirs)
    assert [n for n in mine if mine[n] != theirs[n]] == []
