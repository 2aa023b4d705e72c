"""The production image store: django-redis's connection, one Lua script per operation.

Each operation that changes an entry is one script (one round trip, atomic, safe to repeat),
kept in `lua/<name>.lua` and read once, when the first store is built. Per cart a control hash
`<prefix>:c:<id>` (see `base`) and the payload string `<prefix>:d:<id>` beside it, so that the
hash stays in Redis's compact encoding. Every failure is raised as `CacheUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from string import Template
from typing import Any

from redis.exceptions import NoScriptError, RedisError

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

# Each script, after the shared parts it starts with (`_now`: the clock; `_claim`, `_fill`:
# the functions read/claim_many and fill/fill_many share).
SCRIPTS: dict[str, tuple[str, ...]] = {
    "read": ("_now", "_claim"),
    "claim_many": ("_now", "_claim"),
    "fill": ("_now", "_fill"),
    "fill_many": ("_now", "_fill"),
    "acquire": ("_now",),
    "settle": ("_now",),
    "release_claim": (),
    "evict": ("_now",),
    "reconcile_begin": ("_now",),
    "reconcile_end": ("_now",),
}


class _Lua(Template):
    # `@NAME`: `$` would clash with Lua's pattern anchor, `@` is no Lua syntax.
    delimiter = "@"


@cache
def script_source(name: str) -> str:
    """The script `name` as sent to Redis: its shared parts and its own file, with the
    statuses of `base` substituted for `@NAME` (an unknown name raises KeyError)."""
    lua = files(__package__).joinpath("lua")
    text = "".join(lua.joinpath(f"{part}.lua").read_text() for part in (*SCRIPTS[name], name))
    return _Lua(text).substitute(CONSTANTS)


class RedisStore:
    """The production store: django-redis's connection, one Lua script per operation."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_key = f"{prefix}:lease"
        self.seen_key = f"{prefix}:seen"
        self.reconcile_key = f"{prefix}:reconcile"
        # register_script only hashes the source: no round trip here.
        scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS}
        self._read = scripts["read"]
        self._fill = scripts["fill"]
        self._acquire = scripts["acquire"]
        self._settle = scripts["settle"]
        self._evict = scripts["evict"]
        self._release_claim = scripts["release_claim"]
        self._reconcile_begin = scripts["reconcile_begin"]
        self._reconcile_end = scripts["reconcile_end"]
        self._claim_many = scripts["claim_many"]
        self._fill_many = scripts["fill_many"]

    @classmethod
    def from_settings(cls) -> RedisStore:
        """On the django-redis connection of `REDIS_ALIAS`, under `KEY_PREFIX`."""
        from django_redis import get_redis_connection

        return cls(get_redis_connection(conf.REDIS_ALIAS), conf.KEY_PREFIX)

    def key(self, cart_id: str) -> str:
        """The entry's control hash."""
        return f"{self.prefix}:c:{cart_id}"

    def data_key(self, cart_id: str) -> str:
        """The entry's payload (the state as JSON)."""
        return f"{self.prefix}:d:{cart_id}"

    def wake_key(self, cart_id: str) -> str:
        """Where a releasing writer drops a token for the next waiter."""
        return f"{self.prefix}:q:{cart_id}"

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            try:
                return self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # Redis restarted or flushed its script cache: load it again, once.
                return script(keys=keys, args=args)
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    def read(self, cart_id: str, token: str, claim_ms: int, keep_ms: int, known: str) -> Read:
        keys = [self.key(cart_id), self.data_key(cart_id), self.lease_key, self.seen_key]
        found = self._call(self._read, keys, [cart_id, token, claim_ms, keep_ms, known])
        status = found[0]
        if status == HIT:
            return Read(HIT, payload=found[1])
        if status == CLAIMED:
            return Read(CLAIMED, gen=found[1])
        return Read(status)

    def fill(
        self, cart_id: str, gen: Generation, token: str, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        keys = [self.key(cart_id), self.data_key(cart_id), self.seen_key]
        args = [cart_id, gen, token, version, payload, keep_ms]
        return bool(self._call(self._fill, keys, args))

    def acquire(self, cart_id: str, token: str, lock_ms: int, keep_ms: int, known: str) -> Acquired:
        keys = [self.key(cart_id), self.data_key(cart_id), self.lease_key]
        found = self._call(self._acquire, keys, [token, lock_ms, keep_ms, known])
        status = found[0]
        if status == ACQUIRED:
            return Acquired(ACQUIRED, version=int(found[1]), payload=found[2])
        if status == BUSY:
            return Acquired(BUSY, wait_ms=int(found[1]))
        return Acquired(status)

    def settle(
        self, cart_id: str, token: str, mode: SettleMode, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        keys = [self.key(cart_id), self.data_key(cart_id), self.seen_key, self.wake_key(cart_id)]
        args = [cart_id, token, mode, version, payload, keep_ms]
        return bool(self._call(self._settle, keys, args))

    def wait_release(self, cart_id: str, timeout_ms: int) -> None:
        # Blocks at most timeout_ms (kept well under the socket timeout by the caller).
        try:
            self.client.blpop([self.wake_key(cart_id)], timeout=timeout_ms / 1000)
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    def claim_many(self, cart_ids: list[str], token: str, claim_ms: int) -> list[Claim] | None:
        keys = [self.lease_key, *(self.key(cart_id) for cart_id in cart_ids)]
        result = self._call(self._claim_many, keys, [token, claim_ms])
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
        keys = [self.seen_key]
        args: list[Any] = [keep_ms]
        for cart_id, gen, token, version, payload in items:
            keys += [self.key(cart_id), self.data_key(cart_id)]
            args += [cart_id, gen, token, version, payload]
        _stored, flags = self._call(self._fill_many, keys, args)
        return [bool(flag) for flag in flags]

    def release_claim(self, cart_id: str, token: str) -> None:
        self._call(self._release_claim, [self.key(cart_id)], [token])

    def evict(self, cart_id: str, idle_before_ms: int | None) -> bool:
        keys = [self.key(cart_id), self.data_key(cart_id), self.seen_key]
        cutoff = "" if idle_before_ms is None else idle_before_ms
        return bool(self._call(self._evict, keys, [cart_id, cutoff]))

    def reconcile_begin(self, token: str, ttl_ms: int) -> Reconcile:
        keys = [self.reconcile_key, self.lease_key]
        status, now = self._call(self._reconcile_begin, keys, [token, ttl_ms])
        return Reconcile(int(status), int(now))

    def reconcile_end(self, token: str, lease_until_ms: int, drop_ids: list[str]) -> None:
        keys = [self.reconcile_key, self.lease_key, self.seen_key]
        for cart_id in drop_ids:
            keys += [self.key(cart_id), self.data_key(cart_id)]
        self._call(self._reconcile_end, keys, [token, lease_until_ms, *drop_ids])

    def peek(self, cart_ids: Iterable[str]) -> dict[str, tuple[int, bytes]]:
        ids = list(cart_ids)
        try:
            pipe = self.client.pipeline(transaction=False)
            for cart_id in ids:
                pipe.hget(self.key(cart_id), "v")
                pipe.get(self.data_key(cart_id))
            rows = pipe.execute()
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return {
            cart_id: (int(v), d)
            for cart_id, v, d in zip(ids, rows[::2], rows[1::2], strict=True)
            if v is not None and d is not None
        }

    def locked(self, cart_id: str) -> bool:
        try:
            token, expires = self.client.hmget(self.key(cart_id), "m", "mx")
            now = self.client.time()
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return token is not None and int(expires) > now[0] * 1000 + now[1] // 1000

    def present(self, cart_ids: list[str]) -> list[str]:
        try:
            pipe = self.client.pipeline(transaction=False)
            for cart_id in cart_ids:
                pipe.hexists(self.key(cart_id), "v")
            flags = pipe.execute()
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return [cart_id for cart_id, flag in zip(cart_ids, flags, strict=True) if flag]

    def idle(self, before_ms: int, limit: int) -> list[str]:
        try:
            ids = self.client.zrangebyscore(self.seen_key, "-inf", before_ms, start=0, num=limit)
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return [i.decode() for i in ids]

    def last_seen(self, cart_ids: Iterable[str]) -> dict[str, int]:
        ids = list(cart_ids)
        if not ids:
            return {}
        try:
            scores = self.client.zmscore(self.seen_key, ids)
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return {i: int(s) for i, s in zip(ids, scores, strict=True) if s is not None}

    def count(self) -> int:
        try:
            return int(self.client.zcard(self.seen_key))
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    def clear(self) -> None:
        try:
            keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
            for start in range(0, len(keys), 500):
                self.client.delete(*keys[start : start + 500])
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc


# The class `open_store` builds (see cartsvc.backends).
Store = RedisStore
