"""The Debian package, for real: `make deb`, lintian, `dpkg -i` on this machine (root, as CI
runs), `systemd-analyze verify` on its units, /usr/bin/tqmon and the units' exact command lines
against a real redis-server, then `dpkg --purge` leaving nothing behind."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from helpers import check_exposition, env_without_checkout, read_textfile

from devtools import ROOT, debian, devcluster

PASSWORD = "deb-Secret-pw"
PROM = Path("/var/lib/prometheus/node-exporter/tqmon.prom")
UNIT_DIR = Path("/lib/systemd/system")
DPKG = ["flock", "/tmp/apt.lock", "dpkg"]  # apt and dpkg are shared with the other checkouts


def test_etc_default_lists_every_option_and_is_current():
    text = debian.default_file()
    assert (ROOT / "deploy/debian/tqmon.default").read_text() == text, (
        "deploy/debian/tqmon.default is stale: run `make deb` (or python -m devtools.debian "
        "--write-default) and commit it")
    from tqmon.config import build_parser

    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--version"):
                assert f"#   {flag}" in text, flag
    assert 'ARGS=""' in text.splitlines()


@pytest.fixture(scope="module")
def deb() -> Path:
    make = subprocess.run(["make", "-s", "deb"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert make.returncode == 0, make.stdout + make.stderr
    return Path(make.stdout.strip().splitlines()[-1])


def test_lintian_finds_no_error(deb):
    lint = subprocess.run(["lintian", "--no-cfg", "--fail-on", "error", str(deb)],
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in lint.stdout.splitlines() if line.startswith("E:")]
    assert lint.returncode == 0 and not errors, lint.stdout + lint.stderr


def _root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the Debian package test runs as root in CI (dpkg -i)")
        pytest.skip("dpkg -i needs root (CI runs as root)")


@pytest.fixture(scope="module")
def installed(deb):
    """The package on this machine, from a clean state; the paths that existed before."""
    _root()
    subprocess.run([*DPKG, "--purge", "tqmon"], capture_output=True, timeout=120)
    listed = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                            text=True, check=True).stdout
    paths = [Path("/" + line.split()[-1].lstrip("./").rstrip("/")) for line in
             listed.splitlines()]
    existed = {p for p in paths if p.exists()}
    install = subprocess.run([*DPKG, "-i", str(deb)], capture_output=True, text=True,
                             timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    yield existed
    subprocess.run([*DPKG, "--purge", "tqmon"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def server():
    started = devcluster.start_standalone(["--requirepass", PASSWORD])
    yield started
    started.stop()


def _clean_env(**extra: str) -> dict[str, str]:
    return env_without_checkout(PATH="/usr/sbin:/usr/bin:/sbin:/bin", **extra)


def test_the_man_page_and_usr_share_are_the_generated_ones(installed):
    """The man page is help2man on this --help: every option is in it; the dashboard and the
    rules are the committed generated files, byte for byte."""
    import gzip

    from tqmon.config import build_parser

    page = gzip.decompress(Path("/usr/share/man/man1/tqmon.1.gz").read_bytes()).decode()
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag.replace("-", "\\-") in page, flag
    share = Path("/usr/share/tqmon")
    assert (share / "tqmon.json").read_bytes() == (ROOT / "dashboards/tqmon.json").read_bytes()
    assert (share / "tqmon-rules.yaml").read_bytes() == (
        ROOT / "alerts/tqmon-rules.yaml").read_bytes()


def test_the_units_verify(installed):
    units = [str(UNIT_DIR / u) for u in debian.UNITS]
    verify = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True,
                            text=True, timeout=60, cwd="/")
    assert verify.returncode == 0 and not verify.stdout + verify.stderr, verify


def test_usr_bin_tqmon_collects_with_debians_python_yaml(installed, server, tmp_path):
    version = subprocess.run(["/usr/bin/tqmon", "--version"], capture_output=True, text=True,
                             env=_clean_env(), cwd="/", timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("tqmon "), version
    (tmp_path / "password").write_text(PASSWORD)
    config = tmp_path / "tqmon.yaml"  # YAML: read by Debian's python3-yaml
    config.write_text(f"redis_url: [{server.url}]\ncluster_name: debian\n"
                      f"password_file: {tmp_path / 'password'}\n")
    run = subprocess.run(["/usr/bin/tqmon", "--config", str(config)], capture_output=True,
                         text=True, env=_clean_env(), cwd="/", timeout=30)
    assert run.returncode == 0 and not run.stderr, run.stderr
    samples = check_exposition(run.stdout)
    assert [s.value for s in samples if s.name == "redis_cluster_node_up"
            and s.labels["cluster_name"] == "debian"] == [1.0]
    # Debian's python3 ran the private tree: nothing of it in the system's Python
    where = subprocess.run(["/usr/bin/python3", "-c", "import tqmon"], capture_output=True,
                           env=_clean_env(), cwd="/", timeout=30)
    assert where.returncode != 0


def _environment_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile=: KEY=VALUE lines, quotes removed, comments skipped."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = " ".join(shlex.split(value))
    return env


def _exec_start(unit: str, env_file: Path) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart as systemd runs it: Environment= then EnvironmentFile= (which
    wins), `$VAR` split at whitespace, `${VAR}` one word."""
    text = (UNIT_DIR / unit).read_text()
    env: dict[str, str] = {}
    command: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            k, v = shlex.split(value)[0].split("=", 1)
            env[k] = v
        elif key == "EnvironmentFile":
            assert value == f"-{env_file}"
            env.update(_environment_file(env_file))
        elif key == "ExecStart":
            command = shlex.split(value)
    argv: list[str] = []
    for word in command:
        if word.startswith("${"):
            argv.append(env.get(word[2:-1], ""))
        elif word.startswith("$"):
            argv.extend(env.get(word[1:], "").split())
        else:
            argv.append(word)
    return argv, env


