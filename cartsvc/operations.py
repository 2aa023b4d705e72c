"""Operating the image: inspect memory and rows, evict and reload, verify and repair, warm."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from cartsvc import domain as d
from cartsvc import image, store, verify
from cartsvc.domain import Cart
from cartsvc.image import cart_key
from cartsvc.verify import Mismatch

__all__ = [
    "Mismatch",
    "Repair",
    "WarmResult",
    "count_active",
    "evict_cart",
    "in_memory",
    "memory_image",
    "rebuild_rows",
    "rehydrate_cart",
    "repair_cart",
    "rows_state",
    "verify_carts",
    "warm_carts",
]


def memory_image(cart_id: Any) -> Cart | None:
    """What memory holds for this cart right now, untouched (None: not in memory, a corrupt
    entry, or the cache can not be asked)."""
    key = cart_key(cart_id)
    try:
        return image.peek([key]).get(key)
    except image.MemoryUnreachable:
        return None


def in_memory(cart_ids: list[Any]) -> set[str] | None:
    """Which of these carts are in memory (one pipelined cache call); None if the cache
    can not say."""
    return image.in_memory([cart_key(i) for i in cart_ids])


def rows_state(cart_id: Any) -> Cart | None:
    """The cart as its rows say (header and lines in one query), without touching memory."""
    return store.load_from_rows(cart_key(cart_id))


def evict_cart(cart_id: Any) -> bool:
    """Take a cart out of memory (it is rehydrated on the next read)."""
    return image.evict(cart_key(cart_id))


def rehydrate_cart(cart_id: Any) -> Cart:
    """Reload a cart into memory from the database now."""
    return image.rehydrate(cart_key(cart_id))


def rebuild_rows(cart_id: Any) -> Cart:
    """Repair: rewrite a cart's rows from its event log (the truth), under its lock."""
    key = cart_key(cart_id)
    rebuilt = image.exclusive(key, lambda: store.rebuild_rows(key))
    if rebuilt is None:
        raise d.NotFound("cart not found")
    return rebuilt


def verify_carts(
    cart_ids: list[Any] | None = None,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Mismatch]:
    """Every disagreement between rows, events, snapshots and memory (all carts if None);
    `progress(1)` is called after each cart is checked."""

    def checked() -> None:
        if progress is not None:
            progress(1)

    if cart_ids is not None:
        for cart_id in cart_ids:
            try:
                key = cart_key(cart_id)
            except d.NotFound:
                yield Mismatch(str(cart_id), "id", "not a cart id")
                checked()
                continue
            if store.load_from_rows(key) is None and not store.replay_all(key)[1]:
                yield Mismatch(key, "id", "no such cart")
                checked()
                continue
            yield from verify.verify_cart(key)
            checked()
        return
    after = None
    while ids := store.all_cart_ids(after, batch):
        for key in ids:
            yield from verify.verify_cart(key)
            checked()
        after = ids[-1]


@dataclass
class Repair:
    """What `repair_cart` found, did and left: `found` and `remaining` are the cart's
    mismatches before and after, `done` says what was changed, in order."""

    cart_id: str
    found: list[Mismatch]
    done: list[str]
    remaining: list[Mismatch]

    @property
    def repaired(self) -> bool:
        """Whether the cart is consistent now."""
        return not self.remaining


def repair_cart(cart_id: Any) -> Repair:
    """Repair one cart from its event log (the truth): verify it; evict a memory entry that
    disagrees with the log (the next read loads it again); rewrite rows that disagree from
    the log, under the cart's lock; then verify again. The log and its snapshots are never
    changed, so a gap in its versions or a snapshot that disagrees stays in `remaining`, as
    does memory that could not be checked or evicted (a writer holds the cart). Raises
    NotFound for an unknown cart."""
    key = cart_key(cart_id)
    if store.load_from_rows(key) is None and not store.replay_all(key)[1]:
        raise d.NotFound("cart not found")
    found = verify.verify_cart(key)
    done: list[str] = []
    # verify compares memory with snapshot + replay: an entry equal to the full fold is
    # right, and the bad snapshot is what disagrees; evicting it would reload the snapshot's
    # error. Evicted before the rows are rebuilt: a reader refilling the entry from bad rows
    # meanwhile is dropped again when rebuild_rows releases the lock.
    if any(m.what == "memory" for m in found):
        cached = memory_image(key)
        if (cached is None or cached != store.replay_all(key)[0]) and evict_cart(key):
            done.append("memory entry evicted")
    if any(m.what == "rows" for m in found):
        rebuild_rows(key)
        done.append("rows rebuilt from the event log")
    remaining = verify.verify_cart(key) if done else found
    return Repair(key, found, done, remaining)


