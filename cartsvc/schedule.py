"""The Celery beat schedule of the sweeps, for a host's CELERY_BEAT_SCHEDULE (no Django import)."""

from __future__ import annotations

from typing import Any


def beat_schedule(
    passivate_every: float = 60,
    abandon_every: float = 300,
    full_sweep_every: float = 3600,
    drain_every: float = 5,
    webhooks_every: float = 10,
) -> dict[str, dict[str, Any]]:
    """The periodic sweeps, the subscriptions' drain and the webhook sender, each expiring
    after one interval: a tick not run by its next one is dropped, so a worker back after an
    outage runs one sweep, not a backlog.

    `CELERY_BEAT_SCHEDULE = {**beat_schedule(), **your_own}` in the host's settings."""
    return {
        "cart-passivation": {
            "task": "cartsvc.tasks.passivate_idle_carts",
            "schedule": passivate_every,
            "options": {"expires": passivate_every},
        },
        "cart-abandonment": {
            "task": "cartsvc.tasks.expire_abandoned_carts",
            "schedule": abandon_every,
            "options": {"expires": abandon_every},
        },
        # Event subscriptions: what the nudge after each commit did not already deliver
        # (a broker that was down, a worker that was busy).
        "cart-subscriptions": {
            "task": "cartsvc.tasks.drain_subscriptions",
            "schedule": drain_every,
            "options": {"expires": drain_every},
        },
        # Everything, including the purge of old Idempotency-Keys.
        "cart-full-sweep": {
            "task": "cartsvc.tasks.sweep_carts",
            "schedule": full_sweep_every,
            "options": {"expires": full_sweep_every},
        },
        # Webhook deliveries due (new ones, and retries whose wait is over).
        "cart-webhooks": {
            "task": "cartsvc.tasks.send_webhooks",
            "schedule": webhooks_every,
            "options": {"expires": webhooks_every},
        },
    }
