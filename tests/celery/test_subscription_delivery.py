"""A broker that is down delays the delivery of events to subscribers, never a command."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from cartsvc.models import CartEvent, Subscription
from tests import children, procs
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


def test_with_the_broker_down_commands_go_on_and_delivery_follows_its_return(
    products, celery_procs, broker, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("the worker needs the PostgreSQL test database")
    cart = make_cart({"SKU-1": 1})
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{broker.port}/0")
    broker.kill()  # down before the commands
    config = procs.child_settings(SUBSCRIPTION_NUDGE=True)
    go, results = procs.new_event(), procs.new_queue()
    shopper = procs.start(children.add_with_nudges, config, cart.id, "SKU-2", 5, go, results)
    added, errors = results.get(timeout=120)
    assert added == "added"

    broker.start()  # back, on the same port
    worker = celery_procs.worker()
    celery_procs.ready(worker)
    go.set()
    senders, new_errors = results.get(timeout=120)
    shopper.join(30)
    # Every nudge was sent by the nudge thread, never by the thread running the command.
    assert senders and set(senders) == {"cartsvc-nudge"}
    assert errors >= 1 and new_errors == 0
    last = CartEvent.objects.order_by("-id").values_list("id", flat=True).first()
    deadline = time.monotonic() + 60
    while Subscription.objects.get(name="cartsvc.abandoned").last_id != last:
        assert time.monotonic() < deadline, "the worker did not drain after the nudge"
        time.sleep(0.1)