def _password_file() -> Path:
    secret = Path("/etc/tqmon/password")  # as the README says: root:tqmon, 0640
    secret.write_text(PASSWORD)
    shutil.chown(secret, "root", "tqmon")
    secret.chmod(0o640)
    return secret


def test_the_timer_services_command_line_writes_the_textfile(installed, server):
    env_file = Path("/etc/default/tqmon")
    secret = _password_file()
    text = env_file.read_text().replace(
        'ARGS=""', f'ARGS="--redis-url {server.url} --cluster-name deb --password-file {secret}"')
    env_file.write_text(text)
    argv, env = _exec_start("tqmon.service", env_file)
    assert argv[0] == "/usr/bin/tqmon" and argv[-2:] == ["--textfile", str(PROM)]
    PROM.unlink(missing_ok=True)
    unit = (UNIT_DIR / "tqmon.service").read_text()
    assert "CapabilityBoundingSet=\n" in unit and "NoNewPrivileges=yes" in unit
    # as the unit runs it: root with an empty capability bounding set, no new privileges
    run = subprocess.run(["setpriv", "--bounding-set", "-all", "--no-new-privs", *argv],
                         capture_output=True, text=True, env=_clean_env(**env), cwd="/",
                         timeout=30)
    assert run.returncode == 0 and not run.stdout and not run.stderr, run
    result = read_textfile(PROM)
    assert result.values("redis_cluster_node_up", cluster_name="deb") == [1.0]
    assert PROM.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    assert sorted(p.name for p in PROM.parent.iterdir() if "tqmon" in p.name) == ["tqmon.prom"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_listen_services_command_line_as_the_tqmon_user(installed, server):
    """As systemd starts it: the unit's user and group, which may read /etc/tqmon (0640
    root:tqmon); basic auth from the web config, checked by Debian's python3-bcrypt."""
    env_file = Path("/etc/default/tqmon")
    secret = _password_file()
    web = Path("/etc/tqmon/web.yml")
    web.write_text("basic_auth_users:\n  prometheus: "
                   + bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(4)).decode() + "\n")
    shutil.chown(web, "root", "tqmon")
    web.chmod(0o640)
    port = _free_port()
    text = env_file.read_text()
    text = text.replace('ARGS=""', f'ARGS="--redis-url {server.url} --cluster-name listen '
                        f'--password-file {secret}"')
    text = text.replace('#LISTEN_ARGS="--listen :9840"',
                        f'LISTEN_ARGS="--listen 127.0.0.1:{port} --web-config-file {web}"')
    env_file.write_text(text)
    argv, env = _exec_start("tqmon-listen.service", env_file)
    assert argv[0] == "/usr/bin/tqmon" and argv[-4:-2] == ["--listen", f"127.0.0.1:{port}"]
    unit = (UNIT_DIR / "tqmon-listen.service").read_text()
    assert "User=tqmon" in unit and "NoNewPrivileges=yes" in unit
    proc = subprocess.Popen(["setpriv", "--reuid", "tqmon", "--regid", "tqmon", "--init-groups",
                             "--no-new-privs", *argv], env=_clean_env(**env), cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    auth = "Basic " + base64.b64encode(b"prometheus:scrape-pw").decode()
    try:
        assert _get(f"http://127.0.0.1:{port}/healthz", proc, auth) == "ok\n"
        metrics = _get(f"http://127.0.0.1:{port}/metrics", proc, auth)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert refused.value.code == 401
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    samples = check_exposition(metrics)
    assert [s.value for s in samples if s.name == "redis_cluster_node_up"] == [1.0], err
    assert proc.returncode == 0 and "Traceback" not in err, err


def _get(url: str, proc: subprocess.Popen, auth: str, timeout: float = 20) -> str:
    end = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Authorization": auth})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read().decode()
        except urllib.error.HTTPError:
            raise
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"{url}: {proc.poll()} {proc.stderr.read()}") from None
            time.sleep(0.05)


def test_purge_leaves_no_file_behind(installed):
    """Last: `dpkg -L` before, then nothing of it (nor what the units wrote) after."""
    listed = subprocess.run(["dpkg", "-L", "tqmon"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    paths = {Path(p) for p in listed if p.startswith("/") and p != "/."}
    assert Path("/usr/bin/tqmon") in paths and Path("/etc/default/tqmon") in paths
    purge = subprocess.run([*DPKG, "--purge", "tqmon"], capture_output=True, text=True,
                           timeout=120)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    left = sorted(p for p in paths if p.exists() and p not in installed)
    assert left == [], left
    roots = ["/etc", "/lib/systemd", "/usr/bin", "/usr/lib", "/usr/share/tqmon",
             "/usr/share/doc", "/usr/share/man", "/var/lib/prometheus"]
    found = subprocess.run(["find", *[r for r in roots if Path(r).exists()], "-name",
                            "*tqmon*"], capture_output=True, text=True, timeout=120).stdout
    assert found.split() == [], found
    assert subprocess.run(["getent", "passwd", "tqmon"], capture_output=True).returncode != 0
