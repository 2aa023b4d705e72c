"""Inactivity timeouts: passivate idle carts and expire abandoned ones, in batches.

Both passes find their work by predicate (like `clearsessions`), so a sweep that runs twice,
late, or concurrently with another is harmless: eviction re-checks activity and the writer
lock inside the cache, and expiry is decided under the cart's lock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from cartsvc import image, metrics, service, store
from cartsvc.conf import conf
from cartsvc.domain import CartExpired, DomainError
from cartsvc.signals import cart_abandoned
from cartsvc.subscriptions import Delivered

log = logging.getLogger("cartsvc.lifecycle")

# Idempotency keys are kept at least 24 h (the API promises that); we keep two days.
IDEMPOTENCY_KEEP = timedelta(hours=48)


@dataclass
class SweepResult:
    passivated: int = 0
    snapshots: int = 0
    expired: int = 0
    keys_purged: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"passivated {self.passivated} (snapshots {self.snapshots}), "
            f"expired {self.expired}, idempotency keys purged {self.keys_purged} "
            f"in {self.seconds:.2f} s"
        )


def _now_ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def passivate_idle(
    now: datetime | None = None, batch: int = 500, max_batches: int = 100
) -> tuple[int, int]:
    """Evict carts idle longer than IDLE_TIMEOUT, snapshotting those with events since
    their last snapshot first. Returns (evicted, snapshots written)."""
    now = now or timezone.now()
    cutoff_ms = _now_ms(now) - int(conf.IDLE_TIMEOUT * 1000)
    evicted = snapshots = 0
    for _ in range(max_batches):
        ids = image.idle_carts(cutoff_ms, batch)
        if not ids:
            break
        store.fold_activity(image.last_seen(ids))
        try:
            cached = {cart_id: state for cart_id, state in image.peek(ids).items() if state}
        except image.MemoryUnreachable:
            break
        latest = store.snapshot_versions(list(cached))
        behind = [s for cart_id, s in cached.items() if latest.get(cart_id, 0) < s.version]
        if behind:
            snapshots += store.write_snapshots(behind, now)
        batch_evicted = 0
        for cart_id in ids:
            if image.evict(cart_id, idle_before_ms=cutoff_ms):
                batch_evicted += 1
        evicted += batch_evicted
        if len(ids) < batch:
            break
    if evicted:
        metrics.inc("passivations", evicted)
        log.info("passivated %d idle carts (%d snapshots)", evicted, snapshots)
    return evicted, snapshots


def expire_abandoned(now: datetime | None = None, batch: int = 500) -> int:
    """Expire open carts untouched for ABANDON_AFTER (the `cartsvc.abandoned` subscription
    then sends `cart_abandoned` for each)."""
    now = now or timezone.now()
    idle_since = now - timedelta(seconds=conf.ABANDON_AFTER)
    cutoff_ms = _now_ms(idle_since)
    expired, after = 0, None
    while True:
        ids = store.abandoned_candidates(idle_since, batch, after)
        if not ids:
            break
        after = ids[-1]
        seen = image.last_seen(ids)
        recent = {cart_id: ms for cart_id, ms in seen.items() if ms >= cutoff_ms}
        store.fold_activity(recent)  # read recently: not abandoned
        for cart_id in ids:
            if cart_id in recent:
                continue
            done: list[service.Cart] = []
            try:
                service.expire_cart(cart_id, idle_since=idle_since, on_expired=done.append)
            except DomainError as exc:
                log.warning("could not expire cart %s: %s", cart_id, exc)
                continue
            for _cart in done:
                expired += 1
                metrics.inc("expirations")
        if len(ids) < batch:
            break
    return expired


def sweep(now: datetime | None = None) -> SweepResult:
    """One pass of everything: what the Celery tasks and `sweep_carts` run."""
    started = time.monotonic()
    now = now or timezone.now()
    result = SweepResult()
    result.passivated, result.snapshots = passivate_idle(now)
    result.expired = expire_abandoned(now)
    result.keys_purged = store.purge_idempotency_keys(now - IDEMPOTENCY_KEEP)
    result.seconds = time.monotonic() - started
    return result


def announce_abandoned(events: list[Delivered]) -> None:
    """The `cartsvc.abandoned` subscription: `cart_abandoned` once per expired cart. Sent in
    the drain's transaction, so a receiver that writes to the database (queues an e-mail, say)
    commits exactly once with the checkpoint, even if a process dies on the way."""
    for event in events:
        if event.type != CartExpired.type:
            continue
        cart = store.load(event.cart_id)
        if cart is not None:
            cart_abandoned.send(sender=expire_abandoned, cart=cart)
