"""Broker down: requests do not wait on it; once it is back, the sweeps catch up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from kombu.exceptions import OperationalError

from cartsvc import image, service
from cartsvc.models import Cart, CartEvent
from cartsvc.tasks import passivate_idle_carts
from config.celery import app
from tests.celery.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_broker_killed_commands_go_on_and_the_sweep_handles_the_cart_after(
    products, broker, celery_procs
):
    env = {"CART_IDLE_TIMEOUT": 2, "CART_ABANDON_AFTER": 3}
    worker, beat = celery_procs.worker(**env), celery_procs.beat(**env)
    celery_procs.ready(worker, beat)
    wait_for(lambda: worker.succeeded("passivate_idle_carts"), 10, "a first sweep")

    broker.kill()
    cart, took = timed(lambda: service.open_cart())
    assert took < 1
    for sku in ("SKU-1", "SKU-2", "SKU-1"):
        cart, took = timed(lambda sku=sku, cart_id=cart.id: service.add_line(cart_id, sku, 1))
        assert took < 1, f"add_line took {took:.2f} s with the broker down"
    assert cart.version == 4

    # Publishing gives up quickly too (the short retry policy and connect timeout).
    with app.connection_for_write(celery_procs.broker_url) as conn:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            passivate_idle_carts.apply_async(connection=conn)
        assert time.monotonic() - started < 2

    # Past both timeouts, and no sweep can reach the worker.
    time.sleep(4)
    assert Cart.objects.get(id=cart.id).status == "open"
    assert image.peek([cart.id])[cart.id] == cart
    beat.check_alive()
    worker.check_alive()

    broker.start()  # same port, empty (no persistence)
    wait_for(
        lambda: Cart.objects.get(id=cart.id).status == "expired",
        30,
        "the sweep to expire the cart after the broker came back",
        every=0.2,
    )
    wait_for(lambda: cart.id not in image.peek([cart.id]), 10, "the cart to be passivated")
    assert CartEvent.objects.filter(cart_id=cart.id, type="cart_expired").count() == 1
    assert service.get_cart(cart.id).status == "expired"
