"""A Redis Cluster of 3 primaries + 3 replicas on loopback, that a test may reshard or break."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis

from tests.faults.conftest import OwnRedis, free_port

PRIMARIES = 3
SLOTS = 16384
# Failure detection takes node-timeout, then the replica's election waits 0.5-1 s: a small
# timeout keeps a failover within a few seconds.
NODE_TIMEOUT_MS = 1000
# Redis 7.0 keeps a replica's last election (its votes and epoch) for twice the auth timeout
# (max(2 * node timeout, 2 s)): a node that won an election, was demoted, and sees its
# primary fail within that time "wins" again with its old, lower epoch, and the other nodes
# never accept it (the slot stays unserved). Faults leave a node that much time between
# elections; nothing observable says when the old election is forgotten.
ELECTION_MEMORY_S = 2 * max(2 * NODE_TIMEOUT_MS, 2000) / 1000 + 0.5


class ClusterNode(OwnRedis):
    """One redis-server of the cluster (its nodes.conf in its own temp dir)."""

    def __init__(self) -> None:
        super().__init__(
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            # The bus port defaults to port + 10000, which a free port may not have.
            "--cluster-port",
            str(free_port()),
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            # A replica may always take over, however long it was cut off from its primary.
            "--cluster-replica-validity-factor",
            "0",
            # In the node's dir (gone with it): read it while debugging a failing test.
            "--logfile",
            "redis.log",
            # A primary would wait 5 s for more replicas before it syncs one.
            "--repl-diskless-sync-delay",
            "0",
        )
        self.client = redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)
        self.frozen = False

    def freeze(self) -> None:
        super().freeze()
        self.frozen = True

    def thaw(self) -> None:
        super().thaw()
        self.frozen = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def node_id(self) -> str:
        return self.client.execute_command("CLUSTER", "MYID")

    def info(self) -> dict[str, str]:
        text = self.client.execute_command("CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def view(self) -> list[dict[str, str | list[str]]]:
        """This node's CLUSTER NODES, a dict per node: id, address (host:port), flags, master,
        slots (the raw ranges)."""
        nodes = []
        for line in self.client.execute_command("CLUSTER", "NODES").splitlines():
            fields = line.split()
            nodes.append(
                {
                    "id": fields[0],
                    "address": fields[1].split("@")[0],
                    "flags": fields[2].split(","),
                    "master": fields[3],
                    "slots": fields[8:],
                }
            )
        return nodes


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll `condition` until it holds; a Redis error (or no node serving a slot yet) while
    polling counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, LookupError):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(f"cluster: {what} within {timeout} s")


@dataclass
class Migration:
    """A slot being moved (see `RedisClusterTopology.migrating`)."""

    slot: int
    source: ClusterNode
    target: ClusterNode
    moved: int = 0

    def move(self, batch: int = 10) -> int:
        """Move up to `batch` of the slot's keys still on the source; returns how many moved."""
        keys = self.source.client.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, batch)
        if keys:
            self.source.client.execute_command(
                "MIGRATE", "127.0.0.1", self.target.port, "", 0, 5000, "KEYS", *keys
            )
        self.moved += len(keys)
        return len(keys)

    def remaining(self) -> int:
        return self.source.client.execute_command("CLUSTER", "COUNTKEYSINSLOT", self.slot)


