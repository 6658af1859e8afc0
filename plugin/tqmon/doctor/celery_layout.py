"""Celery keys a collection could not read (a separator, a key prefix, a list of another type),
each a finding with the option that fixes it: the collector's own stderr lines, as doctor
shows them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..collectors.celery import layout
from .base import Finding, warning


def check_celery_layout(errors: Iterable[str]) -> Iterator[Finding]:
    for text, fix in layout.unreadable(errors):
        yield warning("celery", text, fix)
