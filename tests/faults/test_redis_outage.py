"""Redis is an accelerator: killed or hung, reads and writes go on; no stale read after."""

from __future__ import annotations

import time

import pytest

from cartsvc import image, service
from cartsvc.models import CartCacheDirty
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def past_breaker():
    time.sleep(1.05)  # CACHE_RETRY_AFTER: the image tries the cache again after this


def test_redis_killed_reads_and_writes_go_on_and_nothing_is_stale_after(products, own_redis):
    cart = make_cart({"SKU-1": 1})
    assert image.peek([cart.id])[cart.id] == cart
    own_redis.kill()

    read, took = timed(lambda: service.get_cart(cart.id))
    assert read == cart and took < 2
    written, took = timed(lambda: service.add_line(cart.id, "SKU-1", 2))
    assert written.version == cart.version + 1 and took < 2.5
    again, took = timed(lambda: service.add_line(cart.id, "SKU-2", 1))
    assert again.version == cart.version + 2 and took < 2.5
    assert service.get_cart(cart.id) == again

    own_redis.start()  # back, empty (no persistence)
    past_breaker()
    assert service.get_cart(cart.id) == again
    assert image.peek([cart.id])[cart.id] == again
    assert service.add_line(cart.id, "SKU-1", 1).version == again.version + 1


def test_redis_hung_reads_and_writes_go_on_and_the_old_entry_is_never_served(products, own_redis):
    cart = make_cart({"SKU-1": 1})
    assert image.peek([cart.id])[cart.id] == cart  # v2 is in memory
    own_redis.freeze()
    try:
        read, took = timed(lambda: service.get_cart(cart.id))
        assert read == cart and took < 2
        written, took = timed(lambda: service.add_line(cart.id, "SKU-1", 2))
        assert written.version == cart.version + 1 and took < 2.5
        assert CartCacheDirty.objects.filter(cart_id=cart.id).exists()
    finally:
        own_redis.thaw()
    # The v2 entry is still in Redis; every read from now on must see the newer version.
    assert service.get_cart(cart.id) == written
    past_breaker()
    for _ in range(3):
        assert service.get_cart(cart.id) == written
    assert image.peek([cart.id])[cart.id] == written
    assert not CartCacheDirty.objects.filter(cart_id=cart.id).exists()


def test_a_write_that_could_not_fence_the_cache_waits_out_the_lease(products, own_redis, settings):
    cart = make_cart({"SKU-1": 1})
    own_redis.freeze()
    try:
        written, took = timed(lambda: service.add_line(cart.id, "SKU-1", 1))
    finally:
        own_redis.thaw()
    assert took >= settings.CARTIMAGE.get("TRUST_LEASE", 1.0)
    past_breaker()
    assert service.get_cart(cart.id) == written
