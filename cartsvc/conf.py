"""The app's settings: `conf.X` reads settings.CARTIMAGE["X"] or its default."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    "IDLE_TIMEOUT": 1800,
    "ABANDON_AFTER": 604800,
    "SNAPSHOT_EVERY": 50,
    "REHYDRATE_FROM": "rows",
    "MAX_LINE_QUANTITY": 99,
    "MAX_LINES": 100,
    # A backend module's path, or the short name of a bundled one (BACKEND_ALIASES).
    "BACKEND": "embedded",
    # None: EMBEDDED_DEFAULT. A relative path is anchored to settings.BASE_DIR, never to the
    # working directory (two processes started from different folders share one file).
    "EMBEDDED_PATH": None,
    "REDIS_ALIAS": "default",
    # None: the django-redis connection of REDIS_ALIAS. Else redis-py's own client for this
    # URL: redis://, redis+sentinel://host:port,.../service[/db] or redis+cluster://host:port,...
    # (see cartsvc.redis_url).
    "REDIS_URL": None,
    "KEY_PREFIX": "ci",
    # A dotted path to the shop's `cartsvc.catalog.Catalog` adapter; required (check E003).
    "CATALOG": None,
    "CURRENCY": "EUR",
    # How long a writer's lock (the write-in-flight marker) lives if its holder dies.
    "LOCK_TTL": 5.0,
    # How long a writer waits for another writer's lock before giving up (then retried).
    "LOCK_WAIT": 10.0,
    # How long a cache entry may be trusted without re-checking the dirty list in the
    # database; a writer that could not fence the cache waits this long before answering.
    "TRUST_LEASE": 1.0,
    # After a cache error, skip the cache for this long instead of paying timeouts.
    "CACHE_RETRY_AFTER": 1.0,
    # How long concurrent readers of one cold cart wait for the one rehydrating it.
    "FILL_WAIT": 0.2,
    "WRITE_RETRIES": 50,
    # Decoded states kept per process, checked against the entry's version on every read.
    "LOCAL_STATES": 4096,
    # The shop's own event subscribers: name -> handler path (see cartsvc.subscriptions).
    "SUBSCRIBERS": {},
    # A subscription whose handler failed this many times in a row on one event stops there.
    "SUBSCRIPTION_MAX_FAILURES": 10,
    # After a commit, ask a Celery worker to drain the subscriptions (from a thread: a request
    # never waits for the broker); False: only the periodic drain of the beat schedule.
    "SUBSCRIPTION_NUDGE": True,
    # Webhooks (cartsvc.webhooks): the most seconds one POST may take, start to end.
    "WEBHOOK_TIMEOUT": 5.0,
    # Attempts before a delivery is `failed`, and the waits between them: FIRST, then
    # doubled each time, never more than MAX seconds (12 attempts: about 3.4 hours).
    "WEBHOOK_MAX_ATTEMPTS": 12,
    "WEBHOOK_RETRY_FIRST": 10.0,
    "WEBHOOK_RETRY_MAX": 3600.0,
}


# The bundled backends' short names, kept so that existing settings go on working.
BACKEND_ALIASES = {"redis": "cartsvc.backends.redis", "embedded": "cartsvc.backends.sqlite"}


def backend_module(value: str) -> str:
    """The module path a `BACKEND` setting names (a short name, or the path itself)."""
    return BACKEND_ALIASES.get(value, value)


EMBEDDED_DEFAULT = "var/image.sqlite3"
EMBEDDED_UNANCHORED = (
    'CARTIMAGE["EMBEDDED_PATH"] is {value!r} and settings has no BASE_DIR to anchor it to: '
    "set it to an absolute path (the working directory differs between processes)"
)


def embedded_path(value: Any) -> str | None:
    """The embedded store's file as an absolute path: a relative one (or the default,
    var/image.sqlite3) under settings.BASE_DIR; None if it is relative and there is no
    BASE_DIR (check E007)."""
    path = Path(value or EMBEDDED_DEFAULT)
    if path.is_absolute():
        return str(path)
    base = getattr(settings, "BASE_DIR", None)
    return None if base is None else str(Path(base) / path)


class CartSettings:
    """Read on every access so that override_settings in tests just works."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown cart setting {name}")
        value = getattr(settings, "CARTIMAGE", {}).get(name, DEFAULTS[name])
        if name == "EMBEDDED_PATH":
            found = embedded_path(value)
            if found is None and backend_module(self.BACKEND) == BACKEND_ALIASES["embedded"]:
                raise ImproperlyConfigured(EMBEDDED_UNANCHORED.format(value=value))
            return found
        return value

    def source(self) -> object:
        """The settings object itself: derived values are cached for as long as it is the
        same object (override_settings replaces it)."""
        return getattr(settings, "CARTIMAGE", DEFAULTS)


conf = CartSettings()
