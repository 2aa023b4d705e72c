"""The production image store: Redis (plain, Sentinel or Cluster), one Lua script per operation.

Each operation that changes an entry is one script (one round trip, atomic, safe to repeat),
kept in `lua/<name>.lua` and read once, when the first store is built. Per cart a control hash
`<prefix>:{<bucket>}:c:<id>` (see `base`) and the payload string `...:d:<id>` beside it, so
that the hash stays in Redis's compact encoding; the `{bucket}` hash tag keeps a cart's keys
and the lease covering it in one Cluster slot. Every failure is raised as `CacheUnavailable`.
"""

from __future__ import annotations

import hashlib
import os
import weakref
import zlib
from collections.abc import Callable, Iterable
from functools import cache, partial
from importlib.resources import files
from string import Template
from typing import Any

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # hiredis is optional (the `hiredis` extra); redis-py packs then
    _hiredis_pack = None  # type: ignore[assignment]
from redis import ConnectionPool, Redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    NoScriptError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import Sentinel

from cartsvc.backends.base import (
    ACQUIRED,
    BUSY,
    CLAIMED,
    CONSTANTS,
    HIT,
    Acquired,
    CacheUnavailable,
    Claim,
    FillItem,
    Generation,
    Read,
    Reconcile,
    SettleMode,
)
from cartsvc.conf import conf
from cartsvc.redis_url import DEFAULT_TIMEOUTS, RedisTarget, parse_redis_url

# Each script, after the shared parts it starts with (`_now`: the clock; `_epoch`: the
# primary's replication id, stamped on entries; `_claim`, `_fill`: the functions read/claim_many
# and fill/fill_many share).
SCRIPTS: dict[str, tuple[str, ...]] = {
    "read": ("_now", "_epoch", "_claim"),
    "claim_many": ("_now", "_epoch", "_claim"),
    "fill": ("_now", "_epoch", "_fill"),
    "fill_many": ("_now", "_epoch", "_fill"),
    "acquire": ("_now", "_epoch"),
    "settle": ("_now", "_epoch"),
    "release_claim": (),
    "evict": ("_now",),
    "reconcile_begin": ("_now",),
    "reconcile_end": ("_now",),
}

# Carts are spread over this many hash-tag buckets on a Cluster (each bucket one slot, with its
# own lease, reconcile lock and access index beside its carts' keys, so every script touches
# one slot); one bucket elsewhere. A constant: processes that disagreed on it would publish a
# cart's writes under keys the others do not read.
CLUSTER_BUCKETS = 64


class _Lua(Template):
    # `@NAME`: `$` would clash with Lua's pattern anchor, `@` is no Lua syntax.
    delimiter = "@"


@cache
def script_source(name: str) -> str:
    """The script `name` as sent to Redis: its shared parts and its own file, with the
    statuses of `base` substituted for `@NAME` (an unknown name raises KeyError).

    The `#!lua` line declares the script a writer (Redis 7): a replica refuses it (READONLY)
    and so does a primary short of `min-replicas-to-write` (NOREPLICAS), even when this call
    would only read, so a demoted or cut-off primary never serves an entry."""
    lua = files(__package__).joinpath("lua")
    text = "".join(lua.joinpath(f"{part}.lua").read_text() for part in (*SCRIPTS[name], name))
    return "#!lua\n" + _Lua(text).substitute(CONSTANTS)


class _Script:
    """One script: its source and SHA-1, run by EVALSHA and loaded by EVAL when the server
    does not know it (Redis restarted, flushed its scripts, or a Cluster node is new)."""

    __slots__ = ("sha", "source")

    def __init__(self, name: str) -> None:
        self.source = script_source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


# What redis-py raises when the cache can not answer (a Cluster that can not be reached at all
# raises RedisClusterException, which is not a RedisError).
_ERRORS = (RedisError, RedisClusterException)


