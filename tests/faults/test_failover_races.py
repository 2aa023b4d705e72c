"""A failover in the middle of a read or a write: what replicated of a claim or a lock (its
generation, its token) must not let an older state be published on the promoted replica.
(Found by an independent review; each test failed before generations and locks carried the
epoch they were taken under.)"""

from __future__ import annotations

import time

import pytest

from cartsvc import image, service
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reader_that_loaded_before_a_lost_write_does_not_fill_after_the_failover(products, pair):
    cart = make_cart({"SKU-1": 1})
    assert image.evict(cart.id)  # not in memory: the next read claims it
    image._states.clear()
    acked = {}

    def during_fill(cart_id, cart):
        pair.in_sync()  # the reader's claim (its generation) reached the replica
        pair.cut()
        acked["cart"] = service.add_line(cart_id, "SKU-2", 1)  # a new generation, lost
        pair.promote()

    image.HOOKS["before_fill"] = during_fill
    assert service.get_cart(cart.id).version == cart.version  # the slow reader
    image.HOOKS.clear()
    image._states.clear()
    assert service.get_cart(cart.id).version == acked["cart"].version


def test_a_miss_on_an_evicted_payload_is_not_filled_older_after_the_failover(products, pair):
    cart = make_cart({"SKU-1": 1})  # the generation is the last writer's token, replicated
    pair.in_sync()
    pair.primary.delete(pair.store.data_key(cart.id))  # the payload evicted on its own
    image._states.clear()
    acked = {}

    def during_fill(cart_id, cart):
        pair.cut()
        acked["cart"] = service.add_line(cart_id, "SKU-2", 1)
        pair.promote()

    image.HOOKS["before_fill"] = during_fill
    assert service.get_cart(cart.id).version == cart.version
    image.HOOKS.clear()
    image._states.clear()
    assert service.get_cart(cart.id).version == acked["cart"].version


def test_a_writer_whose_lock_was_taken_over_publishes_nothing_after_the_failover(
    products, pair, settings
):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "LOCK_TTL": 0.3}
    cart = make_cart({"SKU-1": 1})
    acked = {}

    def slow_writer(cart_ids, states):
        image.HOOKS.clear()
        pair.in_sync()  # the replica has this writer's lock
        pair.cut()
        time.sleep(0.4)  # this writer stalls past LOCK_TTL
        acked["cart"] = service.add_line(cart.id, "SKU-3", 1)  # takes over: acknowledged
        pair.promote()

    image.HOOKS["after_commit"] = slow_writer
    service.add_line(cart.id, "SKU-2", 1)
    image._states.clear()
    assert service.get_cart(cart.id).version == acked["cart"].version
