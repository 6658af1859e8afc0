"""catalog.yaml, the file people edit: read it, and compile it into the catalog.json the plugin
reads at run time (only the keys the plugin needs; the dashboard and alert sections stay here),
and render its per-schema signal tables into docs/adapters.md (devtools.signals).

    python -m devtools.catalog_source [--check]     (make catalog)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from tqmon.catalog import COMPILED, SOURCE, Catalog, CatalogError, parse

from devtools import signals


def read_yaml(path: Path = SOURCE) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"),
                     Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


RUNTIME_KEYS = ("version", "labels", "metrics")  # what the plugin needs; the rest is for
# the dashboard and alert generators, which read catalog.yaml itself


def compiled_text(path: Path = SOURCE) -> str:
    """catalog.json's exact content for a catalog source file (validated first)."""
    document = read_yaml(path)
    parse(document)
    runtime = {key: document[key] for key in RUNTIME_KEYS}
    return json.dumps(runtime, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def load(path: Path = SOURCE) -> Catalog:
    """A catalog source file, validated."""
    return parse(read_yaml(path))


def main(argv: list[str] | None = None) -> int:
    """Regenerate catalog.json and docs/adapters.md's signal tables, or with --check fail if
    either is stale."""
    parser = argparse.ArgumentParser(prog="python -m devtools.catalog_source",
                                     description=main.__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    try:
        text = compiled_text()
        doc = signals.DOC.read_text(encoding="utf-8")
        tables = signals.rendered_doc(read_yaml(), doc)
    except CatalogError as exc:
        print(f"catalog.yaml: {exc}", file=sys.stderr)
        return 2
    stale = 0
    for path, new in ((COMPILED, text), (signals.DOC, tables)):
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == new:
            continue
        if args.check:
            print(f"{path.name} is stale: run `make catalog`", file=sys.stderr)
            stale = 1
        else:
            path.write_text(new, encoding="utf-8")
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
