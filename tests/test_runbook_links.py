"""Every runbook link the bundle writes (alert annotations, the dashboard's Runbook link, the
panels' alert links) leads to a section of docs/runbook.md: by default the file itself, relative,
and with `runbook_base_url` set, the user's address."""

from __future__ import annotations

import re

import pytest
import yaml
from provisioning_helpers import OVERRIDES_EXAMPLE, ROOT, RULES, RUNBOOK, load_dashboard, load_rules

from devtools import generator

_LINK = re.compile(r"\]\(([^)]*#[^)]*)\)")


def _anchors() -> set[str]:
    """GitHub's anchors for the runbook's headings."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _links(dashboard: dict, rules: list[dict]) -> tuple[list[str], list[str]]:
    """(the dashboard's runbook links, every link to a runbook section)."""
    sections = [r["annotations"]["runbook_url"] for r in rules]
    for panel in dashboard["panels"]:
        sections += _LINK.findall(panel.get("description", ""))
    return [link["url"] for link in dashboard["links"]], sections


def test_default_links_lead_to_the_runbook_in_the_bundle():
    """No web address that nobody set up: the relative path of the runbook, and each anchor one
    of its headings."""
    runbooks, sections = _links(load_dashboard(), load_rules(RULES))
    assert runbooks == ["docs/runbook.md"] and (ROOT / runbooks[0]).is_file()
    anchors = _anchors()
    assert len(sections) > 20
    for url in sections:
        path, anchor = url.split("#")
        assert path == "docs/runbook.md" and anchor in anchors, url


def test_runbook_base_url_reaches_every_link(tmp_path):
    base = yaml.safe_load(OVERRIDES_EXAMPLE.read_text())["runbook_base_url"]
    out_json, out_rules = tmp_path / "tqmon.json", tmp_path / "rules.yaml"
    for name, out in (("dashboards", out_json), ("alerts", out_rules)):
        assert generator(name).main(["--overrides", str(OVERRIDES_EXAMPLE),
                                     "--output", str(out)]) == 0
    runbooks, sections = _links(load_dashboard(out_json), load_rules(out_rules))
    assert runbooks == [base]
    anchors = _anchors()
    for url in sections:
        assert url.startswith(base + "#") and url.removeprefix(base + "#") in anchors, url
    assert "docs/runbook.md" not in out_json.read_text() + out_rules.read_text()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"runbook_url": "https://wiki/x"}, "runbook_url is now runbook_base_url"),
    ({"runbook_base_url": "https://wiki/x#top"}, "runbook_base_url: no #anchor"),
])
def test_a_wrong_runbook_setting_is_one_clear_line(tmp_path, capsys, overrides, message):
    path = tmp_path / "overrides.yaml"
    path.write_text(yaml.safe_dump(overrides))
    assert generator("alerts").main(["--overrides", str(path),
                                     "--output", str(tmp_path / "r.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
