"""Celery tasks, thin: each runs one lifecycle pass (idempotent, finds its work by predicate)."""

from __future__ import annotations

from celery import shared_task

from cartsvc import lifecycle, subscriptions, webhooks


@shared_task(name="cartsvc.tasks.passivate_idle_carts", ignore_result=True)
def passivate_idle_carts() -> dict[str, int]:
    """Carts idle longer than CARTIMAGE["IDLE_TIMEOUT"] leave memory (snapshot first if behind)."""
    passivated, snapshots = lifecycle.passivate_idle()
    return {"passivated": passivated, "snapshots": snapshots}


@shared_task(name="cartsvc.tasks.expire_abandoned_carts", ignore_result=True)
def expire_abandoned_carts() -> dict[str, int]:
    """Open carts untouched for CARTIMAGE["ABANDON_AFTER"] become `expired` (once each)."""
    return {"expired": lifecycle.expire_abandoned()}


@shared_task(name="cartsvc.tasks.sweep_carts", ignore_result=True)
def sweep_carts() -> dict[str, int | float]:
    """Everything `sweep_carts` (the command) does: passivation, abandonment, key purge."""
    result = lifecycle.sweep()
    return {
        "passivated": result.passivated,
        "snapshots": result.snapshots,
        "expired": result.expired,
        "keys_purged": result.keys_purged,
        "seconds": round(result.seconds, 3),
    }


@shared_task(name="cartsvc.tasks.drain_subscriptions", ignore_result=True)
def drain_subscriptions() -> dict[str, int]:
    """Hand every subscription the events committed since its checkpoint (see subscriptions)."""
    return subscriptions.drain()


@shared_task(name="cartsvc.tasks.send_webhooks", ignore_result=True)
def send_webhooks() -> dict[str, int]:
    """POST the webhook deliveries that are due (cartsvc.webhooks.send_due)."""
    return webhooks.send_due()
