"""The Redis topologies a chaos run can put the image on, each with its own named faults."""

from __future__ import annotations

import importlib
import os
import random
import secrets
import time
from typing import Any, Protocol

from bench.chaos.faults import (
    Fault,
    FaultDidNotFire,
    Target,
    flushall,
    maxmemory_lru,
    redis_sigkill,
    redis_sigstop,
    stopped_within,
)
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


def _harness(name: str) -> Any:
    """tests/topologies/<name>.py, the suite's harness (it imports the project's test helpers,
    so Django is set up first; nothing connects)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    import django

    django.setup()
    try:
        return importlib.import_module(f"tests.topologies.{name}")
    except ImportError as exc:
        raise SystemExit(
            f"--topology {name}: tests/topologies/{name}.py is not here ({exc})"
        ) from None


class Sentinel:
    """A primary, a replica and three sentinels (tests/topologies/sentinel.py), the image
    through a redis+sentinel:// REDIS_URL."""

    name = "sentinel"

    def __init__(self) -> None:
        self.topo = _harness("sentinel").SentinelTopology()

    def start(self) -> None:
        self.topo.start()

    def stop(self) -> None:
        self.topo.stop()

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.topo.url}

    def faults(self) -> list[Fault]:
        topo = self.topo

        def failover(target: Target, seconds: float, rng: random.Random) -> str:
            old = topo.primary.port
            topo.failover()
            _pause_rest(seconds)
            if topo.primary.port == old:
                raise FaultDidNotFire("SENTINEL FAILOVER left the primary where it was")
            return f"SENTINEL FAILOVER: primary {old} -> {topo.primary.port}"

        def primary_killed(target: Target, seconds: float, rng: random.Random) -> str:
            dead = topo.primary
            old = dead.port
            topo.kill(dead)
            topo.fail_over_from_dead_primary()
            topo.restart_as_replica(dead)
            if topo.primary.port == old:
                raise FaultDidNotFire("the killed primary was not replaced")
            return f"primary {old} SIGKILLed, {topo.primary.port} promoted, {old} back as replica"

        def primary_sigstop(target: Target, seconds: float, rng: random.Random) -> str:
            node = topo.primary
            topo.freeze(node)
            try:
                stopped = stopped_within(node.process.pid, 2.0)
                time.sleep(seconds)
            finally:
                topo.thaw(node)
                topo.heal()  # the sentinels may have failed over meanwhile
            if not stopped:
                raise FaultDidNotFire("the primary was not seen stopped after SIGSTOP")
            return f"primary {node.port} stopped {seconds:.1f} s; primary now {topo.primary.port}"

        return [
            Fault("sentinel_failover", failover),
            Fault("sentinel_primary_killed", primary_killed),
            Fault("primary_sigstop", primary_sigstop),
        ]


class Cluster:
    """3 primaries + 3 replicas (tests/topologies/cluster.py), the image through a
    redis+cluster:// REDIS_URL."""

    name = "cluster"

    def __init__(self) -> None:
        self.topo = _harness("cluster").RedisClusterTopology()

    def start(self) -> None:
        try:
            self.topo.start()
        except BaseException:
            self.topo.stop()
            raise

    def stop(self) -> None:
        self.topo.stop()

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.topo.url}

    def _busy_slot(self, rng: random.Random) -> int:
        """The slot of a key the image holds now (a random primary's random key)."""
        primaries = self.topo.primaries()
        for node in rng.sample(primaries, len(primaries)):
            key = node.client.randomkey()
            if key is not None:
                return int(node.client.execute_command("CLUSTER", "KEYSLOT", key))
        return rng.randrange(16384)

    def faults(self) -> list[Fault]:
        topo = self.topo

        def failover_force(target: Target, seconds: float, rng: random.Random) -> str:
            slot = self._busy_slot(rng)
            old = topo.primary_of(slot).address
            new = topo.failover(slot).address
            _pause_rest(seconds)
            return f"CLUSTER FAILOVER FORCE for slot {slot}: {old} -> {new}"

        def primary_killed(target: Target, seconds: float, rng: random.Random) -> str:
            slot = self._busy_slot(rng)
            old = topo.primary_of(slot).address
            new = topo.kill_primary_of(slot).address
            return f"primary {old} of slot {slot} SIGKILLed, {new} promoted, {old} rejoined"

        def slot_migrated(target: Target, seconds: float, rng: random.Random) -> str:
            slot = self._busy_slot(rng)
            source = topo.primary_of(slot)
            others = [p for p in topo.primaries() if p is not source]
            destination = others[rng.randrange(len(others))]
            end = time.monotonic() + seconds
            with topo.migrating(slot, destination) as migration:
                # A few keys at a time, with writes running between the batches.
                while migration.move(2) and time.monotonic() < end:
                    time.sleep(0.05)
            if not migration.moved:
                raise FaultDidNotFire(f"slot {slot} held no key to migrate")
            moved = f"{source.address} -> {destination.address}, {migration.moved} keys"
            return f"slot {slot} migrated {moved}"

        return [
            Fault("cluster_failover_force", failover_force),
            Fault("cluster_primary_killed", primary_killed),
            Fault("slot_migrated", slot_migrated),
        ]


def _pause_rest(seconds: float) -> None:
    """The window's calm after a fault that acts at once (a failover): the load meets the
    new primary for a while before the next fault."""
    time.sleep(max(0.0, min(seconds, 2.0)))


TOPOLOGIES = ("standalone", "sentinel", "cluster")


def topology(name: str) -> Topology:
    if name == "standalone":
        return Standalone()
    if name == "sentinel":
        return Sentinel()
    if name == "cluster":
        return Cluster()
    raise SystemExit(f"unknown topology {name!r}: one of {', '.join(TOPOLOGIES)}")