class RedisStore:
    """The production store on one redis-py client: a plain primary, Sentinel's current
    primary, or a Cluster. One code path: a cart's keys share a hash tag (its bucket), and
    what spans carts is done per bucket."""

    def __init__(self, client: Any, prefix: str, buckets: int | None = None) -> None:
        # `client`: a redis-py client, or a function making one when first used (a Cluster
        # client connects as it is made: a cache that is down must not fail the app's start).
        self._client = None if callable(client) else client
        self._connect = client if callable(client) else None
        # How the scripts are sent, for the client they were set up for.
        self._scripts_run: Callable[..., Any] | None = None
        self._scripts_client: Any = None
        self.prefix = prefix
        self.buckets = buckets or (CLUSTER_BUCKETS if isinstance(client, RedisCluster) else 1)
        # The one bucket's shared keys on a plain or Sentinel Redis (tests look at them).
        self.lease_key = self.lease_key_of(0)
        self.seen_key = self.seen_key_of(0)
        self.reconcile_key = self._shared(0, "reconcile")
        self._scripts = {name: _Script(name) for name in SCRIPTS}

    @classmethod
    def from_settings(cls) -> RedisStore:
        """On `REDIS_URL` when it is set (see `client_from_url`), else on the django-redis
        connection of `REDIS_ALIAS`; under `KEY_PREFIX`."""
        url = conf.REDIS_URL
        if url:
            buckets = CLUSTER_BUCKETS if url.startswith("redis+cluster:") else 1
            return cls(redis_connector(url), conf.KEY_PREFIX, buckets)
        from django_redis import get_redis_connection

        return cls(get_redis_connection(conf.REDIS_ALIAS), conf.KEY_PREFIX)

    @property
    def client(self) -> Any:
        """The redis-py client (made at first use when the store was given a factory)."""
        client = self._client
        if client is None:
            assert self._connect is not None
            try:
                client = self._client = self._connect()
            except _ERRORS as exc:
                raise CacheUnavailable(str(exc)) from exc
        return client

    # ------------------------------------------------------------ key names

    def scope(self, cart_id: str) -> int:
        """The cart's bucket: its keys, and the lease that covers it, share one hash slot."""
        if self.buckets == 1:
            return 0
        return zlib.crc32(cart_id.encode()) % self.buckets

    def _shared(self, bucket: int, name: str) -> str:
        return f"{self.prefix}:{{{bucket}}}:{name}"

    def _cart_key(self, cart_id: str, kind: str) -> str:
        return f"{self.prefix}:{{{self.scope(cart_id)}}}:{kind}:{cart_id}"

    def key(self, cart_id: str) -> str:
        """The entry's control hash."""
        return self._cart_key(cart_id, "c")

    def data_key(self, cart_id: str) -> str:
        """The entry's payload (the state as JSON)."""
        return self._cart_key(cart_id, "d")

    def wake_key(self, cart_id: str) -> str:
        """Where a releasing writer drops a token for the next waiter."""
        return self._cart_key(cart_id, "q")

    def lease_key_of(self, bucket: int) -> str:
        """The lease under which the bucket's entries are trusted."""
        return self._shared(bucket, "lease")

    def seen_key_of(self, bucket: int) -> str:
        """The bucket's carts in memory by last access."""
        return self._shared(bucket, "seen")

    # ------------------------------------------------------------ calls

    def _call(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        meanwhile: Callable[[], None] | None = None,
    ) -> Any:
        script = self._scripts[name]
        client = self.client
        run = self._scripts_run
        if run is None or self._scripts_client is not client:
            # A Cluster client routes each command itself; on a plain or Sentinel client
            # the scripts take the short way (see `_Connections`).
            run = self._scripts_run = (
                client.execute_command
                if isinstance(client, RedisCluster)
                else _Connections(client.connection_pool)
            )
            self._scripts_client = client
        try:
            try:
                if isinstance(run, _Connections):
                    return run("EVALSHA", script.sha, len(keys), *keys, *args, meanwhile=meanwhile)
                if meanwhile is not None:
                    meanwhile()  # a Cluster client's call can not be split
                return run("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # Redis restarted or flushed its script cache: load it again, once.
                return run("EVAL", script.source, len(keys), *keys, *args)
        except _ERRORS as exc:
            raise CacheUnavailable(str(exc)) from exc

    def _pipelined(self, commands: Iterable[tuple[Any, ...]]) -> list[Any]:
        """Run (method name, *args) commands (no scripts: a Cluster pipeline runs none) in
        one pipeline, one round trip per node on a Cluster."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for method, *args in commands:
                getattr(pipe, method)(*args)
            return pipe.execute()
        except _ERRORS as exc:
            raise CacheUnavailable(str(exc)) from exc

    def _by_bucket(self, cart_ids: Iterable[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for cart_id in cart_ids:
            groups.setdefault(self.scope(cart_id), []).append(cart_id)
        return groups

    # ------------------------------------------------------------ ImageStore

    def read(self, cart_id: str, token: str, claim_ms: int, keep_ms: int, known: str) -> Read:
        bucket = self.scope(cart_id)
        keys = [
            self.key(cart_id),
            self.data_key(cart_id),
            self.lease_key_of(bucket),
            self.seen_key_of(bucket),
        ]
        found = self._call("read", keys, [cart_id, token, claim_ms, keep_ms, known])
        status = found[0]
        if status == HIT:
            return Read(HIT, payload=found[1])
        if status == CLAIMED:
            return Read(CLAIMED, gen=found[1])
        return Read(status)

    def fill(
        self, cart_id: str, gen: Generation, token: str, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        keys = [self.key(cart_id), self.data_key(cart_id), self.seen_key_of(self.scope(cart_id))]
        args = [cart_id, gen, token, version, payload, keep_ms]
        return bool(self._call("fill", keys, args))

    def acquire(
        self,
        cart_id: str,
        token: str,
        lock_ms: int,
        keep_ms: int,
        known: str,
        viewer: str = "",
        meanwhile: Callable[[], None] | None = None,
    ) -> Acquired:
        keys = [self.key(cart_id), self.data_key(cart_id), self.lease_key_of(self.scope(cart_id))]
        found = self._call("acquire", keys, [token, lock_ms, keep_ms, known, viewer], meanwhile)
        status = found[0]
        if status == ACQUIRED:
            return Acquired(ACQUIRED, version=int(found[1]), payload=found[2])
        if status == BUSY:
            return Acquired(BUSY, wait_ms=int(found[1]))
        return Acquired(status)

    def settle(
        self, cart_id: str, token: str, mode: SettleMode, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        keys = [
            self.key(cart_id),
            self.data_key(cart_id),
            self.seen_key_of(self.scope(cart_id)),
            self.wake_key(cart_id),
        ]
        args = [cart_id, token, mode, version, payload, keep_ms]
        return bool(self._call("settle", keys, args))

    def wait_release(self, cart_id: str, timeout_ms: int) -> None:
        # Blocks at most timeout_ms (kept well under the socket timeout by the caller).
        try:
            self.client.blpop([self.wake_key(cart_id)], timeout=timeout_ms / 1000)
        except _ERRORS as exc:
            raise CacheUnavailable(str(exc)) from exc

    def claim_many(self, cart_ids: list[str], token: str, claim_ms: int) -> list[Claim] | None:
        buckets = self._by_bucket(cart_ids)
        if len(buckets) > 1:
            raise ValueError("claim_many takes carts of one scope (see ImageStore.scope)")
        keys = [self.lease_key_of(self.scope(cart_ids[0]))] if cart_ids else [self.lease_key]
        for cart_id in cart_ids:
            keys += [self.key(cart_id), self.data_key(cart_id)]
        result = self._call("claim_many", keys, [token, claim_ms])
        if result and not isinstance(result[0], list):
            return None  # no lease
        claims = []
        for item in result:
            if item[0] == HIT:
                claims.append(Claim(HIT, version=int(item[1])))
            elif item[0] == CLAIMED:
                claims.append(Claim(CLAIMED, gen=item[1]))
            else:
                claims.append(Claim(item[0]))
        return claims

    def fill_many(self, items: list[FillItem], keep_ms: int) -> list[bool]:
        flags: dict[int, bool] = {}
        groups: dict[int, list[int]] = {}
        for position, item in enumerate(items):
            groups.setdefault(self.scope(item[0]), []).append(position)
        for bucket, positions in groups.items():
            keys = [self.seen_key_of(bucket)]
            args: list[Any] = [keep_ms]
            for position in positions:
                cart_id, gen, token, version, payload = items[position]
                keys += [self.key(cart_id), self.data_key(cart_id)]
                args += [cart_id, gen, token, version, payload]
            _stored, stored_flags = self._call("fill_many", keys, args)
            flags.update(zip(positions, (bool(f) for f in stored_flags), strict=True))
        return [flags[position] for position in range(len(items))]

    def release_claim(self, cart_id: str, token: str) -> None:
        self._call("release_claim", [self.key(cart_id)], [token])

    def evict(self, cart_id: str, idle_before_ms: int | None) -> bool:
        keys = [self.key(cart_id), self.data_key(cart_id), self.seen_key_of(self.scope(cart_id))]
        cutoff = "" if idle_before_ms is None else idle_before_ms
        return bool(self._call("evict", keys, [cart_id, cutoff]))

    def reconcile_begin(self, scope: int, token: str, ttl_ms: int) -> Reconcile:
        keys = [self._shared(scope, "reconcile"), self.lease_key_of(scope)]
        status, now = self._call("reconcile_begin", keys, [token, ttl_ms])
        return Reconcile(int(status), int(now))

    def reconcile_end(
        self, scope: int, token: str, lease_until_ms: int, drop_ids: list[str]
    ) -> None:
        keys = [self._shared(scope, "reconcile"), self.lease_key_of(scope), self.seen_key_of(scope)]
        for cart_id in drop_ids:
            keys += [self.key(cart_id), self.data_key(cart_id)]
        self._call("reconcile_end", keys, [token, lease_until_ms, *drop_ids])

    def _epochs(self, keys: list[str], info: dict[str, Any] | None) -> list[str]:
        """The epoch each key's entry must carry to be served: its primary's replication id
        (`info`: the one server's INFO replication, when there is one server)."""
        if info is not None:
            return [_primary_epoch(info)] * len(keys)
        try:
            nodes = [self.client.get_node_from_key(key) for key in keys]
            # Asked of one node at a time: redis-py answers a single node's INFO as is, and
            # only the nodes holding these carts are asked.
            epochs = {
                node.name: _primary_epoch(self.client.info("replication", target_nodes=node))
                for node in {node.name: node for node in nodes}.values()
            }
        except _ERRORS as exc:
            raise CacheUnavailable(str(exc)) from exc
        return [epochs[node.name] for node in nodes]

    def _entries(self, cart_ids: list[str], payload: bool) -> list[tuple[int, bytes] | None]:
        """Per cart, the (version, payload) a read would serve now, or None; in one round
        trip per node (no script: a Cluster pipeline runs none), touching nothing."""
        commands: list[tuple[Any, ...]] = []
        for cart_id in cart_ids:
            # m: a writer's lock. A read serves no entry under one (held: it reads the
            # database; expired: the writer died, the entry is dropped), so neither does this.
            commands.append(("hmget", self.key(cart_id), "v", "e", "m"))
            if payload:
                commands.append(("get", self.data_key(cart_id)))
        one_server = self.buckets == 1
        if one_server:
            commands.append(("info", "replication"))
        rows = self._pipelined(commands)
        info = rows.pop() if one_server else None
        epochs = self._epochs([self.key(cart_id) for cart_id in cart_ids], info)
        step = 2 if payload else 1
        found: list[tuple[int, bytes] | None] = []
        for position, epoch in enumerate(epochs):
            version, stamp, lock = rows[position * step]
            data = rows[position * step + 1] if payload else b""
            usable = version is not None and stamp is not None and stamp.decode() == epoch
            usable = usable and lock is None
            found.append((int(version), data) if usable and data is not None else None)
        return found

    def peek(self, cart_ids: Iterable[str]) -> dict[str, tuple[int, bytes]]:
        ids = list(cart_ids)
        rows = self._entries(ids, payload=True)
        return {cart_id: row for cart_id, row in zip(ids, rows, strict=True) if row}

    def locked(self, cart_id: str) -> bool:
        try:
            client = self.client
            key = self.key(cart_id)
            token, expires = client.hmget(key, "m", "mx")
            # The clock of the node that holds the lock, which set its expiry.
            near = {"target_nodes": client.get_node_from_key(key)} if self.buckets > 1 else {}
            now = client.time(**near)
        except _ERRORS as exc:
            raise CacheUnavailable(str(exc)) from exc
        return token is not None and int(expires) > now[0] * 1000 + now[1] // 1000

    def present(self, cart_ids: list[str]) -> list[str]:
        rows = self._entries(cart_ids, payload=False)
        return [cart_id for cart_id, row in zip(cart_ids, rows, strict=True) if row]

    def idle(self, before_ms: int, limit: int) -> list[str]:
        # The oldest `limit` of each bucket, merged: the oldest `limit` of all.
        rows = self._pipelined(
            ("zrangebyscore", self.seen_key_of(b), "-inf", before_ms, 0, limit, True)
            for b in range(self.buckets)
        )
        found = sorted((score, member) for row in rows for member, score in row)
        return [member.decode() for _score, member in found[:limit]]

    def last_seen(self, cart_ids: Iterable[str]) -> dict[str, int]:
        groups = self._by_bucket(cart_ids)
        if not groups:
            return {}
        rows = self._pipelined(("zmscore", self.seen_key_of(b), ids) for b, ids in groups.items())
        return {
            cart_id: int(score)
            for ids, scores in zip(groups.values(), rows, strict=True)
            for cart_id, score in zip(ids, scores, strict=True)
            if score is not None
        }

    def count(self) -> int:
        rows = self._pipelined(("zcard", self.seen_key_of(b)) for b in range(self.buckets))
        return sum(int(n) for n in rows)

    def clear(self) -> None:
        try:
            keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
            for start in range(0, len(keys), 500):
                self.client.delete(*keys[start : start + 500])
        except _ERRORS as exc:
            raise CacheUnavailable(str(exc)) from exc


class _Connections:
    """The scripts' own connections: checked out of the client's pool once and kept, in a
    free list of their own. Calling one runs a command the way redis-py's `execute_command`
    does for a command with no reply callback (EVALSHA, EVAL), with the connection's retry
    policy and reconnect-on-failure, its health checks, and Sentinel's refusal of a demoted
    primary, but without the client's and the pool's per-call observability hooks, which
    cost a cart read more CPU than its own work (bench/profile.md).

    The pool counts them as in use (its max_connections holds, its disconnect() reaches
    them, and a forked child's pool starts afresh); at most KEEP idle ones are kept, the
    rest go back to the pool, and all of them when this object is dropped (a store that is
    rebuilt, or whose client is replaced). Taking and giving back are a list's pop and
    append (atomic under the GIL, so threads share it safely); a forked child empties the
    list (its parent's connections are not its own)."""

    KEEP = 16

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.idle: list[Any] = []
        self.pid = os.getpid()
        weakref.finalize(self, _give_back, pool, self.idle)

    def __call__(self, *args: Any, meanwhile: Callable[[], None] | None = None) -> Any:
        """The command's reply; `meanwhile()` runs after it is sent, before the reply is read."""
        if self.pid != os.getpid():
            self.idle.clear()
            self.pid = os.getpid()
        try:
            conn = self.idle.pop()
        except IndexError:
            conn = self.pool.get_connection()
        answered = False
        try:
            self._ready(conn)
            found = conn.retry.call_with_retry(
                lambda: _send_and_read(conn, args, meanwhile), lambda _error: conn.disconnect()
            )
            answered = True
            return found
        except RedisError:
            answered = True  # the reply was read, or the connection dropped
            raise
        finally:
            # Interrupted between the request and its reply (a signal, a time limit), the
            # connection may hold an unread reply: it must not serve the next command.
            if not answered or conn.should_reconnect():
                conn.disconnect()
            if len(self.idle) < self.KEEP:
                self.idle.append(conn)
            else:
                self.pool.release(conn)

    def _ready(self, conn: Any) -> None:
        """What the pool's own checkout does: connected (Sentinel's connection class asks
        for the current primary), and not holding data nobody asked for (a server that
        closed the connection, after a restart or a failover, is reconnected before the
        command rather than failing it). Stricter than redis-py 8's checkout, which skips
        the second check when maintenance notifications may come (their default): these
        connections subscribe to nothing, so unread data is a dead connection or a stale
        reply; a push notification, if a server sent one, costs a reconnect."""
        primary = getattr(self.pool, "master_address", None)  # Sentinel's latest answer
        if primary is not None and conn.is_connected and (conn.host, conn.port) != primary:
            conn.disconnect()  # the pool moved to a new primary: so do its other connections
        conn.connect()
        try:
            if conn.can_read():
                raise RedisConnectionError("the connection holds an unread reply")
        except (RedisConnectionError, RedisTimeoutError, OSError):
            conn.disconnect()
            conn.connect()


def _give_back(pool: ConnectionPool, idle: list[Any]) -> None:
    """The connections of a dropped free list, back to their pool (which ignores those of
    another process)."""
    while idle:
        pool.release(idle.pop())


def _send_and_read(
    conn: Any, args: tuple[Any, ...], meanwhile: Callable[[], None] | None = None
) -> Any:
    if _hiredis_pack is not None:
        # What redis-py's hiredis packer sends for a script call (str, bytes and int
        # arguments), without its pass over every argument to convert memoryviews.
        conn.send_packed_command([_hiredis_pack(args)])
    else:
        conn.send_command(*args)
    if meanwhile is not None:
        # Redis answers while the caller waits on something else: the reply is then read
        # without a second sleep and wake-up of the process.
        meanwhile()
    return conn.read_response()


def _primary_epoch(info: dict[str, Any]) -> str:
    """A primary's replication id from its INFO replication; a replica serves nothing."""
    if info.get("role") != "master":
        raise CacheUnavailable("the server is a replica, not the primary")
    return str(info["master_replid"])


def redis_connector(url: str) -> Callable[[], Any]:
    """A function making redis-py's own client for `REDIS_URL` (see
    `cartsvc.redis_url.parse_redis_url`): the URL is checked now (a bad one raises
    ImproperlyConfigured), the connection is made when the function is called."""
    target = parse_redis_url(url)
    if target.kind == "cluster":
        startup = [ClusterNode(host, port) for host, port in target.nodes]
        return partial(RedisCluster, startup_nodes=startup, **target.options)
    if target.kind == "sentinel":
        return partial(_sentinel_primary, target)
    return partial(Redis.from_url, url, **target.options)


def client_from_url(url: str) -> Any:
    """redis-py's own client for `REDIS_URL` (see `redis_connector`)."""
    return redis_connector(url)()


def _sentinel_primary(target: RedisTarget) -> Redis:
    # The sentinels are asked with the same timeouts, but not with the primary's password.
    timeouts = {name: target.options[name] for name in DEFAULT_TIMEOUTS}
    sentinel = Sentinel(target.nodes, sentinel_kwargs=timeouts, **timeouts)
    return sentinel.master_for(target.service, db=target.db, **target.options)


# The class `open_store` builds (see cartsvc.backends).
Store = RedisStore
