"""The memory image: `safe_process_action`, the one door to cart state.

Reads: one cache round trip on a hit. A miss is claimed by one reader (single flight), who
rehydrates from the database and fills the entry only if no writer intervened; the others
wait briefly for it. Writes: take the per-cart lock (which also returns the cached state and
marks a write in flight), decide, commit one transaction with a version check, then publish
the new state and release the lock in one more round trip.

Faults: any cache failure is a miss. A writer that can not take the lock commits anyway and
records the cart in the database's dirty list in the same transaction; cached entries are
trusted only under a short lease that is granted after the dirty list has been applied
(`reconcile`), and such a writer waits out one lease before answering. So neither a dead
writer, a hung or restarted Redis, nor a slow reader can make a read return an old version.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial, wraps
from typing import Any, ParamSpec, TypeVar

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from cartsvc import domain as d
from cartsvc import metrics, store, subscriptions
from cartsvc.backends import base as c
from cartsvc.backends import open_store
from cartsvc.conf import conf
from cartsvc.events import CodecError, dump_state, load_state

log = logging.getLogger("cartsvc.image")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
P = ParamSpec("P")

# Test hooks: name -> callable, run at named points of the protocol (see tests/faults).
HOOKS: dict[str, Callable[..., None]] = {}


def _hook(name: str, **context: Any) -> None:
    hook = HOOKS.get(name)
    if hook is not None:
        hook(**context)


# ---------------------------------------------------------------- the store and its breaker

_store_lock = threading.Lock()
_stores: dict[tuple, c.ImageStore] = {}


class _Derived:
    """What the hot path needs from the settings, computed once per settings object."""

    __slots__ = ("keep_ms", "local_states", "source", "store")

    def __init__(self, source: object) -> None:
        self.source = source
        key = (conf.BACKEND, conf.REDIS_URL, conf.REDIS_ALIAS, conf.KEY_PREFIX, conf.EMBEDDED_PATH)
        found = _stores.get(key)
        if found is None:
            with _store_lock:
                found = _stores.get(key)
                if found is None:
                    found = _stores[key] = open_store(conf.BACKEND)
        self.store = found
        self.keep_ms = _ms(max(conf.IDLE_TIMEOUT * 2, 60))
        self.local_states = conf.LOCAL_STATES


_derived: _Derived | None = None


def _current() -> _Derived:
    global _derived
    derived = _derived
    if derived is None or derived.source is not conf.source():
        derived = _derived = _Derived(conf.source())
    return derived


def image_store() -> c.ImageStore:
    """The configured cache store (built once per configuration)."""
    return _current().store


# ---------------------------------------------------------------- decoded states
# (cart id, version) names one committed state forever, so a process may keep the decoded
# state and skip both the payload transfer and the decoding when the entry has not moved.

_states: dict[str, d.Cart] = {}


def _remember(cart: d.Cart, limit: int) -> None:
    if len(_states) >= limit:
        # Oldest first (insertion order); cheap and good enough for a bounded cache.
        for stale in list(_states)[: max(limit // 4, 1)]:
            _states.pop(stale, None)
    _states[cart.id] = cart


class _Breaker:
    """After a cache error, go straight to the database for a moment instead of paying a
    timeout on every call."""

    def __init__(self) -> None:
        self.open_until = 0.0

    def check(self) -> None:
        if self.open_until and time.monotonic() < self.open_until:
            raise c.CacheUnavailable("cache skipped after a recent error")

    def trip(self) -> None:
        self.open_until = time.monotonic() + conf.CACHE_RETRY_AFTER

    def reset(self) -> None:
        self.open_until = 0.0


breaker = _Breaker()


def _guarded(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`call(*args)`, a method of the store, behind the breaker: the one place that counts
    cache errors and trips it (`_guarded(_store().read, cart_id, ...)`, typed end to end)."""
    if breaker.open_until:
        breaker.check()
    try:
        return call(*args, **kwargs)
    except c.CacheUnavailable as exc:
        breaker.trip()
        metrics.inc("redis_errors")
        log.warning("cache %s failed, using the database: %s", call.__name__, exc)
        raise


def _store() -> c.ImageStore:
    return _current().store


_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def cart_key(cart_id: Any) -> str:
    """A cart id as its canonical string; anything that is not a UUID is an unknown cart."""
    if type(cart_id) is str and _CANONICAL.fullmatch(cart_id):
        return cart_id
    if isinstance(cart_id, uuid.UUID):
        return str(cart_id)
    try:
        return str(uuid.UUID(str(cart_id)))
    except ValueError:
        raise d.NotFound("cart not found") from None


# Tokens only need to be unique: a random per-process prefix (renewed in forked children)
# and a counter.
_token_prefix = secrets.token_hex(6)
_token_counter = itertools.count()


def _new_prefix() -> None:
    global _token_prefix
    _token_prefix = secrets.token_hex(6)


os.register_at_fork(after_in_child=_new_prefix)


