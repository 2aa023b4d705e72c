"""The Redis topologies a chaos run can put the image on, each with its own named faults."""

from __future__ import annotations

import importlib
from typing import Protocol

from bench.chaos.faults import Fault, flushall, maxmemory_lru, redis_sigkill, redis_sigstop
from bench.chaos.servers import RedisServer


class Topology(Protocol):
    """Redis servers started and stopped by the run, how the app reaches them (environment
    variables for gunicorn and manage.py), and the faults that act on them."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def env(self) -> dict[str, str]: ...

    def faults(self) -> list[Fault]: ...


class Standalone:
    """One plain redis-server (no replica): the image through REDIS_URL."""

    name = "standalone"

    def __init__(self) -> None:
        self.server = RedisServer()

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def env(self) -> dict[str, str]:
        # REDIS_URL makes the image's BACKEND "redis" on django-redis's default alias; with
        # CARTIMAGE["REDIS_URL"] (redis://host:port/db) the image's own client reaches the
        # same server the same way.
        return {"REDIS_URL": self.server.url}

    def faults(self) -> list[Fault]:
        server = self.server
        return [
            Fault("redis_sigstop", redis_sigstop(server)),
            Fault("redis_sigkill", redis_sigkill(server)),
            Fault("flushall", flushall(server)),
            Fault("maxmemory_lru", maxmemory_lru(server)),
        ]


class Harnessed:
    """A topology from the suite's harness (tests/topologies/<name>.py), once it exists: that
    module provides `chaos_topology()`, returning an object with this module's Topology
    interface (start, stop, env, faults: e.g. Sentinel failover, CLUSTER FAILOVER FORCE, a
    primary killed, a slot migrated)."""

    def __init__(self, name: str) -> None:
        self.name = name
        try:
            module = importlib.import_module(f"tests.topologies.{name}")
        except ImportError as exc:
            raise SystemExit(
                f"--topology {name}: tests/topologies/{name}.py is not here yet ({exc})"
            ) from None
        factory = getattr(module, "chaos_topology", None)
        if factory is None:
            raise SystemExit(
                f"--topology {name}: tests/topologies/{name}.py lacks chaos_topology()"
            )
        self.inner: Topology = factory()

    def start(self) -> None:
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()

    def env(self) -> dict[str, str]:
        return self.inner.env()

    def faults(self) -> list[Fault]:
        return self.inner.faults()


TOPOLOGIES = ("standalone", "sentinel", "cluster")


def topology(name: str) -> Topology:
    if name == "standalone":
        return Standalone()
    if name in TOPOLOGIES:
        return Harnessed(name)
    raise SystemExit(f"unknown topology {name!r}: one of {', '.join(TOPOLOGIES)}")
