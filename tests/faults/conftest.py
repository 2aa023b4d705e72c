"""A Redis server of the test's own, on a free port, that a test may kill or freeze."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from redis import Redis

from cartsvc import image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    def __init__(self, *extra: str) -> None:
        self.extra = extra  # more redis-server options (e.g. a maxmemory policy)
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cartimage-redis-")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.1),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError("own redis-server did not start")

    def kill(self) -> None:
        assert self.process
        self.process.kill()
        self.process.wait()

    def freeze(self) -> None:
        assert self.process
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.thaw()
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def serve_image_from(settings, server: OwnRedis) -> None:
    """Point the image at `server` (with the production timeouts)."""
    settings.CACHES = {
        **settings.CACHES,
        "own": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{server.port}/0",
            "OPTIONS": {
                "SERIALIZER": "cartsvc.serializers.OrjsonSerializer",
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
            },
        },
    }
    settings.CARTIMAGE = {**settings.CARTIMAGE, "BACKEND": "redis", "REDIS_ALIAS": "own"}


@contextlib.contextmanager
def image_on_own_redis(settings, *extra: str) -> Iterator[OwnRedis]:
    """The image on a redis-server of the test's own (`extra`: its options), stopped after."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    server = OwnRedis(*extra)
    server.start()
    serve_image_from(settings, server)
    try:
        yield server
    finally:
        server.stop()
        image._stores.clear()
        image.breaker.reset()


@pytest.fixture
def own_redis(settings):
    """Point the image at a redis-server of this test's own (with the production timeouts)."""
    with image_on_own_redis(settings) as server:
        yield server


@dataclass
class Pair:
    """A primary and its replica of the test's own, the image on the primary."""

    store: object
    primary: Redis
    replica: Redis

    def in_sync(self) -> None:
        deadline = time.monotonic() + 10
        while self.primary.wait(1, 100) != 1:
            assert time.monotonic() < deadline, "the replica did not catch up"

    def cut(self) -> None:
        """Replication stops: what the primary takes from now on is lost in a failover."""
        self.replica.replicaof("127.0.0.1", free_port())

    def promote(self) -> None:
        """The replica becomes the primary, and the app talks to it."""
        self.replica.replicaof("NO", "ONE")
        self.store._client = self.replica  # as Sentinel's client would, after the failover
        image.breaker.reset()


@pytest.fixture
def pair(settings) -> Iterator[Pair]:
    primary = OwnRedis("--repl-diskless-sync-delay", "0")
    primary.start()
    replica = OwnRedis("--replicaof", "127.0.0.1", str(primary.port))
    replica.start()
    try:
        serve_image_from(settings, primary)
        image._stores.clear()
        store = image.image_store()
        yield Pair(store, store.client, Redis(port=replica.port))
    finally:
        replica.stop()
        primary.stop()
        image._stores.clear()
        image.breaker.reset()
