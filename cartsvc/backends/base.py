"""The image store interface: statuses, typed results and `ImageStore`, shared by every backend.

An entry is a small control hash per cart, plus the state's JSON payload beside it, so that
the hash stays small:
  v       version of the cached state (absent: nothing cached)
  s       last access (ms), refreshed at most once a second
  g       generation: changes whenever a writer takes the lock or a dead writer is cleaned
          up, so a reader that loaded the database before that can not fill the entry
  m, mx   writer lock token and its expiry (ms): the "write in flight" marker
  r, rx   single-flight claim of the reader rehydrating a cold cart, and its expiry
  e       the epoch the entry was written in (Redis: the primary's replication id); an entry
          of another epoch is a miss
Plus a lease (entries are trusted only while it exists, see image.reconcile) and the carts
by last access (read activity and passivation candidates), one of each per lease scope.

The statuses are defined here once; the Redis scripts get them substituted into their source
(`@HIT`, ...) when they are loaded, so Python and Lua can not disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple, Protocol

import orjson

from cartsvc.domain import CLOSED

# read() statuses; HIT_SAME: the entry is at the version the caller already holds
HIT, CLAIMED, BUSY, NO_LEASE, FILLING, HIT_SAME = 0, 1, 2, 3, 4, 5
# acquire() statuses (BUSY and NO_LEASE as above); with a viewer, HIDDEN: the cached state
# is not the viewer's to see, UNSEEN: no trusted state to tell (nothing was touched for either)
ACQUIRED, ACQUIRED_EMPTY, ACQUIRED_SAME, HIDDEN, UNSEEN = 0, 1, 6, 7, 8
# reconcile_begin() statuses
WAIT, RECONCILING, LEASED = 0, 1, 2
# Read activity is written (field s, the seen set, the key's expiry) at most this often.
SEEN_EVERY_MS = 1000

# Every name a Redis script may use as `@NAME`.
CONSTANTS: dict[str, int] = {
    "HIT": HIT,
    "CLAIMED": CLAIMED,
    "BUSY": BUSY,
    "NO_LEASE": NO_LEASE,
    "FILLING": FILLING,
    "HIT_SAME": HIT_SAME,
    "ACQUIRED": ACQUIRED,
    "ACQUIRED_EMPTY": ACQUIRED_EMPTY,
    "ACQUIRED_SAME": ACQUIRED_SAME,
    "HIDDEN": HIDDEN,
    "UNSEEN": UNSEEN,
    "WAIT": WAIT,
    "RECONCILING": RECONCILING,
    "LEASED": LEASED,
    "SEEN_EVERY_MS": SEEN_EVERY_MS,
}

# A claim's generation, handed back unchanged to `fill` (Redis answers bytes, SQLite str).
Generation = str | bytes
SettleMode = Literal["set", "keep", "drop"]
# (cart id, generation, claim token, version, payload): one cart for `fill_many`.
FillItem = tuple[str, Generation, str, int, bytes]


class CacheUnavailable(Exception):
    """The cache could not answer; the caller falls back to the database."""


class Read(NamedTuple):
    """What `read` found: HIT (with the payload), HIT_SAME, CLAIMED (with the generation the
    fill must find), BUSY, NO_LEASE or FILLING."""

    status: int
    payload: bytes = b""
    gen: Generation = ""


# A viewer's id is compared as a number in the Redis script (Lua's numbers are doubles):
# ids beyond this are checked by the service instead (no viewer is passed).
VIEWER_ID_LIMIT = 2**53


def visible_in_payload(payload: bytes, viewer: str) -> bool | None:
    """Whether a cached state (events.dump_state's JSON: status "st", owner "o") may be
    seen by `viewer` ("-" a visitor, else a user's id): a closed cart by no one, an owned
    one by its owner only. None when the payload can not tell (not a state). The Redis
    script acquire.lua does the same; the store contract tests hold both to it."""
    try:
        state = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(state, dict) or "st" not in state:
        return None
    if state["st"] == CLOSED:
        return False
    owner = state.get("o")
    return owner is None or (viewer != "-" and str(owner) == viewer)


class Acquired(NamedTuple):
    """What `acquire` found: ACQUIRED (with the cached version and payload), ACQUIRED_SAME,
    ACQUIRED_EMPTY, BUSY (with the lock's remaining ms), NO_LEASE, or with a viewer HIDDEN
    or UNSEEN."""

    status: int
    version: int = 0
    payload: bytes = b""
    wait_ms: int = 0


class Claim(NamedTuple):
    """One cart of `claim_many`: HIT (with the cached version), CLAIMED (with the generation),
    BUSY or FILLING."""

    status: int
    version: int = 0
    gen: Generation = ""


class Reconcile(NamedTuple):
    """What `reconcile_begin` found: RECONCILING (this caller won), WAIT or LEASED; and the
    cache's clock."""

    status: int
    now_ms: int


class ImageStore(Protocol):
    """What the image needs from a backend. Every failure is raised as `CacheUnavailable`."""

    def scope(self, cart_id: str) -> int:
        """The lease scope covering the cart (0 where one lease covers every cart; a Cluster
        has one per hash-tag bucket, so that a script reads a cart and its lease in one slot)."""

    def read(self, cart_id: str, token: str, claim_ms: int, keep_ms: int, known: str) -> Read:
        """The entry (HIT_SAME when it is at version `known`), or a claim to rehydrate it;
        logs access."""

    def fill(
        self, cart_id: str, gen: Generation, token: str, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        """Store a rehydrated state if the generation is unchanged, no writer holds the lock
        and nothing newer is cached."""

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
        """Take the writer lock, returning what is cached (ACQUIRED_SAME when the entry is at
        version `known`). With a `viewer` ("-" a visitor, else a user's id), the cached state
        is checked first, as `visible_in_payload` does: HIDDEN or UNSEEN take nothing.

        `meanwhile()` (it must not raise) is called while the request is in flight: after
        it is sent, before its reply is read, so the caller's other wait (a catalog query)
        overlaps this one. A store that can not overlap them calls it before the request; a
        request that fails and is sent again may call it again."""

    def settle(
        self, cart_id: str, token: str, mode: SettleMode, version: int, payload: bytes, keep_ms: int
    ) -> bool:
        """Release the lock: mode "set" publishes the new state, "keep" leaves the entry,
        "drop" removes it. Without the lock, "set"/"drop" invalidate instead."""

    def wait_release(self, cart_id: str, timeout_ms: int) -> None:
        """Wait until the cart's writer lock is released (or timeout_ms), then return."""

    def claim_many(self, cart_ids: list[str], token: str, claim_ms: int) -> list[Claim] | None:
        """For bulk warming, one `Claim` per cart, all of one scope; None when there is no
        lease. Claim tokens are f"{token}:{position + 2}"."""

    def fill_many(self, items: list[FillItem], keep_ms: int) -> list[bool]:
        """`fill` for many (cart_id, gen, token, version, payload) at once."""

    def release_claim(self, cart_id: str, token: str) -> None:
        """Give up this reader's single-flight claim (the cart was not found, or its load
        failed), so the next reader claims at once instead of waiting out the claim."""

    def evict(self, cart_id: str, idle_before_ms: int | None) -> bool:
        """Remove an entry unless a writer holds it or it was used after idle_before_ms."""

    def reconcile_begin(self, scope: int, token: str, ttl_ms: int) -> Reconcile:
        """Try to become the one reconciler of the scope."""

    def reconcile_end(
        self, scope: int, token: str, lease_until_ms: int, drop_ids: list[str]
    ) -> None:
        """Drop the dirty carts' entries (all of the scope), grant the scope's lease until
        lease_until_ms."""

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
