"""The direct text-format writer against prometheus_client, its reference: identical bytes for
random samples of every catalog metric, whatever the label values and numbers."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from tqmon import catalog, exposition
from tqmon.model import Histogram, Samples

CATALOG = catalog.default()
# Label values as collectors make them: any text, including every byte 0-255 decoded with
# backslashreplace (quotes, backslashes, newlines, control characters, \xNN escapes).
LABEL = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    st.binary(max_size=12).map(lambda raw: raw.decode("utf-8", "backslashreplace")),
    st.sampled_from(["", '"', "\\", "\n", "\\n", 'a"b\\c\nd', "é✓", "\x00\x7f"]),
)
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e6, 999999.9999, 1e-300, 1.7976931348623157e308,
                     123456789.0, math.nan, math.inf, -math.inf, 5e-324]),
    st.integers(min_value=-(2**53), max_value=2**53).map(float),
)
COUNT = st.floats(min_value=0, max_value=1e15, allow_nan=False)


@st.composite
def histograms(draw) -> Histogram:
    bounds = CATALOG["task_processing_latency_seconds"].buckets
    counts = sorted(draw(st.lists(COUNT, min_size=len(bounds) + 1, max_size=len(bounds) + 1)))
    return Histogram(tuple(zip((*bounds, math.inf), counts, strict=True)), draw(NUMBER))


@st.composite
def samples(draw) -> Samples:
    out = Samples()
    for name in draw(st.lists(st.sampled_from(sorted(CATALOG.metrics)), max_size=8)):
        spec = CATALOG[name]
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            labels = {label: draw(LABEL) for label in spec.labels}
            value = draw(histograms()) if spec.type == "histogram" else (
                1.0 if spec.type == "info" else draw(NUMBER))
            out.add(name, labels, value)
    return out


@settings(max_examples=300, deadline=None)
@given(samples())
def test_direct_writer_matches_prometheus_client(generated):
    direct = b"".join(exposition.text_chunks(CATALOG, generated))
    reference = b"".join(exposition.library_chunks(CATALOG, generated, "prometheus"))
    assert direct == reference


def test_every_catalog_metric_and_slices_match(monkeypatch):
    """All metrics at once, and more rows than a slice: headers once per family."""
    monkeypatch.setattr(exposition, "SLICE", 3)
    out = Samples()
    for name, spec in CATALOG.metrics.items():
        for n in range(7):
            labels = {label: f"{label}-{n}" for label in spec.labels}
            bounds = spec.buckets
            value = Histogram(tuple(zip((*bounds, math.inf), range(len(bounds) + 1),
                                        strict=True)), 1.5) if spec.type == "histogram" else n
            out.add(name, labels, float(value) if not isinstance(value, Histogram) else value)
    direct = b"".join(exposition.text_chunks(CATALOG, out))
    assert direct == b"".join(exposition.library_chunks(CATALOG, out, "prometheus"))
    assert direct.count(b"# TYPE worker_up gauge") == 1
