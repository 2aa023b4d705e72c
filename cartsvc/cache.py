"""The cache boundary: per-cart entries with a version, a writer lock and a generation.

One small interface, two stores. `RedisStore` runs each operation as one Lua script (one
round trip, atomic, safe to repeat). `EmbeddedStore` runs the same operations as SQLite
transactions on a file that every process on the machine shares (the default without
`REDIS_URL`). Every failure below is raised as `CacheUnavailable`, which callers treat as a
miss; this module is the only place allowed to catch broadly.

An entry is a small control hash per cart, plus the state's JSON payload in a string key
beside it (`<prefix>:d:<id>`) so that the hash stays in Redis's compact encoding:
  v       version of the cached state (absent: nothing cached)
  s       last access (ms), refreshed at most once a second
  g       generation: changes whenever a writer takes the lock or a dead writer is cleaned
          up, so a reader that loaded the database before that can not fill the entry
  m, mx   writer lock token and its expiry (ms): the "write in flight" marker
  r, rx   single-flight claim of the reader rehydrating a cold cart, and its expiry
Plus a lease key (entries are trusted only while it exists, see image.reconcile) and a
sorted set of carts by last access (read activity and passivation candidates).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger("cartsvc.cache")

# read() statuses; HIT_SAME: the entry is at the version the caller already holds
HIT, CLAIMED, BUSY, NO_LEASE, FILLING, HIT_SAME = 0, 1, 2, 3, 4, 5
# acquire() statuses
ACQUIRED, ACQUIRED_EMPTY, ACQUIRED_SAME = 0, 1, 6
# Read activity is written (hash field s, the seen set, the key's expiry) at most this often.
SEEN_EVERY_MS = 1000
# reconcile_begin() statuses
WAIT, RECONCILING, LEASED = 0, 1, 2


class CacheUnavailable(Exception):
    """The cache could not answer; the caller falls back to the database."""


class ImageStore(Protocol):
    def read(self, cart_id: str, token: str, claim_ms: int, keep_ms: int, known: str) -> tuple:
        """(HIT, payload) | (HIT_SAME,) when the entry is at version `known` | (CLAIMED, gen) |
        (BUSY,) | (NO_LEASE,) | (FILLING,); logs access."""

    def fill(
        self, cart_id: str, gen: str, token: str, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        """Store a rehydrated state if the generation is unchanged, no writer holds the lock
        and nothing newer is cached."""

    def acquire(self, cart_id: str, token: str, lock_ms: int, keep_ms: int, known: str) -> tuple:
        """Take the writer lock: (ACQUIRED, version, payload) | (ACQUIRED_SAME,) when the entry
        is at version `known` | (ACQUIRED_EMPTY,) | (BUSY, ms_left) | (NO_LEASE,)."""

    def settle(
        self, cart_id: str, token: str, mode: str, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        """Release the lock: mode "set" publishes the new state, "keep" leaves the entry,
        "drop" removes it. Without the lock, "set"/"drop" invalidate instead."""

    def wait_release(self, cart_id: str, timeout_ms: int) -> None:
        """Wait until the cart's writer lock is released (or timeout_ms), then return."""

    def claim_many(self, cart_ids: list[str], token: str, claim_ms: int) -> list[tuple] | None:
        """For bulk warming: per cart (HIT, version) | (CLAIMED, gen) | (BUSY,) | (FILLING,);
        None when there is no lease. Claim tokens are f"{token}:{position + 2}"."""

    def fill_many(self, items: list[tuple[str, str, str, int, bytes]], keep_ms: int) -> list[bool]:
        """`fill` for many (cart_id, gen, token, version, payload) at once."""

    def release_claim(self, cart_id: str, token: str) -> None:
        """Give up this reader's single-flight claim (the cart was not found, or its load
        failed), so the next reader claims at once instead of waiting out the claim."""

    def evict(self, cart_id: str, idle_before_ms: int | None) -> bool:
        """Remove an entry unless a writer holds it or it was used after idle_before_ms."""

    def reconcile_begin(self, token: str, ttl_ms: int) -> tuple[int, int]:
        """Try to become the one reconciler: (RECONCILING | WAIT | LEASED, cache clock ms)."""

    def reconcile_end(self, token: str, lease_until_ms: int, drop_ids: list[str]) -> None:
        """Drop the dirty carts' entries, grant the lease until lease_until_ms."""

    def peek(self, cart_ids: Iterable[str]) -> dict[str, tuple[int, bytes]]:
        """Cached (version, payload) per cart, without side effects."""

    def locked(self, cart_id: str) -> bool:
        """Whether a live writer lock is on the cart."""

    def present(self, cart_ids: list[str]) -> list[str]:
        """The carts among these that have a cached state."""

    def idle(self, before_ms: int, limit: int) -> list[str]:
        """Cart ids in memory not accessed since before_ms, oldest first."""

    def last_seen(self, cart_ids: Iterable[str]) -> dict[str, int]:
        """Last access (ms) per cart, for folding read activity into the database."""

    def count(self) -> int:
        """How many carts are in memory."""

    def clear(self) -> None:
        """Forget everything (tests, and `flush` after a restore)."""


