"""The embedded image store: the same operations as SQLite transactions on a shared file.

The default without Redis: every process on the machine (the runserver reloader's child, the
Celery worker, a command run by hand) shares the file, so none serves a cart another has
changed. Every failure is raised as `CacheUnavailable`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cartsvc.backends.base import (
    ACQUIRED,
    ACQUIRED_EMPTY,
    ACQUIRED_SAME,
    BUSY,
    CLAIMED,
    FILLING,
    HIDDEN,
    HIT,
    HIT_SAME,
    LEASED,
    NO_LEASE,
    RECONCILING,
    SEEN_EVERY_MS,
    UNSEEN,
    WAIT,
    Acquired,
    CacheUnavailable,
    Claim,
    FillItem,
    Generation,
    Read,
    Reconcile,
    SettleMode,
    visible_in_payload,
)
from cartsvc.conf import conf

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

    @classmethod
    def from_settings(cls) -> EmbeddedStore:
        """On the file at `EMBEDDED_PATH`."""
        return cls(conf.EMBEDDED_PATH)

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

    def scope(self, cart_id: str) -> int:
        return 0  # one lease covers every cart

    def read(self, cart_id: str, token: str, claim_ms: int, keep_ms: int, known: str) -> Read:
        def op(conn: sqlite3.Connection, now: int) -> Read:
            if not self._lease(conn, now):
                return Read(NO_LEASE)
            h = self._get(conn, cart_id, now) or {}
            if h.get("m"):
                if h["mx"] > now:
                    return Read(BUSY)
                h.update(v=None, d=None, m=None, mx=None, g=token)
            if h.get("v") is not None:
                if (h["seen"] or 0) + SEEN_EVERY_MS <= now:
                    conn.execute(
                        "UPDATE entry SET seen = ?, keep_until = ? WHERE id = ?",
                        (now, now + keep_ms, cart_id),
                    )
                if str(h["v"]) == known:
                    return Read(HIT_SAME)
                return Read(HIT, payload=h["d"])
            if h.get("r") and h["rx"] > now:
                return Read(FILLING)
            h.update(
                g=h.get("g") or token, r=token, rx=now + claim_ms, keep_until=now + claim_ms * 5
            )
            self._put(conn, cart_id, h)
            return Read(CLAIMED, gen=h["g"])

        return self._tx(op)

    def fill(
        self, cart_id: str, gen: Generation, token: str, version: int, payload: bytes, keep_ms: int
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
        if meanwhile is not None:
            # No round trip to overlap: first, outside the store's transaction.
            meanwhile()

        def op(conn: sqlite3.Connection, now: int) -> Acquired:
            if not self._lease(conn, now):
                return Acquired(NO_LEASE)
            h = self._get(conn, cart_id, now) or {}
            held = bool(h.get("m")) and h["m"] != token
            if held and h["mx"] <= now:
                h.update(v=None, d=None)  # a dead writer's lock: its entry is not trusted
            refused = _refused(h, viewer) if viewer else None
            if refused is not None:
                return Acquired(refused)
            if held and h["mx"] > now:
                return Acquired(BUSY, wait_ms=h["mx"] - now)
            if h.get("v") is None:
                cached = Acquired(ACQUIRED_EMPTY)
            elif str(h["v"]) == known:
                cached = Acquired(ACQUIRED_SAME)
            else:
                cached = Acquired(ACQUIRED, version=h["v"], payload=h["d"])
            h.update(m=token, mx=now + lock_ms, g=token, keep_until=now + keep_ms)
            self._put(conn, cart_id, h)
            return cached

        return self._tx(op)

    def settle(
        self, cart_id: str, token: str, mode: SettleMode, version: int, payload: bytes, keep_ms: int
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

    def claim_many(self, cart_ids: list[str], token: str, claim_ms: int) -> list[Claim] | None:
        def op(conn: sqlite3.Connection, now: int) -> list[Claim] | None:
            if not self._lease(conn, now):
                return None
            out: list[Claim] = []
            for position, cart_id in enumerate(cart_ids, start=2):
                mine = f"{token}:{position}"
                h = self._get(conn, cart_id, now) or {}
                if h.get("m"):
                    if h["mx"] > now:
                        out.append(Claim(BUSY))
                        continue
                    h.update(v=None, d=None, m=None, mx=None, g=mine)
                if h.get("v") is not None:
                    out.append(Claim(HIT, version=h["v"]))
                    continue
                if h.get("r") and h["rx"] > now:
                    out.append(Claim(FILLING))
                    continue
                h.update(
                    g=h.get("g") or mine, r=mine, rx=now + claim_ms, keep_until=now + claim_ms * 5
                )
                self._put(conn, cart_id, h)
                out.append(Claim(CLAIMED, gen=h["g"]))
            return out

        return self._tx(op)

    def wait_release(self, cart_id: str, timeout_ms: int) -> None:
        # No blocking primitive in SQLite: a short sleep, then the caller asks again.
        time.sleep(min(timeout_ms, 2) / 1000)

    def fill_many(self, items: list[FillItem], keep_ms: int) -> list[bool]:
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

    def reconcile_begin(self, scope: int, token: str, ttl_ms: int) -> Reconcile:
        def op(conn: sqlite3.Connection, now: int) -> Reconcile:
            if self._lease(conn, now):
                return Reconcile(LEASED, now)
            row = conn.execute("SELECT until FROM meta WHERE k = 'reconcile'").fetchone()
            if row is not None and row[0] > now:
                return Reconcile(WAIT, now)
            conn.execute(
                "INSERT OR REPLACE INTO meta (k, val, until) VALUES ('reconcile', ?, ?)",
                (token, now + ttl_ms),
            )
            return Reconcile(RECONCILING, now)

        return self._tx(op)

    def reconcile_end(
        self, scope: int, token: str, lease_until_ms: int, drop_ids: list[str]
    ) -> None:
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
                # No entry under a writer's lock: a read would not serve it either.
                if h and h["v"] is not None and not h["m"]:
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
                if h and h["v"] is not None and not h["m"]:
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


def _refused(h: dict[str, Any], viewer: str) -> int | None:
    """Before anything is touched (as acquire.lua does): UNSEEN with no trusted state to
    check the viewer against, HIDDEN for a viewer who may not see the cart, else None."""
    if h.get("v") is None:
        return UNSEEN
    seen = visible_in_payload(h["d"], viewer)
    if seen is None:
        return UNSEEN
    return None if seen else HIDDEN


# The class `open_store` builds (see cartsvc.backends).
Store = EmbeddedStore