def _token() -> str:
    return f"{_token_prefix}{next(_token_counter):x}"


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _keep_ms() -> int:
    return _current().keep_ms


# ---------------------------------------------------------------- lease


# How long a caller waits for another process's reconcile (normally a millisecond or two: one
# indexed query of an empty table and one script) before it works from the database.
RECONCILE_WAIT = 0.05
# Dirty carts whose entries one reconcile script drops at most.
DROP_SLICE = 1000


def reconcile(scope: int = 0) -> bool:
    """Apply the dirty list to the cache and grant a new lease, for the carts of one lease
    scope (`ImageStore.scope`). Returns True once a lease is in place; False when the cache or
    the database could not be reached, or another process's reconcile did not finish within
    RECONCILE_WAIT (the caller then works from the database). A bounded number of round trips
    either way."""
    token = _token()
    deadline = time.monotonic() + RECONCILE_WAIT
    pause = 0.002
    while True:
        try:
            # The lock lives one lease: a reconciler killed midway costs at most that.
            status, now_ms = _guarded(_store().reconcile_begin, scope, token, _ms(conf.TRUST_LEASE))
        except c.CacheUnavailable:
            return False
        if status == c.LEASED:
            return True
        if status == c.RECONCILING:
            break
        if time.monotonic() + pause > deadline:
            metrics.inc("reconcile_timeouts")
            return False
        time.sleep(pause)  # another process is reconciling
        pause = min(pause * 2, 0.016)
    try:
        marks = _drop_dirty_and_lease(scope, token, now_ms + _ms(conf.TRUST_LEASE))
    except (c.CacheUnavailable, DatabaseError) as exc:
        log.warning("reconcile failed: %s", exc)
        _give_up_reconcile(scope, token)
        return False
    # Inside the caller's transaction the marks may be its own, not committed yet: dropping
    # their entries is right, deleting them is not (a reconcile after the commit must still
    # see them); they go at the next reconcile outside (dropping an entry twice is harmless).
    if marks and not _in_callers_transaction():
        try:
            with _savepoint_if_nested():
                store.clear_dirty(marks)
        except DatabaseError as exc:
            # The lease is granted and the entries dropped; the marks go next time.
            log.warning("clearing %d dirty marks failed: %s", len(marks), exc)
        else:
            log.info("reconciled %d carts written while the cache was unreachable", len(marks))
    metrics.inc("lease_grants")
    return True


def _drop_dirty_and_lease(
    scope: int, token: str, lease_until_ms: int
) -> list[tuple[str, datetime]]:
    """Drop the entries of the scope's dirty carts, then grant its lease; the marks applied."""
    with _savepoint_if_nested():
        # Every mark (normally none), but only this scope's: the other scopes' entries are
        # dropped by their own reconcile.
        marks = [m for m in store.dirty_marks() if _store().scope(m[0]) == scope]
    ids = [m[0] for m in marks]
    # The entries go in slices (a bounded script each); the lease comes with the last.
    slices = [ids[at : at + DROP_SLICE] for at in range(0, len(ids), DROP_SLICE)] or [[]]
    for number, part in enumerate(slices, start=1):
        until = lease_until_ms if number == len(slices) else 0
        _guarded(_store().reconcile_end, scope, token, until, part)
    return marks


def _savepoint_if_nested() -> contextlib.AbstractContextManager[object]:
    """Inside a transaction, a savepoint: a failing query here must not abort the caller's
    transaction behind its back (psycopg would turn its COMMIT into a silent ROLLBACK)."""
    if transaction.get_connection().in_atomic_block:
        return transaction.atomic()
    return contextlib.nullcontext()


def _give_up_reconcile(scope: int, token: str) -> None:
    """Release the reconcile lock without granting a lease (no entry dropped), so that the
    next caller reconciles at once instead of waiting out the lock."""
    try:
        _guarded(_store().reconcile_end, scope, token, 0, [])
    except c.CacheUnavailable:
        pass  # it expires after one lease


# ---------------------------------------------------------------- reads


def _from_db(cart_id: str) -> d.Cart:
    cart = store.load(cart_id)
    if cart is None:
        raise d.NotFound("cart not found")
    return cart


def _release_claim(cart_id: str, token: str) -> None:
    try:
        _guarded(_store().release_claim, cart_id, token)
    except c.CacheUnavailable:
        pass  # the claim expires by itself; readers meanwhile wait briefly, then read SQL


def _rehydrate(cart_id: str, gen: c.Generation, token: str) -> d.Cart:
    source = conf.REHYDRATE_FROM
    started = time.perf_counter()
    try:
        cart = store.load(cart_id, source)
    except BaseException:
        _release_claim(cart_id, token)
        raise
    if cart is None:
        # Release the claim: else every later reader of this unknown id would wait out
        # FILL_WAIT polling the cache (a 404 must cost what a hit costs, not 50 times it).
        _release_claim(cart_id, token)
        raise d.NotFound("cart not found")
    metrics.observe("rehydrate_seconds", time.perf_counter() - started, source=source)
    metrics.inc("rehydrations", source=source)
    _hook("before_fill", cart_id=cart_id, cart=cart)
    try:
        if _guarded(_store().fill, cart_id, gen, token, cart.version, dump_state(cart), _keep_ms()):
            _remember(cart, _current().local_states)
    except c.CacheUnavailable:
        pass
    return cart


