"""The tasks in-process (eager): thin, idempotent when delivered twice; the app's settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cartsvc import image
from cartsvc.models import Cart as CartRow
from cartsvc.models import CartEvent, CartSnapshot
from cartsvc.service import Cart
from cartsvc.signals import cart_abandoned
from cartsvc.tasks import (
    drain_subscriptions,
    expire_abandoned_carts,
    passivate_idle_carts,
    sweep_carts,
)
from config.celery import app
from tests.clock import shift_clock
from tests.factories import make_cart

pytestmark = pytest.mark.django_db

TASKS = {
    "cartsvc.tasks.passivate_idle_carts",
    "cartsvc.tasks.expire_abandoned_carts",
    "cartsvc.tasks.drain_subscriptions",
    "cartsvc.tasks.sweep_carts",
    "cartsvc.tasks.send_webhooks",
}


@pytest.fixture
def abandoned_and_idle(products, settings, monkeypatch) -> tuple[Cart, Cart]:
    """One cart untouched for an hour (not in memory), one in memory and idle."""
    settings.CARTIMAGE = {**settings.CARTIMAGE, "IDLE_TIMEOUT": 1, "ABANDON_AFTER": 600}
    shift_clock(monkeypatch, -3600)  # untouched for longer than ABANDON_AFTER
    abandoned = make_cart({"SKU-1": 1})
    image.clear()  # no read activity in memory
    shift_clock(monkeypatch, 0)
    idle = make_cart({"SKU-2": 1})
    shift_clock(monkeypatch, 60)  # the tasks run idle for longer than IDLE_TIMEOUT
    return abandoned, idle


@pytest.fixture
def abandoned_signals() -> Iterator[list[str]]:
    received: list[str] = []

    def receiver(sender: object, cart: Cart, **kwargs: object) -> None:
        received.append(cart.id)

    cart_abandoned.connect(receiver)
    yield received
    cart_abandoned.disconnect(receiver)


def test_passivation_delivered_twice_passivates_once(abandoned_and_idle):
    _abandoned, idle = abandoned_and_idle
    assert passivate_idle_carts.apply().get() == {"passivated": 1, "snapshots": 1}
    assert passivate_idle_carts.apply().get() == {"passivated": 0, "snapshots": 0}
    assert idle.id not in image.peek([idle.id])
    assert CartSnapshot.objects.filter(cart_id=idle.id).count() == 1


@pytest.mark.django_db(transaction=True)  # a drain hands out committed events only
def test_abandonment_delivered_twice_expires_once(abandoned_and_idle, abandoned_signals):
    abandoned, idle = abandoned_and_idle
    assert expire_abandoned_carts.apply().get() == {"expired": 1}
    assert expire_abandoned_carts.apply().get() == {"expired": 0}
    assert drain_subscriptions.apply().get()["cartsvc.abandoned"] > 0  # every event, read
    assert drain_subscriptions.apply().get()["cartsvc.abandoned"] == 0
    assert abandoned_signals == [abandoned.id]
    types = list(CartEvent.objects.filter(cart_id=abandoned.id).values_list("type", flat=True))
    assert types.count("cart_expired") == 1
    assert CartRow.objects.get(id=idle.id).status == "open"


@pytest.mark.django_db(transaction=True)
def test_the_full_sweep_delivered_twice_does_its_work_once(abandoned_and_idle, abandoned_signals):
    abandoned, _idle = abandoned_and_idle
    first = sweep_carts.apply().get()
    assert (first["passivated"], first["snapshots"], first["expired"]) == (1, 1, 1)
    again = sweep_carts.apply().get()
    assert again["expired"] == 0
    drain_subscriptions.apply().get()
    drain_subscriptions.apply().get()
    assert abandoned_signals == [abandoned.id]
    assert CartEvent.objects.filter(cart_id=abandoned.id, type="cart_expired").count() == 1


def test_the_app_finds_the_tasks_and_the_schedule_names_only_them(settings):
    assert set(app.tasks) >= TASKS
    schedule = app.conf.beat_schedule
    assert {entry["task"] for entry in schedule.values()} <= TASKS
    assert schedule["cart-passivation"]["schedule"] == settings.CART_SWEEP_EVERY
    assert schedule["cart-abandonment"]["schedule"] == settings.CART_ABANDON_SWEEP_EVERY
    assert schedule["cart-webhooks"]["task"] == "cartsvc.tasks.send_webhooks"
    assert schedule["cart-webhooks"]["schedule"] == settings.CART_WEBHOOKS_EVERY
    for entry in schedule.values():
        # A tick the worker did not get to before the next one is dropped, not piled up.
        assert 0 < entry["options"]["expires"] <= entry["schedule"]


def test_json_only_no_results_late_acks_and_time_limits():
    conf = app.conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]
    assert conf.event_serializer == "json"
    assert conf.task_ignore_result is True and not conf.result_backend
    assert conf.task_acks_late is True and conf.worker_prefetch_multiplier == 1
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    # The default scheduler persists its state with shelve, which is pickle.
    assert conf.beat_scheduler == "celery.beat:Scheduler"
    # Publishing gives up within about a second instead of retrying for long.
    policy = conf.task_publish_retry_policy
    assert policy["max_retries"] <= 2 and policy["interval_max"] <= 0.5
    assert conf.broker_connection_timeout <= 1
