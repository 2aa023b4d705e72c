"""Single writer per cart: concurrent commands from many OS processes all apply once."""

from __future__ import annotations

import pytest

from cartsvc import service
from cartsvc.models import CartEvent
from tests import children, procs
from tests.factories import make_product

pytestmark = [pytest.mark.contract, pytest.mark.django_db(transaction=True)]

PROCESSES, CALLS = 8, 25


def test_eight_processes_times_25_adds_on_one_cart_apply_exactly_once(settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "MAX_LINE_QUANTITY": 1000}
    make_product("SKU-HOT", stock=10_000)
    cart = service.open_cart()
    config = procs.child_settings(MAX_LINE_QUANTITY=1000)
    go, results = procs.new_event(), procs.new_queue()
    workers = [
        procs.start(children.add_many, config, cart.id, "SKU-HOT", CALLS, go, results)
        for _ in range(PROCESSES)
    ]
    go.set()
    errors = procs.collect(workers, results)
    assert errors == [[]] * PROCESSES
    final = service.get_cart(cart.id)
    assert final.lines[0].quantity == PROCESSES * CALLS
    versions = list(
        CartEvent.objects.filter(cart_id=cart.id)
        .order_by("version")
        .values_list("version", flat=True)
    )
    assert versions == list(range(1, PROCESSES * CALLS + 2))
    assert final.version == versions[-1]