def _hit(cart_id: str, payload: bytes, local_states: int) -> d.Cart:
    """The cart a read found in memory; an entry that can not be decoded is dropped and the
    cart read from the database."""
    try:
        cart = load_state(payload, cart_id)
    except CodecError as exc:
        metrics.inc("bad_entries")
        log.error("undecodable cache entry for cart %s dropped: %s", cart_id, exc)
        try:
            _guarded(_store().evict, cart_id, None)
        except c.CacheUnavailable:
            pass
        return _from_db(cart_id)
    metrics.inc("cache_hits")
    _remember(cart, local_states)
    return cart


def read_cart(cart_id: str) -> d.Cart:
    """The current state of a cart: from memory, or rehydrated into it."""
    token = _token()
    deadline = None
    derived = _current()
    reconciles = 0
    for _attempt in range(200):
        known = _states.get(cart_id)
        try:
            result = _guarded(
                derived.store.read,
                cart_id,
                token,
                2000,
                derived.keep_ms,
                str(known.version) if known else "",
            )
        except c.CacheUnavailable:
            return _from_db(cart_id)
        status = result.status
        if status == c.HIT_SAME and known is not None:
            metrics.inc("cache_hits")
            return known
        if status == c.HIT:
            return _hit(cart_id, result.payload, derived.local_states)
        if status == c.CLAIMED:
            metrics.inc("cache_misses")
            return _rehydrate(cart_id, result.gen, token)
        if status == c.BUSY:
            # A write is in flight (or its writer died): the database is the truth.
            return _from_db(cart_id)
        if status == c.NO_LEASE:
            reconciles += 1
            if reconciles > 3 or not reconcile(derived.store.scope(cart_id)):
                return _from_db(cart_id)
            continue
        # FILLING: another reader is rehydrating this cart; wait for it briefly.
        now = time.monotonic()
        deadline = deadline or now + conf.FILL_WAIT
        if now > deadline:
            return _from_db(cart_id)
        time.sleep(0.001)
    return _from_db(cart_id)


# ---------------------------------------------------------------- writes

Decider = Callable[[dict[str, d.Cart | None]], dict[str, list[d.Event]]]


def _wait_release(cart_id: str, deadline: float, wait_ms: int) -> bool:
    """Wait for the holder of a cart's lock to release it; False when the wait is over (the
    deadline passed, or the cache is unreachable): the command then writes unlocked."""
    if time.monotonic() > deadline:
        # The version check still fences us; the dirty mark fences the cache.
        log.warning("lock wait on cart %s timed out; writing unlocked", cart_id)
        return False
    # Woken by the holder's release; the timeout also covers a holder that
    # died (its lock expires) and a wake-up that went to another waiter.
    metrics.inc("lock_waits")
    try:
        _guarded(_store().wait_release, cart_id, max(1, min(wait_ms, 100)))
    except c.CacheUnavailable:
        return False
    return True