# ---------------------------------------------------------------- Redis

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Every script that changes an entry gets the control hash as KEYS[1] and the payload string
# as KEYS[2]. The hash holds only short fields, so Redis keeps it in its compact encoding.

# The miss path, shared by READ and CLAIM_MANY: a live claim by another reader means wait;
# otherwise claim the rehydration and return the generation the fill must still find.
_CLAIM_FN = """
local function claim(ctl, token, claim_ms)
  local c = redis.call('HMGET', ctl, 'r', 'rx', 'g')
  if c[1] and tonumber(c[2]) > now then return {4} end
  local g = c[3] or token
  redis.call('HSET', ctl, 'g', g, 'r', token, 'rx', now + claim_ms)
  -- an empty claim lives briefly: unknown ids must not pile up in memory
  if redis.call('HEXISTS', ctl, 'v') == 0 then redis.call('PEXPIRE', ctl, claim_ms * 5) end
  return {1, g}
end
"""

# KEYS: ctl, data, lease, seen   ARGV: id, token, claim_ms, keep_ms, known version
_READ = (
    _NOW
    + _CLAIM_FN
    + """
if redis.call('EXISTS', KEYS[3]) == 0 then return {3} end
local h = redis.call('HMGET', KEYS[1], 'v', 'm', 'mx', 's')
if h[2] then
  if tonumber(h[3]) > now then return {2} end
  redis.call('HDEL', KEYS[1], 'v', 'm', 'mx')
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'g', ARGV[2])
  h[1] = false
end
if h[1] then
  local d = false
  if h[1] ~= ARGV[5] then d = redis.call('GET', KEYS[2]) end
  if h[1] == ARGV[5] or d then
    if not h[4] or tonumber(h[4]) + SEEN_EVERY_MS <= now then
      redis.call('HSET', KEYS[1], 's', now)
      redis.call('ZADD', KEYS[4], now, ARGV[1])
      redis.call('PEXPIRE', KEYS[1], ARGV[4])
      redis.call('PEXPIRE', KEYS[2], ARGV[4])
    end
    if d then return {0, d} end
    return {5}
  end
  redis.call('HDEL', KEYS[1], 'v')  -- the payload was evicted on its own: a miss
end
return claim(KEYS[1], ARGV[2], tonumber(ARGV[3]))
""".replace("SEEN_EVERY_MS", str(SEEN_EVERY_MS))
)

