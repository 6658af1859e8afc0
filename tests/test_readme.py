"""The README starts with the user: three sentences, the dashboard picture, a quick start of at
most three commands per way of running tqmon, the metrics table (current with the catalog);
the contributor commands come last, in their own section."""

from __future__ import annotations

import re

from devtools import ROOT, readme

TEXT = (ROOT / "README.md").read_text()


def _sections() -> list[str]:
    return re.findall(r"^## (.+)$", TEXT, re.M)


def test_the_user_comes_first():
    sections = _sections()
    assert sections[:2] == ["Quick start", "Metrics"]
    assert sections[-3:] == ["Contributing: `make demo`, `make test`, `make bench`",
                             "Benchmark", "Layout"]
    head = TEXT.split("\n## ", 1)[0]
    assert "![tqmon dashboard](docs/img/dashboard.png)" in head
    intro = head.split("![tqmon dashboard]", 1)[0].split("\n", 1)[1]
    assert len(re.findall(r"[.!?](\s|$)", intro.strip())) == 3, intro  # three sentences
    assert "make demo" not in head and "make test" not in head


def test_every_quick_start_path_takes_at_most_three_commands():
    start = TEXT.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"\*\*(.+?)\*\*.*?```sh\n(.*?)```", start, re.S)
    assert [name.split(" (")[0] for name, _ in blocks] == [
        "pip or pipx", "Debian package", "Kubernetes", "Telegraf"]
    for name, block in blocks:
        commands = [line for line in block.splitlines() if line.strip()]
        count = sum(1 + line.split("#")[0].count("&&") for line in commands)
        assert 1 <= count <= 3, (name, commands)


def test_the_metrics_table_is_current():
    assert readme.rendered(TEXT) == TEXT, "README.md's metrics table is stale: make catalog"
    from tqmon import catalog

    for name in catalog.default().metrics:
        assert f"| `{name}` |" in TEXT, name