def _scriptable(token: str) -> bool:
    """A viewer the lock script compares exactly: a visitor, or an id below 2**53."""
    return token == "-" or (token.isdigit() and 0 < int(token) < c.VIEWER_ID_LIMIT)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whom a one-cart command runs for, checked before its lock is taken: the lock script
    checks `token` ("-" a visitor, else the user's id) against the cached state in the same
    round trip; a cart not in memory, or a token the script can not compare, is read
    (rehydrated) and `check(cart)` (raising NotFound) decides. Either way a caller who may
    not see the cart touches nothing."""

    token: str
    check: Callable[[d.Cart], None]


# acquire() statuses with the lock taken.
_TAKEN = frozenset({c.ACQUIRED, c.ACQUIRED_SAME, c.ACQUIRED_EMPTY})


class _Meanwhile:
    """Work a command needs before it decides and that does not depend on the cart (a
    catalog lookup), run once while the first lock request is in flight, so that its wait
    and the lock's overlap. Its exception is kept and raised by `finish`, after the lock's
    reply was read (the lock is then released, not left to expire)."""

    __slots__ = ("error", "pending", "work")

    def __init__(self, work: Callable[[], None]) -> None:
        self.work = work
        self.pending = True
        self.error: BaseException | None = None

    def __call__(self) -> None:
        if not self.pending:
            return
        self.pending = False
        try:
            self.work()
        except BaseException as exc:  # noqa: BLE001  (raised by finish(): not swallowed)
            self.error = exc

    def finish(self) -> None:
        """Run it now if no lock request ran it; raise what it raised."""
        self()
        error, self.error = self.error, None
        if error is not None:
            raise error


class _Locks:
    """The cache locks one command holds, and what they returned."""

    def __init__(
        self,
        token: str,
        pinned: Iterable[str] = (),
        viewer: Viewer | None = None,
        meanwhile: _Meanwhile | None = None,
    ) -> None:
        self.token = token
        self.viewer = viewer
        self.meanwhile = meanwhile
        self.held: list[str] = []
        self.cached: dict[str, d.Cart] = {}
        self.dirty = False
        # Locks an earlier command of the caller's transaction holds until it commits: not
        # to be released by this one (see _Deferred).
        self.pinned = frozenset(pinned)

    def take(self, cart_ids: Iterable[str]) -> None:
        lock_ms = _ms(conf.LOCK_TTL)
        for cart_id in sorted(cart_ids):
            if not self._take_one(cart_id, lock_ms):
                self.dirty = True
                break
        if self.meanwhile is not None:
            try:
                self.meanwhile.finish()
            except BaseException:
                self.settle("keep")
                raise

    def _take_one(self, cart_id: str, lock_ms: int) -> bool:
        """Lock one cart (keeping its cached state when the entry is usable); False when the
        command is to write without the cache's locks (unreachable, untrusted, timed out).
        NotFound, with nothing touched, for a viewer who may not see the cart."""
        deadline = time.monotonic() + conf.LOCK_WAIT
        reconciles = 0
        viewer = self._script_viewer(cart_id)
        while True:
            known = _states.get(cart_id)
            result = self._acquire(cart_id, lock_ms, known, viewer)
            if result is None:
                return False
            if result.status == c.UNSEEN:
                # Nothing trusted in memory to tell: read the cart (which rehydrates it) and
                # decide here; the lock is then taken without the script's check.
                if viewer is not None:
                    viewer.check(read_cart(cart_id))
                viewer = None
                continue
            if result.status == c.NO_LEASE:
                # A lease just granted normally serves the next acquire; a few rounds at
                # most (a lease that keeps vanishing is a cache that can not be trusted).
                reconciles += 1
                if reconciles <= 3 and reconcile(_store().scope(cart_id)):
                    continue
                return False
            if result.status == c.BUSY:
                if not _wait_release(cart_id, deadline, result.wait_ms):
                    return False
                continue
            self._keep(cart_id, result, known)
            return True

    def _script_viewer(self, cart_id: str) -> Viewer | None:
        """The caller for the lock script to check. One it can not compare is checked here,
        on a read, and the command's lookup runs before it: its error comes first, as when
        the script checks the caller."""
        viewer = self.viewer
        if viewer is None or _scriptable(viewer.token):
            return viewer
        if self.meanwhile is not None:
            self.meanwhile.finish()
        viewer.check(read_cart(cart_id))
        return None

    def _acquire(
        self, cart_id: str, lock_ms: int, known: d.Cart | None, viewer: Viewer | None
    ) -> c.Acquired | None:
        """One acquire; None when the cache can not be asked (the viewer is then checked on
        the database's state). A viewer the script finds may not see the cart: NotFound.
        The command's `meanwhile` runs during the first one (nothing is held yet); if it
        failed, its error is raised here unless the lock was taken (then `take` raises it
        and releases the lock)."""
        meanwhile = self.meanwhile if self.meanwhile and self.meanwhile.pending else None
        try:
            result = _guarded(
                _store().acquire,
                cart_id,
                self.token,
                lock_ms,
                _keep_ms(),
                str(known.version) if known else "",
                viewer.token if viewer else "",
                meanwhile,
            )
        except c.CacheUnavailable:
            result = None
        if meanwhile is not None and (result is None or result.status not in _TAKEN):
            meanwhile.finish()  # nothing held: its error is the answer
        if result is None:
            if viewer is not None:
                viewer.check(_from_db(cart_id))
            return None
        if result.status == c.HIDDEN:
            raise d.NotFound("cart not found")
        return result

    def _keep(self, cart_id: str, result: c.Acquired, known: d.Cart | None) -> None:
        """A lock taken: held, with the cached state it found when that is usable."""
        self.held.append(cart_id)
        if result.status == c.ACQUIRED_SAME and known is not None:
            self.cached[cart_id] = known
        elif result.status == c.ACQUIRED:
            try:
                self.cached[cart_id] = load_state(result.payload, cart_id)
            except CodecError as exc:
                # Not trusted: the command reads the cart from the database instead.
                metrics.inc("bad_entries")
                log.error("undecodable cache entry for cart %s: %s", cart_id, exc)

    def settle(self, mode: c.SettleMode, states: dict[str, d.Cart] | None = None) -> None:
        for cart_id in self.held:
            if mode == "keep" and cart_id in self.pinned:
                continue
            state = (states or {}).get(cart_id)
            version, payload = (state.version, dump_state(state)) if state else (0, b"")
            if mode != "keep":
                _states.pop(cart_id, None)
            try:
                published = _guarded(
                    _store().settle,
                    cart_id,
                    self.token,
                    mode if state or mode != "set" else "drop",
                    version,
                    payload,
                    _keep_ms(),
                )
                if published and mode == "set" and state is not None:
                    _remember(state, _current().local_states)
            except c.CacheUnavailable:
                # The lock expires by itself; its expiry invalidates the entry.
                pass
        self.held = []


def _publish(
    locks: _Locks,
    states: dict[str, d.Cart],
    after_commit: Callable[[dict[str, d.Cart]], None] | None,
) -> None:
    """After the commit: publish the states and release the locks, then answer."""
    subscriptions.nudge_after_commit()
    locks.settle("set", states)
    if locks.dirty:
        # Wait out any lease granted before our dirty mark was visible.
        time.sleep(conf.TRUST_LEASE)
    if after_commit is not None:
        after_commit(states)


class _Deferred:
    """Commands run inside the caller's own transaction (ATOMIC_REQUESTS, a login view's
    `atomic()`, a user's deletion): publishing their states before it commits would put
    the cache ahead of the database, and a rollback would leave it there. So their locks
    stay held (readers go to the database meanwhile, and see what they may) and each command
    settles the cache in its own `on_commit` callback, which Django discards if the command's
    savepoint, or the transaction, rolls back. A later command of the transaction on the same
    cart reads the cart from the database (its own rows: a rolled-back savepoint is not
    there) and, when its callback runs after the first one released the lock, drops the
    entry instead (never a state that might not be the last). The transaction's commands
    share one lock token, so they do not wait for each other. A cart whose only commands
    rolled back keeps its lock until it expires (LOCK_TTL): read from the database meanwhile."""

    def __init__(self) -> None:
        self.token = _token()
        self.held: set[str] = set()

    def publish(
        self,
        states: dict[str, d.Cart],
        dirty: bool,
        after_commit: Callable[[dict[str, d.Cart]], None] | None,
    ) -> None:
        locks = _Locks(self.token)
        locks.held = list(states)
        locks.dirty = dirty
        _publish(locks, states, after_commit)

    def end(self) -> None:
        if _local.deferred is self:
            _local.deferred = None


_local = threading.local()
_local.deferred = None


def _in_callers_transaction() -> bool:
    # Inside a test case's wrapping transaction on_commit callbacks never run, and the
    # blocks within it stand for transactions of their own (Django's durable check treats
    # them so): there, commands publish at once, as in autocommit.
    connection = transaction.get_connection()
    return connection.in_atomic_block and not getattr(
        connection.atomic_blocks[0], "_from_testcase", False
    )


def _deferred() -> _Deferred | None:
    """The current transaction's _Deferred, or None in autocommit."""
    if not _in_callers_transaction():
        return None
    found: _Deferred | None = getattr(_local, "deferred", None)
    # A transaction that rolled back (or a savepoint that took the callback with it) left
    # its _Deferred behind: start anew.
    registered = found is not None and any(
        callback == found.end for _, callback, _ in transaction.get_connection().run_on_commit
    )
    if found is None or not registered:
        found = _local.deferred = _Deferred()
        transaction.on_commit(found.end)
    return found


def _replay(idem: store.Idempotency | None, first: str) -> dict[str, d.Cart] | None:
    """The recorded answer of an Idempotency-Key already used, or None."""
    if idem is None:
        return None
    found = store.find_idempotent(idem)
    if found is None:
        return None
    fingerprint, state = found
    if fingerprint != idem.fingerprint:
        raise d.IdempotencyKeyReused(
            "this Idempotency-Key was used with another request", field="Idempotency-Key"
        )
    metrics.inc("idempotent_replays")
    return {first: state}


def fresh_connection() -> None:
    """Drop the database connection after it was lost (the next query opens a new one);
    inside the caller's transaction it is the caller's to handle."""
    if not transaction.get_connection().in_atomic_block:
        transaction.get_connection().close()


def commits_so_far() -> int:
    """Commands this thread has committed (to tell a retry-safe failure from a late one)."""
    return getattr(_local, "commits", 0)


def _settle_in_doubt(
    exc: store.InDoubt, idem: store.Idempotency | None, first: str, first_time: bool
) -> dict[str, d.Cart] | None:
    """A commit whose outcome the lost connection hid. With an Idempotency-Key, its record
    (written in the same transaction) tells, on a fresh connection: the first answer if it
    was applied, None if it was not (run it again, once). Without one, nobody can tell."""
    fresh_connection()
    try:
        store.end_backend(exc.backend_pid)
    except DatabaseError:
        fresh_connection()  # the lock then expires by itself, and its expiry drops the entry
        metrics.inc("database_errors", outcome="unknown")
        raise outcome_unknown() from exc
    if idem is not None and first_time:
        try:
            replayed = _replay(idem, first)
        except (DatabaseError, store.InDoubt):
            fresh_connection()
        else:
            metrics.inc("database_errors", outcome="settled_by_key")
            return replayed
    metrics.inc("database_errors", outcome="unknown")
    raise outcome_unknown() from exc


def outcome_unknown() -> d.OutcomeUnknown:
    return d.OutcomeUnknown(
        "the database connection was lost while the change was being saved, so it may have"
        " been applied: read the cart to see, or retry with the same Idempotency-Key"
    )


def execute(
    cart_ids: list[str],
    decide: Decider,
    *,
    create: bool = False,
    opens: Collection[str] = (),
    expected_version: int | None = None,
    command_id: str | None = None,
    idempotency: store.Idempotency | None = None,
    within: Callable[[dict[str, d.Cart]], None] | None = None,
    after_commit: Callable[[dict[str, d.Cart]], None] | None = None,
    viewer: Viewer | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> dict[str, d.Cart]:
    """Run one command over one or more carts; returns each cart's state afterwards.

    `after_commit(states)` runs once, in this call, only if this call committed events.
    `opens` are carts this command may open (new ids, decided with no state): one that
    gets no events is not created and has no state in the result.

    `idempotency` makes a retry return the first answer (checked before and again under the
    lock; recorded in the command's transaction). `within(states)` runs inside the commit's
    transaction (a stock reservation) and may raise a DomainError to abort it.
    `viewer` (one-cart commands) is checked before the lock is taken: see Viewer.
    `meanwhile()` is work `decide` needs that does not read the carts (a catalog lookup):
    it runs once, while the first lock is requested, and what it raises is raised with no
    lock left held. It does not run when a recorded answer is replayed.
    """
    replayed = _replay(idempotency, cart_ids[0])
    if replayed is not None:
        return replayed
    deferred = _deferred()
    in_doubt = False
    work = _Meanwhile(meanwhile) if meanwhile is not None else None
    for attempt in range(conf.WRITE_RETRIES):
        locks = _take_locks(cart_ids, deferred, viewer if len(cart_ids) == 1 else None, work)
        try:
            replayed = _replay(idempotency, cart_ids[0])
            if replayed is not None:
                locks.settle("keep")
                return replayed
            result = _attempt(
                cart_ids,
                decide,
                locks,
                create,
                frozenset(opens),
                expected_version,
                command_id,
                idempotency,
                within,
            )
        except store.Conflict:
            locks.settle("drop")
            metrics.inc("write_conflicts")
            log.info("version moved under cart(s) %s; retrying (%d)", cart_ids, attempt + 1)
            continue
        except d.DomainError:
            locks.settle("keep")
            raise
        except store.InDoubt as exc:
            # The lock stays held until the lost session is known to be gone: a commit of it
            # landing after a reader refilled the entry would leave the entry stale.
            try:
                replayed = _settle_in_doubt(exc, idempotency, cart_ids[0], not in_doubt)
            finally:
                locks.settle("drop")
            in_doubt = True
            if replayed is not None:
                return replayed
            continue  # the key says it was not applied: run it again, once
        except BaseException:
            # Unknown outcome (database error, process interrupted): drop the entries.
            locks.settle("drop")
            raise
        states, committed = result
        _conclude(cart_ids, locks, states, committed, deferred, after_commit)
        if attempt:
            metrics.inc("write_retries", attempt)
        return states
    raise d.Busy("the cart is too busy right now, try again")


def _take_locks(
    cart_ids: list[str],
    deferred: _Deferred | None,
    viewer: Viewer | None = None,
    meanwhile: _Meanwhile | None = None,
) -> _Locks:
    """The command's locks on its carts: a token of its own, or, inside the caller's
    transaction, the transaction's token (re-entrant for the carts it already holds)."""
    if deferred is None:
        locks = _Locks(_token(), viewer=viewer, meanwhile=meanwhile)
        locks.take(cart_ids)
        return locks
    # The transaction's own token: a cart an earlier command of it holds is taken
    # again (re-entrant), and its state is that command's, not the cache's.
    locks = _Locks(deferred.token, pinned=deferred.held, viewer=viewer, meanwhile=meanwhile)
    locks.take(cart_ids)
    for key in deferred.held.intersection(cart_ids):
        locks.cached.pop(key, None)  # the cache is behind our own rows: read them
    return locks


def _conclude(
    cart_ids: list[str],
    locks: _Locks,
    states: dict[str, d.Cart],
    committed: bool,
    deferred: _Deferred | None,
    after_commit: Callable[[dict[str, d.Cart]], None] | None,
) -> None:
    """After an attempt: the locks released, the new states published (at the caller's
    commit when inside its transaction)."""
    if committed:
        _local.commits = getattr(_local, "commits", 0) + 1
    _hook("after_commit", cart_ids=cart_ids, states=states)
    if not committed:
        locks.settle("keep")
    elif deferred is not None:
        deferred.held.update(cart_ids)
        transaction.on_commit(partial(deferred.publish, states, locks.dirty, after_commit))
    else:
        _publish(locks, states, after_commit)


def _befores(
    cart_ids: list[str], locks: _Locks, create: bool, opens: frozenset[str]
) -> dict[str, d.Cart | None]:
    """Each cart's state before the command (None: it opens the cart), from memory when
    the lock brought a trusted one, else from the rows."""
    befores: dict[str, d.Cart | None] = {}
    for cart_id in cart_ids:
        if create or cart_id in opens:
            befores[cart_id] = None
            continue
        cached = locks.cached.get(cart_id) if not locks.dirty else None
        before = cached or store.load_from_rows(cart_id)
        if before is None:
            raise d.NotFound("cart not found")
        befores[cart_id] = before
    return befores


def _attempt(
    cart_ids: list[str],
    decide: Decider,
    locks: _Locks,
    create: bool,
    opens: frozenset[str],
    expected_version: int | None,
    command_id: str | None,
    idempotency: store.Idempotency | None,
    within: Callable[[dict[str, d.Cart]], None] | None,
) -> tuple[dict[str, d.Cart], bool]:
    now = timezone.now()
    befores = _befores(cart_ids, locks, create, opens)
    if expected_version is not None:
        before = befores[cart_ids[0]]  # If-Match is about the cart the command names
        if before is not None and before.version != expected_version:
            raise d.VersionConflict(f"cart is at version {before.version}, not {expected_version}")
    events = decide(befores)
    changes = []
    states: dict[str, d.Cart] = {}
    for cart_id in cart_ids:
        before = befores[cart_id]
        cart_events = events.get(cart_id) or []
        if not cart_events:
            if before is not None:  # else a cart it might have opened and did not
                states[cart_id] = before
            continue
        after = d.fold(before, cart_events)
        assert after is not None
        states[cart_id] = after
        changes.append(store.Change(before, after, cart_events))
    if not changes:
        return states, False
    _hook("before_commit", cart_ids=cart_ids, states=states)
    if create:
        try:
            store.create(changes[0], command_id, locks.dirty, now, idempotency)
        except IntegrityError as exc:
            if idempotency is not None and store.find_idempotent(idempotency):
                raise store.Conflict("idempotency key recorded meanwhile") from exc
            raise d.InvalidInput("a cart with this id exists", field="id") from exc
    else:
        store.commit(
            changes,
            command_id,
            locks.dirty,
            now,
            idempotency,
            (lambda: within(states)) if within is not None else None,
        )
    return states, True


# ---------------------------------------------------------------- the door


def safe_process_action(fn: F | None = None, *, read: bool = False, create: bool = False) -> Any:
    """Make `fn(cart, *args)` callable as `fn(cart_id, *args)`: the state of the cart is
    loaded (rehydrated lazily when it is not in memory) and, for writes, `fn` returns the
    events to commit under the cart's lock; the caller gets the cart state afterwards.

    Writes also take `expected_version=` (If-Match), `command_id=` (idempotency) and the
    other keywords of `execute` (`meanwhile=`: work run while the lock is requested).
    """

    def decorate(fn: F) -> F:
        @wraps(fn)
        def wrapper(
            cart_id: Any,
            *args: Any,
            expected_version: int | None = None,
            command_id: str | None = None,
            idempotency: store.Idempotency | None = None,
            within: Callable[[dict[str, d.Cart]], None] | None = None,
            after_commit: Callable[[dict[str, d.Cart]], None] | None = None,
            viewer: Viewer | None = None,
            meanwhile: Callable[[], None] | None = None,
            **kwargs: Any,
        ) -> Any:
            key = cart_key(cart_id)
            if read:
                if meanwhile is not None:
                    meanwhile()  # nothing to overlap with: a read takes no lock
                cart = read_cart(key)
                if expected_version is not None and cart.version != expected_version:
                    raise d.VersionConflict(f"cart is at version {cart.version}")
                return fn(cart, *args, **kwargs)
            states = execute(
                [key],
                lambda carts: {key: fn(carts[key], *args, **kwargs)},
                create=create,
                expected_version=expected_version,
                command_id=command_id,
                idempotency=idempotency,
                within=within,
                after_commit=after_commit,
                viewer=viewer,
                meanwhile=meanwhile,
            )
            return states[key]

        # The wrapper takes a cart id where `fn` takes a cart, plus the write keywords: the
        # decorated function keeps fn's name and type for its callers, which no annotation
        # can express (ParamSpec can not swap a first parameter's type and add keywords).
        return wrapper  # type: ignore[return-value]

    if fn is not None:
        return decorate(fn)
    return decorate


def evict(cart_id: str, idle_before_ms: int | None = None) -> bool:
    """Remove a cart from memory (passivation, admin); False if busy, recent or absent."""
    try:
        return bool(_guarded(_store().evict, str(cart_id), idle_before_ms))
    except c.CacheUnavailable:
        return False


class MemoryUnreachable(Exception):
    """The cache could not be asked (for callers outside the cache boundary)."""


def exclusive(cart_id: str, fn: Callable[[], T]) -> T:
    """Run `fn` holding the cart's writer lock (no writer can commit meanwhile); the entry
    is dropped afterwards, so the next read loads what `fn` left in the database."""
    locks = _Locks(_token())
    locks.take([cart_id])
    try:
        return fn()
    finally:
        locks.settle("drop")
        _states.pop(cart_id, None)


def write_in_flight(cart_id: str) -> bool:
    """Whether a writer holds the cart's lock right now."""
    try:
        return bool(_guarded(_store().locked, str(cart_id)))
    except c.CacheUnavailable:
        return False


def in_memory(cart_ids: Iterable[str]) -> set[str] | None:
    """Which of these carts have a cached state (one pipelined call); None if the cache
    can not say."""
    try:
        return set(_guarded(_store().present, [str(i) for i in cart_ids]))
    except c.CacheUnavailable:
        return None


def rehydrate(cart_id: str) -> d.Cart:
    """Drop the cart's entry and load it again from the database now."""
    evict(cart_id)
    _states.pop(cart_id, None)
    return read_cart(cart_id)


Claims = dict[str, tuple[c.Generation, str]]  # cart id -> (generation, claim token)
WarmItem = c.FillItem  # cart id, generation, claim token, version, payload


def warm_claim(cart_ids: list[str]) -> tuple[Claims, int, int]:
    """Bulk warming's claim step (cache only; `operations.warm_carts` runs the pipeline):
    claim the carts that are not in memory, one call per lease scope. Returns (claims,
    already warm or being written, failed)."""
    claimed: Claims = {}
    failed = 0
    scopes: dict[int, list[str]] = {}
    for cart_id in cart_ids:
        scopes.setdefault(_store().scope(cart_id), []).append(cart_id)
    for scope, ids in scopes.items():
        token = _token()
        try:
            claims = _guarded(_store().claim_many, ids, token, 10_000)
            if claims is None and reconcile(scope):
                claims = _guarded(_store().claim_many, ids, token, 10_000)
        except c.CacheUnavailable:
            claims = None
        if claims is None:
            failed += len(ids)
            continue
        claimed.update(
            (cart_id, (claim.gen, f"{token}:{position}"))
            for position, (cart_id, claim) in enumerate(zip(ids, claims, strict=True), start=2)
            if claim.status == c.CLAIMED
        )
    return claimed, len(cart_ids) - len(claimed) - failed, failed


def warm_fill(items: list[WarmItem]) -> tuple[int, int, int]:
    """Bulk warming's fill step (cache only): fill what is still claimed, never over a newer
    entry. Returns (warmed, lost to a writer or another reader meanwhile, failed)."""
    if not items:
        return 0, 0, 0
    try:
        flags = _guarded(_store().fill_many, items, _keep_ms())
    except c.CacheUnavailable:
        return 0, 0, len(items)
    warmed = sum(flags)
    metrics.inc("rehydrations", warmed, source="warm")
    return warmed, len(items) - warmed, 0


def idle_carts(before_ms: int, limit: int) -> list[str]:
    """Carts in memory not used since `before_ms` (ms since the epoch), oldest first."""
    try:
        return list(_guarded(_store().idle, before_ms, limit))
    except c.CacheUnavailable:
        return []


def last_seen(cart_ids: Iterable[str]) -> dict[str, int]:
    """When each cart was last used in memory (ms since the epoch), where known."""
    try:
        return dict(_guarded(_store().last_seen, [str(i) for i in cart_ids]))
    except c.CacheUnavailable:
        return {}


def in_memory_count() -> int | None:
    """How many carts are in memory (None if the cache can not say)."""
    try:
        return int(_guarded(_store().count))
    except c.CacheUnavailable:
        return None


# /metrics asks this at each scrape; registered here so that metrics need not import the
# image (which imports metrics). A dict entry, no I/O.
metrics.gauge(
    "carts_in_memory",
    "Carts in the memory image now (no sample when the cache can not be reached).",
    in_memory_count,
)


def peek(cart_ids: Iterable[str]) -> dict[str, d.Cart | None]:
    """What memory holds for these carts right now, without touching them (None: bad entry).
    Raises MemoryUnreachable when the cache can not answer."""
    found: dict[str, d.Cart | None] = {}
    try:
        entries = _guarded(_store().peek, [str(i) for i in cart_ids])
    except c.CacheUnavailable as exc:
        raise MemoryUnreachable(str(exc)) from exc
    for cart_id, (version, payload) in entries.items():
        try:
            state = load_state(payload, cart_id)
        except CodecError:
            state = None
        # An entry whose payload is not at the version its control hash claims is corrupt.
        found[cart_id] = state if state is not None and state.version == version else None
    return found


def clear() -> None:
    """Forget every cached cart (tests; after restoring a database backup)."""
    _states.clear()
    image_store().clear()
    breaker.reset()
