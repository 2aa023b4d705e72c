"""The Redis Cluster the topology tests share (started once per session, on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.topologies.cluster import RedisClusterTopology


@pytest.fixture(scope="session")
def cluster_topology() -> Iterator[RedisClusterTopology]:
    """3 primaries + 3 replicas; every process and temp dir is gone after the session."""
    with RedisClusterTopology() as topology:
        yield topology
