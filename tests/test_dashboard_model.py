"""The generated dashboard is Grafana's current model (tests/dashboard_model.py), and each check
fails a dashboard broken on purpose."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import dashboard_model
import pytest
from provisioning_helpers import OVERRIDES_EXAMPLE, load_dashboard, panels

from devtools import generator


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return load_dashboard()


def test_the_committed_dashboard_passes_every_check(dashboard):
    assert dashboard_model.problems(dashboard) == []
    assert dashboard["schemaVersion"] == dashboard_model.SCHEMA_VERSION


def test_a_dashboard_with_overrides_passes(tmp_path):
    out = tmp_path / "tqmon.json"
    assert generator("dashboards").main(["--overrides", str(OVERRIDES_EXAMPLE),
                                         "--output", str(out)]) == 0
    assert dashboard_model.problems(load_dashboard(out)) == []


def test_the_vendored_schema_is_grafanas():
    """The schema file is the generator's output as the README says, for the model we write."""
    schema = json.loads(dashboard_model.SCHEMA.read_text())
    assert schema["$ref"] == "#/definitions/Dashboard"
    dash = schema["definitions"]["Dashboard"]
    assert dash["required"] == ["schemaVersion"] and dash["additionalProperties"] is False
    assert "rows" not in dash["properties"] and "span" not in schema["definitions"]["Panel"][
        "properties"]


def _first(d: dict, title: str | None = None) -> dict:
    return next(p for p in panels(d) if title is None or p["title"] == title)


def _outside_the_grid(d: dict) -> None:
    _first(d)["gridPos"].update(x=20, w=8)


def _overlapping(d: dict) -> None:
    first, second = panels(d)[:2]
    second["gridPos"] = dict(first["gridPos"])


def _undefined_variable(d: dict) -> None:
    target = _first(d)["targets"][0]
    target["expr"] = target["expr"].replace('job=~"$job"', 'job=~"$jobs"')


def _undefined_variable_in_braces(d: dict) -> None:
    _first(d)["targets"][0]["legendFormat"] = "${pool:regex}"


def _duplicate_id(d: dict) -> None:
    first, second = panels(d)[:2]
    second["id"] = first["id"]


def _deprecated_type(d: dict) -> None:
    _first(d)["type"] = "graph"


def _legacy_rows(d: dict) -> None:
    d["rows"] = []


def _old_schema_version(d: dict) -> None:
    d["schemaVersion"] = 37


def _legacy_panel_key(d: dict) -> None:
    _first(d)["span"] = 3


def _wrong_type(d: dict) -> None:
    _first(d)["gridPos"]["w"] = "3"


BROKEN: dict[str, tuple[Callable[[dict], None], str]] = {
    "panel outside the grid": (_outside_the_grid, "outside the 24-column grid"),
    "overlapping panel": (_overlapping, "overlaps"),
    "undefined variable": (_undefined_variable, "$jobs is not a dashboard variable"),
    "undefined ${variable:format}": (_undefined_variable_in_braces, "$pool is not"),
    "duplicate panel id": (_duplicate_id, "is also"),
    "deprecated panel type": (_deprecated_type, "type graph is deprecated"),
    "legacy top-level key": (_legacy_rows, "'rows' was unexpected"),
    "old schemaVersion": (_old_schema_version, "schemaVersion 37, not 42"),
    "legacy panel key": (_legacy_panel_key, "'span' was unexpected"),
    "value of the wrong type": (_wrong_type, "'3' is not of type 'number'"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_check_fails_a_dashboard_broken_on_purpose(dashboard, case):
    breaks, expected = BROKEN[case]
    broken = copy.deepcopy(dashboard)
    breaks(broken)
    found = dashboard_model.problems(broken)
    assert any(expected in line for line in found), found
