"""Real redis-server processes on free loopback ports, shared per session where tests only read.

The 6-node cluster takes seconds to form, so it starts in the background as the session
begins and tests that need it wait for it; tests that break servers get their own.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import pytest
from helpers import Worker

from devtools import devcluster


class _Background:
    def __init__(self, factory) -> None:
        self.value = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(factory,), daemon=True)
        self._thread.start()

    def _run(self, factory) -> None:
        try:
            self.value = factory()
        except BaseException as exc:
            self.error = exc

    def get(self):
        self._thread.join()
        if self.error:
            raise self.error
        return self.value


def pytest_sessionstart(session: pytest.Session) -> None:
    for tool in ("redis-server", "redis-cli", "promtool"):
        if not shutil.which(tool):
            raise pytest.UsageError(f"{tool} is required by the tests (see .ci/run)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("cluster" in item.fixturenames for item in items):
        config._tqmon_cluster = _Background(devcluster.start_cluster)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[devcluster.Cluster]:
    started = request.config._tqmon_cluster.get()
    yield started
    started.stop()


def _replicated() -> Iterator[list[devcluster.RedisServer]]:
    servers = devcluster.start_replicated()
    yield servers
    for server in servers:
        server.stop()


replicated = pytest.fixture(scope="session", name="replicated")(_replicated)
fresh_replicated = pytest.fixture(name="fresh_replicated")(_replicated)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Real worker processes a test starts; killed at the end whatever happened."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture
def standalone() -> Iterator[devcluster.RedisServer]:
    server = devcluster.start_standalone()
    yield server
    server.stop()
