"""System checks (`manage.py check`) for the CARTIMAGE settings, with stable ids.

| id | what |
|---|---|
| cartimage.E001 | `BACKEND` is neither "redis", "embedded" nor the path of a backend module |
| cartimage.E002 | `BACKEND` is Redis but `REDIS_ALIAS` names no django-redis cache in CACHES |
| cartimage.E003 | `CATALOG` is missing, can not be imported, or lacks a method of the port |
| cartimage.E004 | a timeout, interval or limit is not a positive number |
| cartimage.E005 | `REHYDRATE_FROM` is neither "rows" nor "events" |
| cartimage.E006 | `CARTIMAGE` is not a dict |
| cartimage.E007 | the embedded `EMBEDDED_PATH` is relative (or unset) and there is no `BASE_DIR` |
| cartimage.E008 | `REDIS_URL` is not a redis://, redis+sentinel:// or redis+cluster:// URL |
| cartimage.W001 | `CARTIMAGE` has a key the app does not know (a typo is otherwise silent) |
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from cartsvc.catalog import REQUIRED_METHODS
from cartsvc.conf import (
    BACKEND_ALIASES,
    DEFAULTS,
    EMBEDDED_UNANCHORED,
    backend_module,
    embedded_path,
)
from cartsvc.redis_url import parse_redis_url

REDIS_CACHE_BACKEND = "django_redis.cache.RedisCache"
# Seconds (or counts) that must be positive numbers.
POSITIVE = (
    "IDLE_TIMEOUT",
    "ABANDON_AFTER",
    "LOCK_TTL",
    "LOCK_WAIT",
    "TRUST_LEASE",
    "CACHE_RETRY_AFTER",
    "FILL_WAIT",
    "SNAPSHOT_EVERY",
    "MAX_LINE_QUANTITY",
    "MAX_LINES",
    "WRITE_RETRIES",
    "LOCAL_STATES",
    "WEBHOOK_TIMEOUT",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_RETRY_FIRST",
    "WEBHOOK_RETRY_MAX",
)
HINT = "See 'Settings' in docs/use-in-your-shop.md."


def _error(number: int, msg: str, hint: str = HINT) -> Error:
    return Error(msg, hint=hint, id=f"cartimage.E{number:03d}")


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@register()
def check_cartimage_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    raw = getattr(settings, "CARTIMAGE", {})
    if not isinstance(raw, dict):
        return [_error(6, f"CARTIMAGE must be a dict, not {type(raw).__name__}")]
    found: list[CheckMessage] = [
        Warning(
            f"CARTIMAGE has an unknown key {key!r}",
            hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
            id="cartimage.W001",
        )
        for key in sorted(set(raw) - set(DEFAULTS))
    ]
    value = {**DEFAULTS, **raw}
    found += _backend(value)
    embedded = backend_module(str(value["BACKEND"])) == BACKEND_ALIASES["embedded"]
    if embedded and embedded_path(value["EMBEDDED_PATH"]) is None:
        found.append(_error(7, EMBEDDED_UNANCHORED.format(value=value["EMBEDDED_PATH"])))
    found += _catalog(value["CATALOG"])
    found += _timeouts(value)
    if value["REHYDRATE_FROM"] not in ("rows", "events"):
        found.append(
            _error(
                5,
                f'CARTIMAGE["REHYDRATE_FROM"] is {value["REHYDRATE_FROM"]!r}; use "rows" '
                'or "events"',
            )
        )
    return found


def _backend(value: dict[str, Any]) -> list[CheckMessage]:
    backend = value["BACKEND"]
    if problem := _backend_problem(backend):
        return [
            _error(
                1,
                f'CARTIMAGE["BACKEND"] is {backend!r}: {problem}; use "redis", "embedded" or a'
                " backend module's path",
            )
        ]
    if backend_module(backend) != BACKEND_ALIASES["redis"]:
        return []
    if value.get("REDIS_URL"):
        return _redis_url(value["REDIS_URL"])
    alias = value["REDIS_ALIAS"]
    cache = getattr(settings, "CACHES", {}).get(alias)
    if cache is None:
        return [
            _error(
                2,
                f'CARTIMAGE["REDIS_ALIAS"] is {alias!r}, but CACHES has no such alias',
                hint="Add a django-redis cache under that alias, or name the one you have.",
            )
        ]
    if cache.get("BACKEND") != REDIS_CACHE_BACKEND:
        return [
            _error(
                2,
                f"CACHES[{alias!r}] is {cache.get('BACKEND')!r}, not {REDIS_CACHE_BACKEND!r}",
                hint="The image talks to Redis through django-redis's connection.",
            )
        ]
    return []


def _redis_url(url: Any) -> list[CheckMessage]:
    try:
        parse_redis_url(url)
    except ImproperlyConfigured as exc:
        return [_error(8, str(exc), hint="See cartsvc.redis_url.parse_redis_url.")]
    return []


def _backend_problem(backend: Any) -> str | None:
    """Why `backend` names no backend module, or None when it does."""
    if not isinstance(backend, str) or not backend:
        return "not a module path"
    try:
        module = import_module(backend_module(backend))
    except (ImportError, TypeError, ValueError) as exc:  # TypeError: a relative path
        return f"can not be imported ({exc})"
    if not callable(getattr(getattr(module, "Store", None), "from_settings", None)):
        return "the module has no Store with from_settings() (see cartsvc.backends)"
    return None


def _catalog(path: Any) -> list[CheckMessage]:
    if not path:
        return [_error(3, 'CARTIMAGE["CATALOG"] is not set: name your catalog adapter class')]
    try:
        adapter = import_string(path)
    except ImportError as exc:
        return [_error(3, f'CARTIMAGE["CATALOG"] {path!r} can not be imported: {exc}')]
    missing = [name for name in REQUIRED_METHODS if not callable(getattr(adapter, name, None))]
    if missing:
        return [_error(3, f"catalog {path!r} lacks {', '.join(missing)} (cartsvc.catalog.Catalog)")]
    return []


def _timeouts(value: dict[str, Any]) -> list[CheckMessage]:
    return [
        _error(4, f'CARTIMAGE["{name}"] is {value[name]!r}; it must be a positive number')
        for name in POSITIVE
        if not _positive(value[name])
    ]
