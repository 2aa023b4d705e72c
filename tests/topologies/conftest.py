"""The topologies a session starts once (only when a test asks for one)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.topologies.cluster import RedisClusterTopology
from tests.topologies.sentinel import SentinelTopology


@pytest.fixture(scope="session")
def sentinel_topology() -> Iterator[SentinelTopology]:
    """A primary, a replica and three sentinels on loopback, stopped after the session."""
    for tool in ("redis-server", "redis-sentinel"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (make redis-sentinel installs it)")
    topology = SentinelTopology()
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def cluster_topology() -> Iterator[RedisClusterTopology]:
    """3 primaries + 3 replicas on loopback; every process and temp dir is gone after the
    session."""
    with RedisClusterTopology() as topology:
        yield topology
