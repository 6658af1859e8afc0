"""`make deb`: build/tqmon_V_all.deb with dpkg-deb, from the wheel `make dist` builds.

Layout (Debian's conventions for exporters and textfile collectors):
  /usr/bin/tqmon                   runs Debian's python3 on the private tree below, -I (no
                                   PYTHONPATH, no user site), -B (the tree stays as dpkg left it)
  /usr/lib/tqmon/                  tqmon and the libraries Debian's versions are too old for
                                   (redis-py: Debian has 4.x, tqmon needs 8.x), never in the
                                   system's Python; PyYAML and bcrypt (basic auth) come from
                                   python3-yaml and python3-bcrypt (both tested)
  /lib/systemd/system/             tqmon.service + tqmon.timer (textfile), tqmon-listen.service
  /etc/default/tqmon               ARGS= and every option, commented (generated from the parser:
                                   deploy/debian/tqmon.default, committed, a test checks it)
  /usr/share/man/man1/tqmon.1.gz   help2man on `tqmon --help`, at build time
  /usr/share/tqmon/                the dashboard and the rule file, as generated

`python -m devtools.debian --write-default` rewrites deploy/debian/tqmon.default only.
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

from devtools import ROOT

DEBIAN = ROOT / "deploy" / "debian"
DEFAULT_FILE = DEBIAN / "tqmon.default"
# Bundled: pure-Python distributions at the versions the dev venv (and so the tests) run;
# Debian 12 has redis-py 4.3 and prometheus_client 0.16, older than tqmon needs (>= 8, >= 0.20).
BUNDLED = ("redis", "prometheus_client")
UNITS = ("tqmon.service", "tqmon.timer", "tqmon-listen.service")
MAINTAINER = "tqmon contributors <tqmon@users.noreply.github.com>"
WRAPPER = '''#!/usr/bin/python3 -BI
"""tqmon (Debian package): the command; its Python modules live in /usr/lib/tqmon."""
import sys

sys.path.insert(0, "/usr/lib/tqmon")
from tqmon.cli import console  # noqa: E402

console()
'''


# --- /etc/default/tqmon, from the parser -------------------------------------------------------
def default_file() -> str:
    """Every option of `tqmon --help`, commented, under the variables the units read."""
    from tqmon.config import build_parser

    lines = [
        "# /etc/default/tqmon: read by tqmon.service (run by tqmon.timer) and",
        "# tqmon-listen.service. Generated from tqmon's option parser (`make deb`); this file",
        "# is yours: dpkg keeps your changes.",
        "#",
        "# ARGS: options for both units. tqmon.service adds",
        "#   --textfile /var/lib/prometheus/node-exporter/tqmon.prom",
        "# (node_exporter's textfile directory on Debian), tqmon-listen.service adds LISTEN_ARGS.",
        "# The password never goes here (this file is world-readable): put it in",
        "# /etc/tqmon/password (root:tqmon, mode 0640) and add",
        "# --password-file /etc/tqmon/password.",
        "# Example:",
        '#   ARGS="--redis-url redis://10.0.0.5:6379 --cluster-name prod '
        '--password-file /etc/tqmon/password"',
        'ARGS=""',
        "",
        "# LISTEN_ARGS: what tqmon-listen.service adds (default --listen :9840). Example:",
        '#   LISTEN_ARGS="--listen :9840 --web-config-file /etc/tqmon/web.yml"',
        '#LISTEN_ARGS="--listen :9840"',
        "",
        "# Every option (left out: its default). Options for one run (--textfile, --interval,",
        "# --listen) belong to the units, not to ARGS.",
    ]
    for action in build_parser()._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        flag = action.option_strings[-1]
        usage = flag if action.nargs == 0 else f"{flag} {action.metavar or action.dest.upper()}"
        if action.choices:
            usage = f"{flag} {'|'.join(action.choices)}"
        lines.append("#")
        lines.append(f"#   {usage}")
        help_text = " ".join((action.help or "").split()).replace("%%", "%")
        lines.extend(textwrap.wrap(help_text, 96, initial_indent="#       ",
                                   subsequent_indent="#       "))
    return "\n".join(lines) + "\n"


def write_default() -> None:
    DEFAULT_FILE.write_text(default_file())


# --- the package tree ----------------------------------------------------------------------------
def _install(src: Path, dest: Path, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(mode)


def _wheel() -> Path:
    subprocess.run(["make", "-s", "dist"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    (wheel,) = (ROOT / "build" / "dist").glob("tqmon-*-py3-none-any.whl")
    return wheel


def _bundle(lib: Path) -> list[Path]:
    """redis-py (and what it needs on Debian's python3, e.g. async-timeout before 3.11.3) at the
    dev venv's version, resolved for /usr/bin/python3, without byte-code (postinst compiles)."""
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in BUNDLED]
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", "/usr/bin/python3",
                          "install", "--quiet", "--no-compile", "--only-binary", ":all:",
                          "--root-user-action", "ignore", "--target", str(lib), *pins],
                         capture_output=True, text=True, timeout=300)
    if pip.returncode:
        raise SystemExit(f"pip install --target failed:\n{pip.stderr}")
    shutil.rmtree(lib / "bin", ignore_errors=True)
    for module in lib.rglob("*.py"):  # modules, not scripts: no `#!/usr/bin/env python` line
        text = module.read_text(encoding="utf-8")
        if text.startswith("#!"):
            module.write_text(text.split("\n", 1)[1], encoding="utf-8")
    return sorted(lib.glob("*.dist-info"))