@dataclass
class WarmResult:
    """What `warm_carts` did; in a dry run `warmed` counts the carts it would have warmed
    (not in memory) and `failed` those the cache could not say about."""

    warmed: int = 0
    already: int = 0
    failed: int = 0
    seen: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def __str__(self) -> str:
        rate = self.seen / self.seconds if self.seconds else 0.0
        done = f"would warm {self.warmed}" if self.dry_run else f"warmed {self.warmed}"
        return (
            f"{done}, already warm {self.already}, failed {self.failed} "
            f"in {self.seconds:.2f} s ({rate:,.0f} carts/s)"
            + (" (dry run)" if self.dry_run else "")
        )


def _warm_load(claimed: image.Claims) -> tuple[list[image.WarmItem], int]:
    """Bulk warming's load step (database only, one query): the claimed carts' payloads,
    ready to fill. Returns (items, failed: claimed carts gone from the database)."""
    payloads = store.payloads_from_rows(list(claimed))
    hook = image.HOOKS.get("before_warm_fill")  # a test's writer racing the fill
    if hook is not None:
        hook(payloads=payloads)
    items = [
        (cart_id, gen, claim_token, *payloads[cart_id])
        for cart_id, (gen, claim_token) in claimed.items()
        if cart_id in payloads
    ]
    return items, len(claimed) - len(items)


# The warming loops' hooks: the next batch of ids after an id, and counts to add to the
# result (warmed, already in memory, failed).
_NextIds = Callable[[str | None], list[str]]
_Add = Callable[[tuple[int, int, int]], None]


def _count_warm(
    ids: list[str], next_ids: _NextIds, add: _Add, progress: Callable[[int], None] | None
) -> None:
    """A dry run: which carts of each batch are in memory already (one cache call each)."""
    while ids:
        warm = in_memory(ids)
        if warm is None:
            add((0, 0, len(ids)))
        else:
            already = len(warm.intersection(ids))
            add((len(ids) - already, already, 0))
        if progress is not None:
            progress(len(ids))
        ids = next_ids(ids[-1])


def _warm_batches(
    ids: list[str], next_ids: _NextIds, add: _Add, progress: Callable[[int], None] | None
) -> None:
    """Claim, load and fill batch after batch, the cache calls on a helper thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-cache") as cache_thread:
        claiming = cache_thread.submit(image.warm_claim, ids) if ids else None
        filling = []
        while ids and claiming is not None:
            following = next_ids(ids[-1])
            claimed, already, failed = claiming.result()
            add((0, already, failed))
            claiming = cache_thread.submit(image.warm_claim, following) if following else None
            items, gone = _warm_load(claimed)
            add((0, 0, gone))
            filling.append(cache_thread.submit(image.warm_fill, items))
            if progress is not None:
                progress(len(ids))
            ids = following
        for fill in filling:
            add(fill.result())


def warm_carts(
    *,
    active_within: float | None = None,
    limit: int | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> WarmResult:
    """Load carts active in the window into memory in batches (the warming pipeline: claim
    in the cache, load from the database, fill the cache, with the same claim/fill protocol
    as a single read): two queries per batch, one cache call to claim and one to fill, never
    over a newer entry. The cache calls run on a
    helper thread (which never touches the database) while this one queries the next batch,
    so database and cache work overlap. A dry run loads nothing: one cache call per batch
    counts which carts are in memory already."""
    started = time.monotonic()
    since = timezone.now() - timedelta(seconds=active_within) if active_within else None
    result = WarmResult(dry_run=dry_run)

    def next_ids(after: str | None) -> list[str]:
        if limit is not None and result.seen >= limit:
            return []
        size = batch_size if limit is None else min(batch_size, limit - result.seen)
        ids = store.active_ids(since, after, size)
        result.seen += len(ids)
        return ids

    def add(counts: tuple[int, int, int]) -> None:
        result.warmed += counts[0]
        result.already += counts[1]
        result.failed += counts[2]

    ids = next_ids(None)
    if dry_run:
        _count_warm(ids, next_ids, add, progress)
    else:
        _warm_batches(ids, next_ids, add, progress)
    result.seconds = time.monotonic() - started
    return result


def count_active(active_within: float | None = None) -> int:
    """How many carts were active in the window (for a progress bar's total)."""
    since = timezone.now() - timedelta(seconds=active_within) if active_within else None
    return store.count_active(since)
