"""Shared fixtures: a clean memory image per test, factories, the backend in use."""

from __future__ import annotations

import contextlib

import pytest
from django.conf import settings

from cartsvc import image, metrics
from cartsvc.backends.base import CacheUnavailable
from cartsvc.conf import BACKEND_ALIASES, backend_module
from tests import hypothesis_profiles

hypothesis_profiles.load()
# The integration project runs in its own virtualenv against the built wheel
# (tests/packaging), never inside this suite.
collect_ignore = ["hostshop"]


def redis_backend() -> bool:
    return backend_module(settings.CARTIMAGE["BACKEND"]) == BACKEND_ALIASES["redis"]


@pytest.fixture(autouse=True)
def clean_image():
    """Redis outlives each test's database rollback: start and end every test empty."""
    image.HOOKS.clear()
    image.breaker.reset()
    metrics.reset()
    with contextlib.suppress(CacheUnavailable):
        image.clear()
    yield
    image.HOOKS.clear()
    image.breaker.reset()
    with contextlib.suppress(CacheUnavailable):
        image.clear()


@pytest.fixture
def needs_redis():
    if not redis_backend():
        pytest.skip("needs the Redis backend (REDIS_URL)")


@pytest.fixture
def products(db):
    from tests.factories import make_products

    return make_products(5)