def _copyright(dists: list[Path]) -> str:
    parts = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: tqmon\n\n"
        "Files: *\nCopyright: tqmon contributors\nLicense: Apache-2.0\n"
        " On Debian systems, the full text of the Apache License 2.0 is in\n"
        " /usr/share/common-licenses/Apache-2.0.\n",
    ]
    for dist in dists:
        meta = Parser().parsestr((dist / "METADATA").read_text())
        name, spdx = meta["Name"], meta["License-Expression"] or meta["License"]
        texts = sorted(p for p in dist.rglob("*") if p.is_file() and "LICEN" in p.name.upper())
        text = texts[0].read_text() if texts else ""
        holders = [line.strip() for line in text.splitlines()
                   if line.strip().lower().startswith("copyright ")] or [
                       meta["Author"] or meta["Author-email"] or name]
        if spdx and "apache" in spdx.lower() and "2" in spdx:
            spdx = "Apache-2.0"  # "Apache 2", "Apache License 2.0": one SPDX name
        modules = (dist / "top_level.txt").read_text().split() if (
            dist / "top_level.txt").exists() else [name.replace("-", "_")]
        files = " ".join(f"usr/lib/tqmon/{m}/*" for m in modules)
        if spdx == "Apache-2.0":
            body = (" On Debian systems, the full text of the Apache License 2.0 is in\n"
                    " /usr/share/common-licenses/Apache-2.0.\n")
        else:
            body = "".join(f" {line}\n" if line.strip() else " .\n"
                           for line in text.strip().splitlines())
        parts.append(f"Files: {files}\nCopyright: {holders[0]}\nLicense: {spdx}\n{body}")
    return "\n".join(parts)


def _control(version: str, installed_kib: int) -> str:
    return textwrap.dedent(f"""\
        Package: tqmon
        Version: {version}
        Architecture: all
        Maintainer: {MAINTAINER}
        Installed-Size: {installed_kib}
        Depends: python3 (>= 3.10), python3-yaml, adduser
        Recommends: prometheus-node-exporter, python3-bcrypt
        Section: net
        Priority: optional
        Description: Prometheus metrics for Redis-backed task queues
         tqmon tells you that a task-queue worker died, a Redis node is down or a queue
         is backing up. It reads heartbeats and queues from Redis (standalone or
         Cluster) for its own contract and for RQ, Dramatiq, Celery, arq, Sidekiq and
         BullMQ, and prints Prometheus metrics.
         .
         tqmon.timer runs it every 15 s for node_exporter's textfile collector
         (/var/lib/prometheus/node-exporter/tqmon.prom); tqmon-listen.service serves
         /metrics for a direct scrape. A Grafana dashboard and Prometheus alert rules
         are in /usr/share/tqmon.
        """)


