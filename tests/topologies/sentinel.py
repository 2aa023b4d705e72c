"""A Redis Sentinel topology on loopback: a primary, one replica and three sentinels."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.faults.conftest import OwnRedis, free_port

SERVICE = "cartimage"
# Small, so that a test waits seconds, not minutes, for the sentinels to act.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2
# A full sync starts at once (the default waits 5 s for more replicas to share it).
NODE_OPTIONS = ("--repl-diskless-sync-delay", "0")
PERIODS = ("INFO-PERIOD", 200, "PUBLISH-PERIOD", 200, "PING-PERIOD", 200)


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll `condition` until it answers something true (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            found = condition()
        except (redis.RedisError, OSError) as exc:
            last, found = exc, None
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what} (last error: {last!r})")


def client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


class Sentinel:
    """One redis-sentinel process with a writable config file of its own."""

    def __init__(self, monitored_port: int) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cartimage-sentinel-")
        self.config = Path(self.dir, "sentinel.conf")
        # Sentinel rewrites this file as it learns the topology: it must be writable.
        self.config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            f'dir "{self.dir}"\n'
            "sentinel announce-ip 127.0.0.1\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {monitored_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(Path(self.dir, "sentinel.log"), "wb") as log:
            self.process = subprocess.Popen(
                ["redis-sentinel", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        self.client = client(self.port)
        wait_for(f"sentinel on {self.port} answers", self.client.ping, timeout=10)
        # Sentinel's own periods (INFO every 10 s, hellos every 2 s, a replica reporting the
        # wrong role converted after 4 hellos) would make every wait here take ~20 s.
        self.client.execute_command("SENTINEL", "DEBUG", *PERIODS)

    def master_port(self) -> int | None:
        found = self.client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(found[1]) if found else None

    def master(self) -> dict[str, str]:
        return _pairs(self.client.execute_command("SENTINEL", "MASTER", SERVICE))

    def replicas(self) -> list[dict[str, str]]:
        found = self.client.execute_command("SENTINEL", "REPLICAS", SERVICE)
        return [_pairs(r) if isinstance(r, list) else _decode(r) for r in found]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(AttributeError):
            self.client.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _decode(found: dict) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in found.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(found: Any) -> dict[str, str]:
    """SENTINEL MASTER/REPLICAS answer flat name/value lists (or, parsed, a dict)."""
    if isinstance(found, dict):
        return _decode(found)
    items = [_text(x) for x in found]
    return dict(zip(items[::2], items[1::2], strict=True))


def replication(port: int) -> dict[str, Any]:
    with client(port) as conn:
        return conn.info("replication")


class SentinelTopology:
    """Two redis-servers (no persistence) and three sentinels on free loopback ports.

    `primary` and `replica` are the nodes' current roles (they swap on a failover);
    `url` is what CARTIMAGE["REDIS_URL"] takes."""

    def __init__(self) -> None:
        self.nodes = [OwnRedis(*NODE_OPTIONS), OwnRedis(*NODE_OPTIONS)]
        self.primary, self.replica = self.nodes
        self.sentinels: list[Sentinel] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        """Start every process and wait until the topology is whole; stop all on failure."""
        try:
            self.primary.start()
            self.replica.extra = (*NODE_OPTIONS, "--replicaof", "127.0.0.1", str(self.primary.port))
            self.replica.start()
            self.sentinels = [Sentinel(self.primary.port) for _ in range(3)]
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_whole()
        except BaseException:
            self.stop()
            raise

    def wait_whole(self) -> None:
        """Until every sentinel names the primary, knows the other two sentinels and the
        replica (up), and the replica is in sync with the primary."""

        def whole() -> bool:
            if replication(self.primary.port)["role"] != "master":
                return False
            info = replication(self.replica.port)
            if info["role"] != "slave" or info["master_port"] != self.primary.port:
                return False
            if info["master_link_status"] != "up":
                return False
            for sentinel in self.sentinels:
                master = sentinel.master()
                if int(master["port"]) != self.primary.port or "down" in master["flags"]:
                    return False
                if int(master["num-other-sentinels"]) != len(self.sentinels) - 1:
                    return False
                replicas = sentinel.replicas()
                up = [
                    r
                    for r in replicas
                    if int(r["port"]) == self.replica.port
                    and "down" not in r["flags"]
                    and "disconnected" not in r["flags"]
                    and r.get("master-link-status") == "ok"
                ]
                if not up:
                    return False
            return True

        wait_for("the sentinel topology is whole", whole, timeout=30)

    def sentinels_name(self, port: int) -> bool:
        return all(s.master_port() == port for s in self.sentinels)

    def failover(self) -> None:
        """A forced failover (SENTINEL FAILOVER) to the replica, waited out until the
        sentinels name it, it answers role master and the old primary is its replica."""
        old, new = self.primary, self.replica
        self.sentinels[0].client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        self._wait_promoted(new)
        self.primary, self.replica = new, old
        self.wait_whole()

    def fail_over_from_dead_primary(self) -> None:
        """The old primary is gone (killed): force the sentinels to promote the replica now
        (no waiting for them to see it down), then wait until they all name it."""
        new = self.replica

        def forced() -> bool:
            try:
                self.sentinels[0].client.execute_command("SENTINEL", "FAILOVER", SERVICE)
            except redis.ResponseError as exc:
                # The sentinel's view of the replica may be a moment old (it was frozen or
                # lost its primary just now): ask again; any other refusal is an error.
                if "NOGOODSLAVE" not in str(exc):
                    raise AssertionError(f"SENTINEL FAILOVER refused: {exc}") from exc
                return False
            return True

        wait_for("a sentinel accepts the failover", forced, timeout=10)
        self._wait_promoted(new)
        self.primary, self.replica = new, self.primary

    def _wait_promoted(self, node: OwnRedis) -> None:
        wait_for(
            f"the sentinels name {node.port} the primary and it is one",
            lambda: self.sentinels_name(node.port) and replication(node.port)["role"] == "master",
            timeout=30,
        )

    def restart_as_replica(self, node: OwnRedis) -> None:
        """Start a killed node again, as a replica of the current primary (empty: no
        persistence), and wait until the topology is whole again."""
        node.extra = (*NODE_OPTIONS, "--replicaof", "127.0.0.1", str(self.primary.port))
        node.start()
        self.wait_whole()

    def heal(self) -> None:
        """After a test that froze or killed nodes (also one that failed half-way): every
        node running again, the sentinels' primary alive, the topology whole."""
        for node in self.nodes:
            if node.process and node.process.poll() is None:
                node.thaw()
        named = self.sentinels[0].master_port()
        self.primary = next(n for n in self.nodes if n.port == named)
        self.replica = next(n for n in self.nodes if n is not self.primary)
        if self.primary.process is None or self.primary.process.poll() is not None:
            self.fail_over_from_dead_primary()
        if self.replica.process is None or self.replica.process.poll() is not None:
            self.restart_as_replica(self.replica)
        self.wait_whole()

    # SIGSTOP / SIGCONT / SIGKILL of a node (OwnRedis's freeze / thaw / kill).
    def freeze(self, node: OwnRedis) -> None:
        node.freeze()

    def thaw(self, node: OwnRedis) -> None:
        node.thaw()

    def kill(self, node: OwnRedis) -> None:
        node.kill()

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()
