"""Passivation and abandonment, called directly (the Celery and command paths run the same)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from cartsvc import image, lifecycle, service, subscriptions
from cartsvc.models import Cart, CartEvent, CartSnapshot
from cartsvc.signals import cart_abandoned
from tests.factories import make_cart

pytestmark = [pytest.mark.contract, pytest.mark.django_db]


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def test_an_idle_cart_leaves_memory_with_a_snapshot_and_reads_back_identically(products, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "IDLE_TIMEOUT": 60, "SNAPSHOT_EVERY": 50}
    cart = make_cart({"SKU-1": 2, "SKU-2": 1})
    evicted, snapshots = lifecycle.passivate_idle(later(61))
    assert (evicted, snapshots) == (1, 1)
    assert image.peek([cart.id]) == {}
    assert CartSnapshot.objects.filter(cart_id=cart.id, version=cart.version).exists()
    assert service.get_cart(cart.id) == cart
    # Again: nothing new since the snapshot, so no second one.
    assert lifecycle.passivate_idle(later(61)) == (1, 0)


def test_a_recently_used_cart_stays(products, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "IDLE_TIMEOUT": 60}
    cart = make_cart({"SKU-1": 1})
    assert lifecycle.passivate_idle(later(30)) == (0, 0)
    assert image.peek([cart.id])[cart.id] == cart


def test_read_activity_is_folded_into_last_activity_at(products, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "IDLE_TIMEOUT": 60}
    cart = make_cart({"SKU-1": 1})
    Cart.objects.filter(id=cart.id).update(last_activity_at=timezone.now() - timedelta(days=3))
    lifecycle.passivate_idle(later(61))
    assert Cart.objects.get(id=cart.id).last_activity_at > timezone.now() - timedelta(minutes=1)


@pytest.mark.django_db(transaction=True)  # a drain hands out committed events only
def test_an_abandoned_cart_expires_once_and_the_signal_fires_once(products, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "ABANDON_AFTER": 3600}
    cart = make_cart({"SKU-1": 1})
    image.clear()  # no read activity in memory
    received = []
    cart_abandoned.connect(lambda sender, cart, **kw: received.append(cart.id), weak=False)
    try:
        assert lifecycle.expire_abandoned(later(3601)) == 1
        assert lifecycle.expire_abandoned(later(3601)) == 0
        assert received == []  # sent by the subscription, from the event log
        subscriptions.drain("cartsvc.abandoned")
        subscriptions.drain("cartsvc.abandoned")
    finally:
        cart_abandoned.receivers.clear()
    assert received == [cart.id]
    assert service.get_cart(cart.id).status == "expired"


def test_a_cart_read_recently_is_not_abandoned(products, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "ABANDON_AFTER": 3600}
    cart = make_cart({"SKU-1": 1})
    Cart.objects.filter(id=cart.id).update(last_activity_at=timezone.now() - timedelta(days=3))
    image.clear()
    service.get_cart(cart.id)  # a read: recorded in memory only
    assert lifecycle.expire_abandoned(timezone.now() + timedelta(seconds=1)) == 0
    assert service.get_cart(cart.id).status == "open"


def test_a_cart_changed_after_the_sweep_looked_is_not_expired(products):
    cart = make_cart({"SKU-1": 1})
    result = service.expire_cart(cart.id, idle_since=timezone.now() - timedelta(hours=1))
    assert result.status == "open" and result.version == cart.version


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_expire_each_cart_once(products, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "ABANDON_AFTER": 3600, "IDLE_TIMEOUT": 60}
    carts = [make_cart({"SKU-1": 1}) for _ in range(6)]
    image.clear()
    go = threading.Barrier(2)
    totals = []

    def sweep():
        go.wait()
        try:
            totals.append(lifecycle.sweep(later(3601)).expired)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(totals) == 6
    for cart in carts:
        types = list(CartEvent.objects.filter(cart_id=cart.id).values_list("type", flat=True))
        assert types.count("cart_expired") == 1
