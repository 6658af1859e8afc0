"""What every doctor check shares: a finding, and the checkup it reads (the config, the
topology discovery found, the nodes that answered, the run's captured stderr)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config
from ..screen import Captured
from ..topology import Topology

MAX_NODE_LINES = 20  # per-node lines before "and N more"


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warning | problem
    topic: str
    text: str
    fixes: tuple[str, ...] = ()


def ok(topic: str, text: str) -> Finding:
    return Finding("ok", topic, text)


def warning(topic: str, text: str, *fixes: str) -> Finding:
    return Finding("warning", topic, text, fixes)


def problem(topic: str, text: str, *fixes: str) -> Finding:
    return Finding("problem", topic, text, fixes)


@dataclass
class Reach:
    rtt: float = 0.0
    offset: float | None = None  # Redis TIME minus this host's clock, mid round trip
    whoami: str | None = None
    cluster_info: dict[str, str] | None = None
    error: BaseException | None = None


@dataclass
class Checkup:
    """What the checks read; `reached` is filled by the reach check, which runs first."""

    config: Config
    topology: Topology
    captured: Captured
    reached: dict[str, Reach] = field(default_factory=dict)
