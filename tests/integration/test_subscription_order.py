"""PostgreSQL: a slow transaction never makes a subscriber skip an event, and a cart's events
come in version order even when an older transaction writes the later version."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from cartsvc import service, subscriptions
from cartsvc.models import CartEvent
from tests import children, procs, subscribers
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recording(settings):
    if connection.vendor != "postgresql":
        pytest.skip("transaction ids and snapshots: PostgreSQL")
    subscribers.RECORDED.clear()
    settings.CARTIMAGE = {
        **settings.CARTIMAGE,
        "SUBSCRIBERS": {"probe": "tests.subscribers.record"},
    }
    yield subscribers.RECORDED
    subscribers.RECORDED.clear()


class HeldTransaction:
    """A thread with its own connection running commands in one transaction it holds open
    until `commit()`."""

    def __init__(self) -> None:
        self.steps: list = []
        self.ready = threading.Event()
        self.go_on = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self, first, then=None) -> None:
        def body() -> None:
            try:
                with transaction.atomic():
                    first()
                    self.ready.set()
                    self.go_on.wait(60)
                    if then is not None:
                        then()
            except BaseException as exc:  # reported by commit()
                self.error = exc
                self.ready.set()
            finally:
                connection.close()
                self.done.set()

        threading.Thread(target=body, daemon=True).start()
        assert self.ready.wait(60)

    def commit(self) -> None:
        self.go_on.set()
        assert self.done.wait(60)
        assert self.error is None, self.error


def every_event() -> list[tuple[str, int, int]]:
    rows = CartEvent.objects.values_list("cart_id", "version", "id")
    return sorted((str(c), v, i) for c, v, i in rows)


def in_cart_order(delivered: list[tuple[str, int, int]]) -> bool:
    last: dict[str, int] = {}
    for cart_id, version, _id in delivered:
        if version <= last.get(cart_id, 0):
            return False
        last[cart_id] = version
    return True


def test_a_transaction_held_open_while_others_commit_loses_no_event(products, recording):
    carts = [make_cart({"SKU-1": 1}) for _ in range(5)]
    subscriptions.drain("probe")
    held = HeldTransaction()
    held.run(lambda: service.add_line(carts[0].id, "SKU-2", 1))  # its event: a low id
    config = procs.child_settings()
    go, results = procs.new_event(), procs.new_queue()
    workers = [
        procs.start(children.add_many, config, cart.id, "SKU-3", 8, go, results)
        for cart in carts[1:]
    ]
    go.set()
    assert procs.collect(workers, results) == [[]] * 4
    subscriptions.drain("probe")  # the held transaction's event is not committed yet
    held.commit()
    subscriptions.drain("probe")

    assert sorted(recording) == every_event()  # each event once, none skipped
    assert len(recording) == len(set(recording))
    assert in_cart_order(recording)


def test_an_older_transaction_writing_the_later_version_comes_after_it(products, recording):
    early, cart = make_cart({"SKU-1": 1}), make_cart({"SKU-1": 1})
    held = HeldTransaction()
    # The held transaction gets its transaction id now, writing another cart ...
    held.run(
        lambda: service.add_line(early.id, "SKU-2", 1),
        then=lambda: service.add_line(cart.id, "SKU-4", 1),  # ... and this cart's v+2 later
    )
    service.add_line(cart.id, "SKU-3", 1)  # v+1, by a newer transaction, committed first
    held.commit()
    subscriptions.drain("probe")

    mine = [r for r in recording if r[0] == cart.id]
    assert [v for _c, v, _i in mine] == list(range(1, cart.version + 3))
    assert sorted(recording) == every_event() and in_cart_order(recording)
