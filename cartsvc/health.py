"""Health probes for /healthz: the database, the cache and the broker, each probed now."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cartsvc import image
from cartsvc.conf import conf

log = logging.getLogger("cartsvc.health")


def _probe(check: Callable[[], dict[str, Any]], errors: tuple[type[BaseException], ...]) -> dict:
    started = time.perf_counter()
    try:
        found = check()
    except errors as exc:
        # The class name only: messages may name hosts and users, and /healthz is public.
        log.warning("health probe failed: %r", exc)
        return {"ok": False, "state": "down", "error": type(exc).__name__}
    ms = round((time.perf_counter() - started) * 1000, 2)
    return {"ok": True, "state": "up", "ms": ms, **found}


def _check_database() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"vendor": connection.vendor}


class _CacheDown(Exception):
    """The cache did not answer (the image logs and counts the cause)."""


def _check_cache() -> dict[str, Any]:
    # One round trip through the image's store, with its short timeouts; a cache that
    # failed a moment ago is not asked again until the image's breaker lets it be.
    count = image.in_memory_count()
    if count is None:
        raise _CacheDown("no answer from the cache")
    return {"backend": conf.BACKEND, "carts_in_memory": count}


def _check_broker() -> dict[str, Any]:
    from django.conf import settings
    from kombu import Connection

    url = settings.CELERY_BROKER_URL
    options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {})
    if url.startswith(("redis:", "rediss:")):
        # The configured timeouts, but never more than a second for a probe.
        options = {
            **options,
            "socket_timeout": min(float(options.get("socket_timeout") or 1), 1.0),
            "socket_connect_timeout": min(float(options.get("socket_connect_timeout") or 1), 1.0),
        }
    timeout = min(float(getattr(settings, "CELERY_BROKER_CONNECTION_TIMEOUT", 1) or 1), 1.0)
    with Connection(url, connect_timeout=timeout, transport_options=options) as broker:
        broker.ensure_connection(max_retries=0, timeout=1)
        return {"transport": broker.transport_cls}


def _subscriptions_state(errors: tuple[type[BaseException], ...]) -> dict[str, Any]:
    from cartsvc import subscriptions

    try:
        stopped = subscriptions.stopped()
    except errors as exc:
        log.warning("health probe failed: %r", exc)
        return {"ok": None, "state": "unknown"}
    if stopped:
        # The names only (public): `manage.py cart_subscriptions` shows the event and error.
        return {"ok": False, "state": "stopped", "stopped": stopped}
    return {"ok": True, "state": "up"}


def health() -> dict[str, Any]:
    """Probe the database, the cache and the broker now, each with a short timeout, and the
    event subscriptions.

    `status` is "down" when the database can not be reached (nothing works without it),
    "degraded" when the cache or the broker can not (carts still work, more slowly, and
    sweeps wait) or a subscription is stopped at an event its handler fails on, else "ok".
    Each part: {"ok", "state": "up" | "down" | "not configured", "ms" | "error" (an exception
    class name), ...}; `subscriptions`: {"ok", "state": "up" | "stopped" | "unknown",
    "stopped": [names]}.
    """
    from django.conf import settings
    from django.db import Error as DatabaseDriverError
    from kombu.exceptions import KombuError

    database = _probe(_check_database, (DatabaseDriverError,))
    cache = _probe(_check_cache, (_CacheDown,))
    if getattr(settings, "CELERY_BROKER_URL", None):
        # ImportError: the URL names a transport whose library is not installed.
        broker = _probe(_check_broker, (KombuError, OSError, ImportError))
    else:
        broker = {"ok": None, "state": "not configured"}
    if database["ok"]:
        feeds = _subscriptions_state((DatabaseDriverError,))
    else:
        feeds = {"ok": None, "state": "unknown"}
    if not database["ok"]:
        status = "down"
    elif cache["ok"] is False or broker["ok"] is False or feeds["ok"] is False:
        status = "degraded"
    else:
        status = "ok"
    return {
        "status": status,
        "database": database,
        "cache": cache,
        "broker": broker,
        "subscriptions": feeds,
    }
