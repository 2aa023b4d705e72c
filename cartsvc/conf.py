"""The app's settings: `conf.X` reads settings.CARTIMAGE["X"] or its default."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "IDLE_TIMEOUT": 1800,
    "ABANDON_AFTER": 604800,
    "SNAPSHOT_EVERY": 50,
    "REHYDRATE_FROM": "rows",
    "MAX_LINE_QUANTITY": 99,
    "MAX_LINES": 100,
    # A backend module's path, or the short name of a bundled one (BACKEND_ALIASES).
    "BACKEND": "embedded",
    "EMBEDDED_PATH": "var/image.sqlite3",
    "REDIS_ALIAS": "default",
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
}


# The bundled backends' short names, kept so that existing settings go on working.
BACKEND_ALIASES = {"redis": "cartsvc.backends.redis", "embedded": "cartsvc.backends.sqlite"}


def backend_module(value: str) -> str:
    """The module path a `BACKEND` setting names (a short name, or the path itself)."""
    return BACKEND_ALIASES.get(value, value)


class CartSettings:
    """Read on every access so that override_settings in tests just works."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown cart setting {name}")
        return getattr(settings, "CARTIMAGE", {}).get(name, DEFAULTS[name])

    def source(self) -> object:
        """The settings object itself: derived values are cached for as long as it is the
        same object (override_settings replaces it)."""
        return getattr(settings, "CARTIMAGE", DEFAULTS)


conf = CartSettings()