class RedisClusterTopology:
    """3 primaries + 3 replicas on free loopback ports, created with `redis-cli --cluster
    create`; `url` is the image's REDIS_URL for it. Use as a context manager (every process
    and temp dir is gone after, also when starting failed)."""

    def __init__(self) -> None:
        self.nodes = [ClusterNode() for _ in range(PRIMARIES * 2)]
        self.elected_at: dict[int, float] = {}  # port -> when that node last won an election

    def _promote(self, replica: ClusterNode, fault: Callable[[], None], slot: int) -> None:
        """Run `fault` (which makes `replica` take over `slot`) once `replica` may be
        elected again, and wait until it serves the slot."""
        since = time.monotonic() - self.elected_at.get(replica.port, -ELECTION_MEMORY_S)
        if since < ELECTION_MEMORY_S:
            time.sleep(ELECTION_MEMORY_S - since)
        fault()
        wait_until(
            lambda: (
                replica.client.execute_command("ROLE")[0] == "master"
                and self.primary_of(slot) is replica
            ),
            f"the replica of slot {slot}'s primary promoted",
        )
        self.elected_at[replica.port] = time.monotonic()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def __enter__(self) -> RedisClusterTopology:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server and redis-cli are not installed")
        for node in self.nodes:
            node.start()
        create = ["redis-cli", "--cluster", "create", *(node.address for node in self.nodes)]
        subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_healthy()

    def stop(self) -> None:
        for node in self.nodes:
            node.client.close()
            node.stop()

    # -- what the cluster looks like ------------------------------------------------------

    def living(self) -> list[ClusterNode]:
        """The nodes that run and answer (not killed, not frozen)."""
        return [node for node in self.nodes if node.alive and not node.frozen]

    def by_id(self, node_id: str) -> ClusterNode:
        return next(node for node in self.living() if node.node_id == node_id)

    def primaries(self) -> list[ClusterNode]:
        return [n for n in self.living() if n.client.execute_command("ROLE")[0] == "master"]

    def primary_of(self, slot: int) -> ClusterNode:
        """The primary that serves `slot` (as the living nodes' CLUSTER SLOTS say)."""
        for start, end, primary, *_replicas in self.living()[0].client.execute_command(
            "CLUSTER", "SLOTS"
        ):
            if start <= slot <= end:
                for node in self.living():
                    if node.port == int(primary[1]):
                        return node
        raise LookupError(f"no living node serves slot {slot}")

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        primary_id = primary.node_id
        return next(
            n
            for n in self.living()
            if n is not primary
            and n.client.execute_command("ROLE")[0] == "slave"
            and any(v["id"] == n.node_id and v["master"] == primary_id for v in n.view())
        )

    def healthy(self) -> bool:
        """Every living node says cluster_state:ok, knows every node, and agrees on one
        primary per slot range; every replica's link to its primary is up."""
        living = self.living()
        if not all(
            (info := n.info())["cluster_state"] == "ok" and info["cluster_slots_ok"] == str(SLOTS)
            for n in living
        ):
            return False
        slot_maps = {
            tuple((s, e, p[1]) for s, e, p, *_ in n.client.execute_command("CLUSTER", "SLOTS"))
            for n in living
        }
        if len(slot_maps) != 1:
            return False
        for node in living:
            role = node.client.execute_command("ROLE")
            if role[0] == "slave" and role[3] != "connected":
                return False
        return True

    def wait_healthy(self, timeout: float = 30) -> None:
        wait_until(self.healthy, "cluster_state:ok on every node", timeout)

    # -- breaking it ----------------------------------------------------------------------

    @contextlib.contextmanager
    def migrating(self, slot: int, target: ClusterNode) -> Iterator[Migration]:
        """Open a slot migration (IMPORTING on the target, MIGRATING on the source); the
        caller moves keys with `Migration.move` at its own pace (writes may run between
        batches); on leaving, the rest of the keys are moved and every primary is told the
        slot's new owner (SETSLOT NODE)."""
        source = self.primary_of(slot)
        if source is target:
            raise ValueError(f"slot {slot} is already on {target.address}")
        source_id, target_id = source.node_id, target.node_id
        target.client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        migration = Migration(slot, source, target)
        try:
            yield migration
        finally:
            # Also when the caller failed: a slot left half moved would fail every later test.
            while migration.move(100):
                pass
            # The target first, then the source, then every other primary (as redis-cli does).
            others = [p for p in self.primaries() if p not in (target, source)]
            for node in [target, source, *others]:
                node.client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            wait_until(lambda: self.primary_of(slot) is target, f"slot {slot} on its target")
            self.wait_healthy()

    def migrate_slot(self, slot: int, target: ClusterNode) -> int:
        """Move `slot` and all its keys to the primary `target`; returns how many keys moved."""
        with self.migrating(slot, target) as migration:
            pass
        return migration.moved

    def freeze_behind(self, replica: ClusterNode) -> None:
        """Freeze `replica` (SIGSTOP) and close its link from its primary: writes from now on
        never reach it (what the primary sent before sits in the replica's socket buffer and
        is applied when it is thawed; nothing after). Thaw it with `replica.thaw()`."""
        primary_port = replica.client.execute_command("ROLE")[2]
        primary = next(node for node in self.living() if node.port == primary_port)
        replica.freeze()
        primary.client.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def kill_primary_of(
        self,
        slot: int,
        rejoin: bool = True,
        killed: Callable[[], object] | None = None,
        replica: ClusterNode | None = None,
    ) -> ClusterNode:
        """SIGKILL the primary of `slot` and wait until its replica is promoted and the cluster
        is ok again; returns the new primary. `killed` is called right after the kill (before
        the promotion; e.g. to thaw a replica frozen so that it lags, then given as
        `replica`). `rejoin`: restart the killed node (empty), which then joins as the new
        primary's replica, so the next fault finds a whole cluster."""
        primary = self.primary_of(slot)
        replica = replica or self.replica_of(primary)

        def kill() -> None:
            primary.kill()
            if killed is not None:
                killed()

        self._promote(replica, kill, slot)
        if rejoin:
            primary.start()
            wait_until(
                lambda: (
                    primary.client.execute_command("ROLE")[:2] == ["slave", "127.0.0.1"]
                    and primary.client.execute_command("ROLE")[2] == replica.port
                ),
                "the killed primary back as its successor's replica",
            )
        self.wait_healthy()
        return replica

    def failover(self, slot: int) -> ClusterNode:
        """CLUSTER FAILOVER FORCE on the replica of `slot`'s primary; waits until it serves
        the slot and the cluster is ok again; returns the new primary."""
        replica = self.replica_of(self.primary_of(slot))
        self._promote(
            replica, lambda: replica.client.execute_command("CLUSTER", "FAILOVER", "FORCE"), slot
        )
        self.wait_healthy()
        return replica
