"""The chaos run's faults: named, each run for a window then healed, with proof it fired."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from bench.chaos.servers import Database, Gunicorn, RedisServer, process_state, wait_until


class FaultDidNotFire(RuntimeError):
    """The fault's action had no effect that could be seen (so the run proves nothing)."""


class Target(Protocol):
    """What a fault acts on: the servers of the run and its load."""

    database: Database
    gunicorn: Gunicorn

    def writes_in_flight(self) -> int: ...


# A fault: acts on the target for `seconds` (drawing its choices from `rng`), heals, and
# returns what it did (the evidence that it fired), or raises FaultDidNotFire.
Action = Callable[[Target, float, random.Random], str]


@dataclass(frozen=True)
class Fault:
    name: str
    act: Action


def _pause(seconds: float) -> None:
    time.sleep(max(0.0, seconds))


# ---------------------------------------------------------------- faults of any topology


def pg_terminate(target: Target, seconds: float, rng: random.Random) -> str:
    """pg_terminate_backend on the app's sessions, again and again through the window."""
    end, rounds, terminated = time.monotonic() + seconds, 0, 0
    while time.monotonic() < end:
        terminated += target.database.terminate_backends()
        rounds += 1
        _pause(min(end - time.monotonic(), rng.uniform(0.1, 0.4)))
    if not terminated:
        raise FaultDidNotFire("pg_terminate_backend found no session of the app to end")
    return f"{terminated} sessions terminated in {rounds} rounds"


def worker_sigkill(target: Target, seconds: float, rng: random.Random) -> str:
    """SIGKILL gunicorn workers mid-request while writes are in flight, a few times."""
    end, kills = time.monotonic() + seconds, 0
    # At least one kill: past the window, go on looking for a moment (bounded).
    while time.monotonic() < end or (not kills and time.monotonic() < end + 10):
        victim = _busy_worker(target, rng)
        if victim is None:
            time.sleep(0.002)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
            kills += 1
            _pause(min(rng.uniform(0.2, 0.4) * seconds, end - time.monotonic()))
    # The master starts new workers: wait for them so the next fault meets a full server.
    wait_until(
        lambda: len(target.gunicorn.worker_pids()) == target.gunicorn.workers,
        "gunicorn did not replace its killed workers",
    )
    if not kills:
        raise FaultDidNotFire("no worker was seen serving a request while writes were in flight")
    return f"{kills} workers SIGKILLed mid-request with writes in flight"


def _busy_worker(target: Target, rng: random.Random) -> int | None:
    """A worker serving a request while a write is in flight, if there is one now."""
    if not target.writes_in_flight():
        return None
    busy = target.gunicorn.busy_worker_pids()
    return busy[rng.randrange(len(busy))] if busy else None


COMMON_FAULTS = (Fault("pg_terminate", pg_terminate), Fault("worker_sigkill", worker_sigkill))


# ---------------------------------------------------------------- faults of one redis-server


def _admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=5, socket_connect_timeout=5)


def stopped_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_state(pid) != "T":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def redis_sigstop(server: RedisServer) -> Action:
    def act(target: Target, seconds: float, rng: random.Random) -> str:
        server.freeze()
        started = time.monotonic()
        try:
            # The signal is delivered asynchronously: see the process stopped (state T).
            stopped = stopped_within(server.pid, 2.0)
            _pause(seconds - (time.monotonic() - started))
        finally:
            server.thaw()
        if not stopped:
            raise FaultDidNotFire("redis-server was not seen stopped after SIGSTOP")
        return f"redis-server (pid {server.pid}) stopped {seconds:.1f} s"

    return act


def redis_sigkill(server: RedisServer) -> Action:
    def act(target: Target, seconds: float, rng: random.Random) -> str:
        old = server.pid
        down = seconds * rng.uniform(0.3, 0.6)
        server.kill()
        _pause(down)
        server.start()  # the same port, empty (nothing on disk)
        _pause(seconds - down)
        if server.pid == old:
            raise FaultDidNotFire("redis-server was not restarted")
        return f"redis-server killed (pid {old}), down {down:.1f} s, restarted as {server.pid}"

    return act


def flushall(server: RedisServer) -> Action:
    def act(target: Target, seconds: float, rng: random.Random) -> str:
        client, dropped, rounds = _admin(server), 0, 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            dropped += int(client.dbsize())  # type: ignore[arg-type]
            client.flushall()
            rounds += 1
            _pause(min(end - time.monotonic(), rng.uniform(0.3, 0.8) * seconds))
        client.close()
        if not dropped:
            raise FaultDidNotFire("FLUSHALL found no keys to drop")
        return f"FLUSHALL {rounds} times, {dropped} keys dropped"

    return act


def maxmemory_lru(server: RedisServer) -> Action:
    """maxmemory set just under what Redis holds, allkeys-lru: it evicts (parts of) entries."""

    def act(target: Target, seconds: float, rng: random.Random) -> str:
        client = _admin(server)
        before = client.info("stats")["evicted_keys"]
        memory = client.info("memory")
        used, dataset = memory["used_memory"], memory["used_memory_dataset"]
        # A fraction of the dataset must go, the rest may stay (an entry loses some keys).
        limit = max(1, used - int(dataset * rng.uniform(0.3, 0.7)) - 1)
        policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.config_set("maxmemory", str(limit))
        try:
            _pause(seconds)
        finally:
            client.config_set("maxmemory", "0")
            client.config_set("maxmemory-policy", policy)
        evicted = client.info("stats")["evicted_keys"] - before
        client.close()
        if not evicted:
            raise FaultDidNotFire(f"maxmemory {limit} evicted nothing")
        return f"maxmemory {limit} (used {used}), {evicted} keys evicted"

    return act


# ---------------------------------------------------------------- the schedule


@dataclass(frozen=True)
class Slot:
    """One fault's window, in seconds from the start of the load."""

    fault: Fault
    start: float
    length: float

    def __str__(self) -> str:
        end = self.start + self.length
        return f"{self.start:6.1f} s - {end:6.1f} s  {self.fault.name}"


def schedule(faults: list[Fault], seed: int, duration: float) -> list[Slot]:
    """Every fault once, in an order and at times drawn from `seed` (the same seed, the same
    schedule): a calm lead-in, then one window per fault with calm between, a calm tail."""
    rng = random.Random(seed)
    order = rng.sample(faults, len(faults))
    lead = duration * 0.1
    slot = (duration - 2 * lead) / len(order)
    slots = []
    for index, fault in enumerate(order):
        length = slot * rng.uniform(0.45, 0.65)
        start = lead + index * slot + rng.uniform(0.0, slot - length) * 0.5
        slots.append(Slot(fault, round(start, 2), round(length, 2)))
    return slots
