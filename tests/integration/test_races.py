"""Read-through races, forced with hooks (no sleeps), and single-flight rehydration."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from cartsvc import image, metrics, service
from tests.factories import make_cart

pytestmark = [pytest.mark.contract, pytest.mark.django_db(transaction=True)]


def test_a_reader_that_rehydrated_v5_can_not_overwrite_v6(products):
    cart = make_cart({"SKU-1": 1, "SKU-2": 1})
    assert image.evict(cart.id)
    newer = {}

    def writer_commits_first(cart_id, cart):
        image.HOOKS.pop("before_fill")
        newer["cart"] = service.add_line(cart_id, "SKU-1", 1)

    image.HOOKS["before_fill"] = writer_commits_first
    seen_by_reader = service.get_cart(cart.id)
    assert seen_by_reader == cart  # the read started before the write: old is fine
    assert newer["cart"].version == cart.version + 1
    assert image.peek([cart.id]) == {cart.id: newer["cart"]}
    assert service.get_cart(cart.id) == newer["cart"]


def test_a_reader_can_not_fill_while_a_write_is_in_flight(products):
    cart = make_cart({"SKU-1": 1})
    assert image.evict(cart.id)
    inside = {}

    def read_during_write(cart_ids, states):
        image.HOOKS.pop("after_commit")
        # The write has committed but not yet published: a reader must see the commit
        # (from the database) and must not fill the entry with anything.
        inside["read"] = service.get_cart(cart.id)
        inside["cached"] = image.peek([cart.id])

    image.HOOKS["after_commit"] = read_during_write
    written = service.add_line(cart.id, "SKU-1", 1)
    assert inside["read"] == written
    assert inside["cached"] == {}
    assert service.get_cart(cart.id) == written


def test_a_reader_that_loaded_before_an_eviction_can_not_fill_after_it(products):
    cart = make_cart({"SKU-1": 1})
    assert image.evict(cart.id)

    def evict_and_write(cart_id, cart):
        image.HOOKS.pop("before_fill")
        assert image.evict(cart_id) is False  # nothing cached yet, only the claim
        service.add_line(cart_id, "SKU-1", 1)
        image.evict(cart_id)

    image.HOOKS["before_fill"] = evict_and_write
    service.get_cart(cart.id)
    assert image.peek([cart.id]) == {}
    assert service.get_cart(cart.id).version == cart.version + 1


def test_many_readers_of_one_cold_cart_rehydrate_it_once(products):
    cart = make_cart({"SKU-1": 1, "SKU-2": 3})
    assert image.evict(cart.id)
    metrics.reset()
    image.HOOKS["before_fill"] = lambda **_: time.sleep(0.05)  # widen the window
    go = threading.Barrier(16)
    versions = []

    def read():
        go.wait()
        try:
            versions.append(service.get_cart(cart.id).version)
        finally:
            connection.close()

    threads = [threading.Thread(target=read) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert versions == [cart.version] * 16
    assert metrics.value("rehydrations", source="rows") == 1


def test_a_cache_restart_under_load_renews_the_lease_once(products):
    carts = [make_cart({"SKU-1": 1}) for _ in range(4)]
    image.clear()  # as after a Redis restart: no entries, no lease
    metrics.reset()
    go = threading.Barrier(16)

    def read(i):
        go.wait()
        try:
            service.get_cart(carts[i % 4].id)
        finally:
            connection.close()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.value("lease_grants") == 1
    assert metrics.value("rehydrations", source="rows") == 4
