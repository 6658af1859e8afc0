"""The catalog's `signals` section: one table per schema of the worker and queue metrics it
emits, where each comes from, who keeps a counter monotonic, and when a metric is emitted only
under a condition. docs/adapters.md's per-schema tables are rendered from it between
`<!-- signals:NAME -->` and `<!-- /signals:NAME -->` (`make catalog` rewrites them; a test
fails on drift); tests/test_conformance.py checks each table against the real system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqmon.catalog import Catalog, CatalogError, parse
from tqmon.schemas import SCHEMAS

DOC = Path(__file__).resolve().parent.parent / "docs" / "adapters.md"
COLLECTORS = ("workers", "queues")  # the schema-dependent ones; nodes and self are the same
MONOTONIC = ("counter", "histogram")
_KEYS = {"from", "monotonic", "when"}


@dataclass(frozen=True)
class Signal:
    metric: str
    source: str  # where it comes from
    monotonic: str = ""  # who keeps it monotonic (counters and histograms)
    when: str = ""  # the condition it is emitted under; "" for always


Tables = dict[str, dict[str, Signal]]


def parse_signals(document: Any, cat: Catalog | None = None) -> Tables:
    """The validated `signals` section: schema -> metric -> Signal."""
    cat = cat or parse(document)
    raw = document.get("signals")
    if not isinstance(raw, dict):
        raise CatalogError("signals: a mapping of schema -> metric -> {from, monotonic, when}")
    if missing := set(SCHEMAS) - set(raw):
        raise CatalogError(f"signals: no table for {sorted(missing)}")
    if unknown := set(raw) - set(SCHEMAS):
        raise CatalogError(f"signals: {sorted(unknown)} are not schemas")
    tables: Tables = {}
    for schema, rows in raw.items():
        if not isinstance(rows, dict) or not rows:
            raise CatalogError(f"signals.{schema}: a non-empty mapping")
        tables[schema] = {}
        for metric, entry in rows.items():
            where = f"signals.{schema}.{metric}"
            if metric not in cat or cat[metric].collector not in COLLECTORS:
                raise CatalogError(f"{where}: not a workers or queues metric of the catalog")
            if not isinstance(entry, dict) or set(entry) - _KEYS or not entry.get("from"):
                raise CatalogError(f"{where}: {{from, monotonic, when}} with a `from`")
            if (cat[metric].type in MONOTONIC) != bool(entry.get("monotonic")):
                raise CatalogError(f"{where}: counters and histograms, and only they, say "
                                   "who keeps them monotonic")
            tables[schema][metric] = Signal(metric, str(entry["from"]),
                                            str(entry.get("monotonic", "")),
                                            str(entry.get("when", "")))
    return tables


def render(schema: str, table: dict[str, Signal], cat: Catalog) -> str:
    """The markdown table of one schema."""
    lines = ["| Metric | From | Monotonic: kept by | Emitted |", "|---|---|---|---|"]
    for signal in table.values():
        spec = cat[signal.metric]
        labels = "{" + ",".join(spec.labels) + "}" if spec.labels else ""
        cells = (f"`{signal.metric}{labels}`", signal.source,
                 signal.monotonic or ("-" if spec.type not in MONOTONIC else ""),
                 signal.when or "always")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _block(schema: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- signals:{schema} -->\n).*?(<!-- /signals:{schema} -->)", re.S)


def rendered_doc(document: Any, text: str) -> str:
    """docs/adapters.md's text with every schema's table block rendered again."""
    cat = parse(document)
    for schema, table in parse_signals(document, cat).items():
        pattern = _block(schema)
        if not pattern.search(text):
            raise CatalogError(f"{DOC.name}: no <!-- signals:{schema} --> block")
        body = render(schema, table, cat) + "\n"
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text