def _changelog(version: str) -> bytes:
    when = email.utils.formatdate(int(os.environ.get("SOURCE_DATE_EPOCH", "1767225600")))
    text = (f"tqmon ({version}) unstable; urgency=medium\n\n"
            f"  * Release {version}.\n\n -- {MAINTAINER}  {when}\n")
    return gzip.compress(text.encode(), mtime=0)


def _man_page(wheel_tree: Path, version: str, dest: Path) -> None:
    """help2man on the real `tqmon --help` and `--version` of the tree being packaged."""
    with tempfile.TemporaryDirectory() as tmp:
        command = Path(tmp) / "tqmon"
        command.write_text(f"#!/bin/sh\nCOLUMNS=80 PYTHONPATH={wheel_tree} "
                           f'exec {sys.executable} -m tqmon "$@"\n')
        command.chmod(0o755)
        page = subprocess.run(
            ["help2man", "--no-info", "--section=1", "--source", f"tqmon {version}",
             "--name", "Prometheus metrics for Redis-backed task queues", str(command)],
            check=True, capture_output=True, timeout=60).stdout
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(gzip.compress(page, mtime=0))


def build(output: Path) -> Path:
    write_default()
    wheel = _wheel()
    version = wheel.name.split("-")[1]
    stage = output / "deb"
    shutil.rmtree(stage, ignore_errors=True)
    lib = stage / "usr/lib/tqmon"
    with zipfile.ZipFile(wheel) as z:
        members = [n for n in z.namelist() if n.startswith("tqmon/")]
        z.extractall(lib, members)
    dists = _bundle(lib)
    copyright_text = _copyright(dists)  # then the licence files move into it (Debian's place)
    for dist in dists:
        for path in [p for p in dist.rglob("*") if p.is_file() and "LICEN" in p.name.upper()]:
            path.unlink()
        shutil.rmtree(dist / "licenses", ignore_errors=True)
    bindir = stage / "usr/bin"
    bindir.mkdir(parents=True)
    (bindir / "tqmon").write_text(WRAPPER)
    (bindir / "tqmon").chmod(0o755)
    for unit in UNITS:
        _install(DEBIAN / unit, stage / "lib/systemd/system" / unit)
    _install(DEFAULT_FILE, stage / "etc/default/tqmon")
    (stage / "etc/tqmon").mkdir(parents=True)
    (stage / "var/lib/prometheus/node-exporter").mkdir(parents=True)
    share = stage / "usr/share/tqmon"
    _install(ROOT / "dashboards/tqmon.json", share / "tqmon.json")
    _install(ROOT / "alerts/tqmon-rules.yaml", share / "tqmon-rules.yaml")
    doc = stage / "usr/share/doc/tqmon"
    _install(ROOT / "README.md", doc / "README.md")
    (doc / "copyright").write_text(copyright_text)
    (doc / "changelog.gz").write_bytes(_changelog(version))
    _man_page(lib, version, stage / "usr/share/man/man1/tqmon.1.gz")
    for path in stage.rglob("*"):  # 0755 dirs, 0644 files but the command (umask-proof)
        if path.is_dir():
            path.chmod(0o755)
        elif path != bindir / "tqmon":
            path.chmod(0o644)
    size = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    control = stage / "DEBIAN"
    control.mkdir()
    (control / "control").write_text(_control(version, (size + 1023) // 1024))
    (control / "conffiles").write_text("/etc/default/tqmon\n")
    (control / "md5sums").write_text("".join(
        f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(stage)}\n"
        for p in sorted(stage.rglob("*")) if p.is_file() and control not in p.parents))
    for script in ("postinst", "prerm", "postrm"):
        _install(DEBIAN / script, control / script, 0o755)
    deb = output / f"tqmon_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(deb)],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    return deb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "build")
    parser.add_argument("--write-default", action="store_true",
                        help="only rewrite deploy/debian/tqmon.default")
    args = parser.parse_args()
    if args.write_default:
        write_default()
        return 0
    print(build(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
