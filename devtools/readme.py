"""The README's metrics table, from the catalog: rewritten between its two marker lines by
`make catalog` (a test fails when it is stale).

    python -m devtools.readme [--check]
"""

from __future__ import annotations

import argparse
import sys

from tqmon import catalog

from devtools import ROOT

README = ROOT / "README.md"
BEGIN = "<!-- metrics table: generated from plugin/tqmon/catalog.yaml by `make catalog` -->"
END = "<!-- end of the metrics table -->"


def table() -> str:
    rows = ["| metric | type | labels | what it says |", "|---|---|---|---|"]
    for spec in catalog.default().metrics.values():
        labels = ", ".join(f"`{label}`" for label in spec.labels)
        text = " ".join(spec.help.split()).replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {spec.type} | {labels} | {text} |")
    return "\n".join(rows)


def rendered(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.readme", description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = rendered(text)
    if args.check:
        if new != text:
            print("README.md: the metrics table is stale: run `make catalog`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