# KEYS: lease, then ctl of each cart   ARGV: token, claim_ms
# Per cart: {0, version} already cached | {1, gen} claimed | {2} write in flight | {4} filling
_CLAIM_MANY = (
    _NOW
    + _CLAIM_FN
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {3} end
local out = {}
for i = 2, #KEYS do
  local ctl = KEYS[i]
  local h = redis.call('HMGET', ctl, 'v', 'm', 'mx')
  if h[2] and tonumber(h[3]) > now then
    out[#out + 1] = {2}
  else
    if h[2] then
      -- a dead writer's lock: its entry can not be trusted (the payload key goes too, by
      -- name: the control key with ':c:' replaced by ':d:')
      redis.call('HDEL', ctl, 'v', 'm', 'mx')
      redis.call('DEL', (string.gsub(ctl, ':c:([^:]*)$', ':d:%1')))
      redis.call('HSET', ctl, 'g', ARGV[1] .. ':' .. i)
      h[1] = false
    end
    if h[1] then
      out[#out + 1] = {0, h[1]}
    else
      out[#out + 1] = claim(ctl, ARGV[1] .. ':' .. i, tonumber(ARGV[2]))
    end
  end
end
return out
"""
)

# Store a rehydrated state only if the generation is the one claimed, no writer holds the
# lock and nothing as new is cached. Shared by FILL and FILL_MANY. No lease check: a reconcile
# that must drop this cart deletes its control hash, and with it the generation.
_FILL_FN = """
local function fill(ctl, data, seen, id, gen, token, version, payload, keep)
  local h = redis.call('HMGET', ctl, 'v', 'g', 'm', 'mx', 'r')
  local mine = h[5] == token
  if h[3] then
    if tonumber(h[4]) <= now then
      redis.call('HDEL', ctl, 'v', 'm', 'mx', 'r', 'rx')
      redis.call('DEL', data)
      redis.call('HSET', ctl, 'g', token)
    elseif mine then
      redis.call('HDEL', ctl, 'r', 'rx')
    end
    return 0
  end
  if h[2] ~= gen or (h[1] and tonumber(h[1]) >= tonumber(version)) then
    if mine then redis.call('HDEL', ctl, 'r', 'rx') end
    return 0
  end
  redis.call('HSET', ctl, 'v', version, 's', now)
  redis.call('SET', data, payload, 'PX', keep)
  if mine then redis.call('HDEL', ctl, 'r', 'rx') end
  redis.call('PEXPIRE', ctl, keep)
  redis.call('ZADD', seen, now, id)
  return 1
end
"""

# KEYS: ctl, data, seen   ARGV: id, gen, token, version, payload, keep_ms
_FILL = (
    _NOW
    + _FILL_FN
    + """
return fill(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
"""
)

# KEYS: seen, then (ctl, data) per cart   ARGV: keep_ms, then (id, gen, token, version,
# payload) per cart. Returns how many were stored, then 1/0 per cart.
_FILL_MANY = (
    _NOW
    + _FILL_FN
    + """
local out, stored = {}, 0
for i = 0, (#KEYS - 1) / 2 - 1 do
  local a = 2 + i * 5
  local ok = fill(KEYS[2 + i * 2], KEYS[3 + i * 2], KEYS[1], ARGV[a], ARGV[a + 1],
                  ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[1])
  stored = stored + ok
  out[#out + 1] = ok
end
return {stored, out}
"""
)

# KEYS: ctl, data, lease   ARGV: token, lock_ms, keep_ms, known version
_ACQUIRE = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[3]) == 0 then return {3} end
local h = redis.call('HMGET', KEYS[1], 'v', 'm', 'mx')
if h[2] and h[2] ~= ARGV[1] then
  local left = tonumber(h[3]) - now
  if left > 0 then
    redis.call('HINCRBY', KEYS[1], 'w', 1)  -- one more waiter to wake on release
    return {2, left}
  end
  redis.call('HDEL', KEYS[1], 'v')
  redis.call('DEL', KEYS[2])
  h[1] = false
end
redis.call('HSET', KEYS[1], 'm', ARGV[1], 'mx', now + tonumber(ARGV[2]), 'g', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if h[1] and h[1] == ARGV[4] then return {6} end
if h[1] then
  local d = redis.call('GET', KEYS[2])
  if d then return {0, h[1], d} end
end
return {1}
"""
)

# KEYS: ctl, data, seen, wake   ARGV: id, token, mode, version, payload, keep_ms
_SETTLE = (
    _NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'm', 'mx')
if h[1] ~= ARGV[2] then
  if ARGV[3] ~= 'keep' and not (h[1] and tonumber(h[2]) > now) then
    redis.call('HDEL', KEYS[1], 'v', 'm', 'mx')
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'g', ARGV[2])
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
  end
  return 0
end
if ARGV[3] == 'set' then
  redis.call('HSET', KEYS[1], 'v', ARGV[4], 's', now)
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
  redis.call('ZADD', KEYS[3], now, ARGV[1])
elseif ARGV[3] == 'drop' then
  redis.call('HDEL', KEYS[1], 'v')
  redis.call('DEL', KEYS[2])
end
redis.call('HDEL', KEYS[1], 'm', 'mx')
-- hand the lock over: wake one waiter now instead of letting it sleep out its backoff
local waiting = tonumber(redis.call('HGET', KEYS[1], 'w') or '0')
if waiting > 0 then
  redis.call('HINCRBY', KEYS[1], 'w', -1)
  redis.call('RPUSH', KEYS[4], '1')
  redis.call('PEXPIRE', KEYS[4], 1000)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
"""
)

# KEYS: ctl, data, seen   ARGV: id, idle_before_ms or ''
# KEYS: ctl   ARGV: token. Safe to repeat: only this reader's own claim is released.
_RELEASE_CLAIM = """
if redis.call('HGET', KEYS[1], 'r') == ARGV[1] then redis.call('HDEL', KEYS[1], 'r', 'rx') end
return 0
"""

_EVICT = (
    _NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'm', 'mx')
if h[1] and tonumber(h[2]) > now then return 0 end
if ARGV[2] ~= '' then
  local seen = redis.call('ZSCORE', KEYS[3], ARGV[1])
  if seen and tonumber(seen) > tonumber(ARGV[2]) then return 0 end
end
local had = redis.call('HEXISTS', KEYS[1], 'v')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2])
return had
"""
)

# KEYS: reconcile lock, lease   ARGV: token, ttl_ms
_RECONCILE_BEGIN = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return {2, now} end
local won = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if won then return {1, now} end
return {0, now}
"""
)

# KEYS: reconcile lock, lease, seen, (ctl, data)...   ARGV: token, lease_until_ms, id...
_RECONCILE_END = (
    _NOW
    + """
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 3, #ARGV do redis.call('ZREM', KEYS[3], ARGV[i]) end
if tonumber(ARGV[2]) > now then redis.call('SET', KEYS[2], '1', 'PXAT', ARGV[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
)


class RedisStore:
    """The production store: django-redis's connection, one Lua script per operation."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_key = f"{prefix}:lease"
        self.seen_key = f"{prefix}:seen"
        self.reconcile_key = f"{prefix}:reconcile"
        self._read = client.register_script(_READ)
        self._fill = client.register_script(_FILL)
        self._acquire = client.register_script(_ACQUIRE)
        self._settle = client.register_script(_SETTLE)
        self._evict = client.register_script(_EVICT)
        self._release_claim = client.register_script(_RELEASE_CLAIM)
        self._reconcile_begin = client.register_script(_RECONCILE_BEGIN)
        self._reconcile_end = client.register_script(_RECONCILE_END)
        self._claim_many = client.register_script(_CLAIM_MANY)
        self._fill_many = client.register_script(_FILL_MANY)

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

    def read(self, cart_id: str, token: str, claim_ms: int, keep_ms: int, known: str) -> tuple:
        keys = [self.key(cart_id), self.data_key(cart_id), self.lease_key, self.seen_key]
        return tuple(self._call(self._read, keys, [cart_id, token, claim_ms, keep_ms, known]))

    def fill(
        self, cart_id: str, gen: str, token: str, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        keys = [self.key(cart_id), self.data_key(cart_id), self.seen_key]
        args = [cart_id, gen, token, version, payload, keep_ms]
        return bool(self._call(self._fill, keys, args))

    def acquire(self, cart_id: str, token: str, lock_ms: int, keep_ms: int, known: str) -> tuple:
        keys = [self.key(cart_id), self.data_key(cart_id), self.lease_key]
        return tuple(self._call(self._acquire, keys, [token, lock_ms, keep_ms, known]))

    def settle(
        self, cart_id: str, token: str, mode: str, version: int, payload: bytes, keep_ms: int
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

    def claim_many(self, cart_ids: list[str], token: str, claim_ms: int) -> list[tuple] | None:
        keys = [self.lease_key, *(self.key(cart_id) for cart_id in cart_ids)]
        result = self._call(self._claim_many, keys, [token, claim_ms])
        if result and not isinstance(result[0], list):
            return None  # no lease
        return [tuple(item) for item in result]

    def fill_many(self, items: list[tuple[str, str, str, int, bytes]], keep_ms: int) -> list[bool]:
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

    def reconcile_begin(self, token: str, ttl_ms: int) -> tuple[bool, int]:
        keys = [self.reconcile_key, self.lease_key]
        won, now = self._call(self._reconcile_begin, keys, [token, ttl_ms])
        return int(won), int(now)

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


# ---------------------------------------------------------------- embedded


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entry (
  id TEXT PRIMARY KEY, v INTEGER, d BLOB, g TEXT, m TEXT, mx INTEGER, r TEXT, rx INTEGER,
  seen INTEGER, keep_until INTEGER
);
CREATE INDEX IF NOT EXISTS entry_seen ON entry(seen);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, val TEXT, until INTEGER);
"""

_FIELDS = ("v", "d", "g", "m", "mx", "r", "rx", "seen", "keep_until")


def _now_ms() -> int:
    return int(time.time() * 1000)


class EmbeddedStore:
    """The same operations on a SQLite file: no server, shared by every local process.

    Each operation is one `BEGIN IMMEDIATE` transaction, so it is atomic across processes
    exactly like a Lua script is on Redis. Slower than Redis, but the default must be correct
    across the processes `make run` starts, which a per-process memory cache would not be.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # a cache: losing it only costs latency
            conn.executescript(_SCHEMA)
            self._local.conn = conn
        return conn

    def _tx(self, fn: Any) -> Any:
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, _now_ms())
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise CacheUnavailable(str(exc)) from exc

    @staticmethod
    def _get(conn: sqlite3.Connection, cart_id: str, now: int) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT v, d, g, m, mx, r, rx, seen, keep_until FROM entry WHERE id = ?", (cart_id,)
        ).fetchone()
        if row is None or (row[8] is not None and row[8] <= now):
            return None
        return dict(zip(_FIELDS, row, strict=True))

    @staticmethod
    def _put(conn: sqlite3.Connection, cart_id: str, h: dict[str, Any]) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO entry (id, v, d, g, m, mx, r, rx, seen, keep_until)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cart_id, *(h.get(f) for f in _FIELDS)),
        )

    @staticmethod
    def _lease(conn: sqlite3.Connection, now: int) -> bool:
        row = conn.execute("SELECT until FROM meta WHERE k = 'lease'").fetchone()
        return row is not None and row[0] > now

    def read(self, cart_id: str, token: str, claim_ms: int, keep_ms: int, known: str) -> tuple:
        def op(conn: sqlite3.Connection, now: int) -> tuple:
            if not self._lease(conn, now):
                return (NO_LEASE,)
            h = self._get(conn, cart_id, now) or {}
            if h.get("m"):
                if h["mx"] > now:
                    return (BUSY,)
                h.update(v=None, d=None, m=None, mx=None, g=token)
            if h.get("v") is not None:
                if (h["seen"] or 0) + SEEN_EVERY_MS <= now:
                    conn.execute(
                        "UPDATE entry SET seen = ?, keep_until = ? WHERE id = ?",
                        (now, now + keep_ms, cart_id),
                    )
                if str(h["v"]) == known:
                    return (HIT_SAME,)
                return (HIT, h["d"])
            if h.get("r") and h["rx"] > now:
                return (FILLING,)
            h.update(
                g=h.get("g") or token, r=token, rx=now + claim_ms, keep_until=now + claim_ms * 5
            )
            self._put(conn, cart_id, h)
            return (CLAIMED, h["g"])

        return self._tx(op)

    def fill(
        self, cart_id: str, gen: str, token: str, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        def op(conn: sqlite3.Connection, now: int) -> bool:
            h = self._get(conn, cart_id, now)
            if h is None:
                return False
            mine = h["r"] == token
            if mine:
                h.update(r=None, rx=None)
            if h["m"]:
                if h["mx"] <= now:
                    h.update(v=None, d=None, m=None, mx=None, g=token)
                self._put(conn, cart_id, h)
                return False
            stale = h["v"] is not None and h["v"] >= version
            if h["g"] != gen or stale:
                self._put(conn, cart_id, h)
                return False
            h.update(v=version, d=payload, seen=now, keep_until=now + keep_ms)
            self._put(conn, cart_id, h)
            return True

        return self._tx(op)

    def acquire(self, cart_id: str, token: str, lock_ms: int, keep_ms: int, known: str) -> tuple:
        def op(conn: sqlite3.Connection, now: int) -> tuple:
            if not self._lease(conn, now):
                return (NO_LEASE,)
            h = self._get(conn, cart_id, now) or {}
            if h.get("m") and h["m"] != token:
                if h["mx"] > now:
                    return (BUSY, h["mx"] - now)
                h.update(v=None, d=None)
            if h.get("v") is None:
                cached: tuple = (ACQUIRED_EMPTY,)
            elif str(h["v"]) == known:
                cached = (ACQUIRED_SAME,)
            else:
                cached = (ACQUIRED, h["v"], h["d"])
            h.update(m=token, mx=now + lock_ms, g=token, keep_until=now + keep_ms)
            self._put(conn, cart_id, h)
            return cached

        return self._tx(op)

    def settle(
        self, cart_id: str, token: str, mode: str, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        def op(conn: sqlite3.Connection, now: int) -> bool:
            h = self._get(conn, cart_id, now) or {}
            if h.get("m") != token:
                if mode != "keep" and not (h.get("m") and h["mx"] > now):
                    h.update(v=None, d=None, m=None, mx=None, g=token, keep_until=now + keep_ms)
                    self._put(conn, cart_id, h)
                return False
            if mode == "set":
                h.update(v=version, d=payload, seen=now)
            elif mode == "drop":
                h.update(v=None, d=None)
            h.update(m=None, mx=None, keep_until=now + keep_ms)
            self._put(conn, cart_id, h)
            return True

        return self._tx(op)

    def claim_many(self, cart_ids: list[str], token: str, claim_ms: int) -> list[tuple] | None:
        def op(conn: sqlite3.Connection, now: int) -> list[tuple] | None:
            if not self._lease(conn, now):
                return None
            out: list[tuple] = []
            for position, cart_id in enumerate(cart_ids, start=2):
                mine = f"{token}:{position}"
                h = self._get(conn, cart_id, now) or {}
                if h.get("m"):
                    if h["mx"] > now:
                        out.append((BUSY,))
                        continue
                    h.update(v=None, d=None, m=None, mx=None, g=mine)
                if h.get("v") is not None:
                    out.append((HIT, h["v"]))
                    continue
                if h.get("r") and h["rx"] > now:
                    out.append((FILLING,))
                    continue
                h.update(
                    g=h.get("g") or mine, r=mine, rx=now + claim_ms, keep_until=now + claim_ms * 5
                )
                self._put(conn, cart_id, h)
                out.append((CLAIMED, h["g"]))
            return out

        return self._tx(op)

    def wait_release(self, cart_id: str, timeout_ms: int) -> None:
        # No blocking primitive in SQLite: a short sleep, then the caller asks again.
        time.sleep(min(timeout_ms, 2) / 1000)

    def fill_many(self, items: list[tuple[str, str, str, int, bytes]], keep_ms: int) -> list[bool]:
        return [
            self.fill(cart_id, gen, token, version, payload, keep_ms)
            for cart_id, gen, token, version, payload in items
        ]

    def release_claim(self, cart_id: str, token: str) -> None:
        def op(conn: sqlite3.Connection, now: int) -> None:
            conn.execute(
                "UPDATE entry SET r = NULL, rx = NULL WHERE id = ? AND r = ?", (cart_id, token)
            )

        self._tx(op)

    def evict(self, cart_id: str, idle_before_ms: int | None) -> bool:
        def op(conn: sqlite3.Connection, now: int) -> bool:
            h = self._get(conn, cart_id, now)
            if h is None:
                conn.execute("DELETE FROM entry WHERE id = ?", (cart_id,))
                return False
            if h["m"] and h["mx"] > now:
                return False
            if idle_before_ms is not None and (h["seen"] or 0) > idle_before_ms:
                return False
            conn.execute("DELETE FROM entry WHERE id = ?", (cart_id,))
            return h["v"] is not None

        return self._tx(op)

    def reconcile_begin(self, token: str, ttl_ms: int) -> tuple[int, int]:
        def op(conn: sqlite3.Connection, now: int) -> tuple[int, int]:
            if self._lease(conn, now):
                return LEASED, now
            row = conn.execute("SELECT until FROM meta WHERE k = 'reconcile'").fetchone()
            if row is not None and row[0] > now:
                return WAIT, now
            conn.execute(
                "INSERT OR REPLACE INTO meta (k, val, until) VALUES ('reconcile', ?, ?)",
                (token, now + ttl_ms),
            )
            return RECONCILING, now

        return self._tx(op)

    def reconcile_end(self, token: str, lease_until_ms: int, drop_ids: list[str]) -> None:
        def op(conn: sqlite3.Connection, now: int) -> None:
            conn.executemany("DELETE FROM entry WHERE id = ?", [(i,) for i in drop_ids])
            if lease_until_ms > now:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (k, val, until) VALUES ('lease', '1', ?)",
                    (lease_until_ms,),
                )
            conn.execute("DELETE FROM meta WHERE k = 'reconcile' AND val = ?", (token,))

        self._tx(op)

    def peek(self, cart_ids: Iterable[str]) -> dict[str, tuple[int, bytes]]:
        def op(conn: sqlite3.Connection, now: int) -> dict[str, tuple[int, bytes]]:
            found = {}
            for cart_id in cart_ids:
                h = self._get(conn, cart_id, now)
                if h and h["v"] is not None:
                    found[cart_id] = (h["v"], h["d"])
            return found

        return self._tx(op)

    def locked(self, cart_id: str) -> bool:
        def op(conn: sqlite3.Connection, now: int) -> bool:
            h = self._get(conn, cart_id, now)
            return bool(h and h["m"] and h["mx"] > now)

        return self._tx(op)

    def present(self, cart_ids: list[str]) -> list[str]:
        def op(conn: sqlite3.Connection, now: int) -> list[str]:
            found = []
            for cart_id in cart_ids:
                h = self._get(conn, cart_id, now)
                if h and h["v"] is not None:
                    found.append(cart_id)
            return found

        return self._tx(op)

    def idle(self, before_ms: int, limit: int) -> list[str]:
        def op(conn: sqlite3.Connection, now: int) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM entry WHERE v IS NOT NULL AND seen <= ? ORDER BY seen LIMIT ?",
                (before_ms, limit),
            )
            return [r[0] for r in rows]

        return self._tx(op)

    def last_seen(self, cart_ids: Iterable[str]) -> dict[str, int]:
        def op(conn: sqlite3.Connection, now: int) -> dict[str, int]:
            found = {}
            for cart_id in cart_ids:
                row = conn.execute("SELECT seen FROM entry WHERE id = ?", (cart_id,)).fetchone()
                if row and row[0] is not None:
                    found[cart_id] = row[0]
            return found

        return self._tx(op)

    def count(self) -> int:
        def op(conn: sqlite3.Connection, now: int) -> int:
            return conn.execute("SELECT count(*) FROM entry WHERE v IS NOT NULL").fetchone()[0]

        return self._tx(op)

    def clear(self) -> None:
        self._tx(lambda conn, now: conn.execute("DELETE FROM entry").close())
        self._tx(lambda conn, now: conn.execute("DELETE FROM meta").close())
