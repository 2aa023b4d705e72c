"""Commands run inside the caller's own transaction publish to the cache only once it
commits: the cache is never ahead of the database, even when that transaction rolls back."""

from __future__ import annotations

import logging
import threading

import orjson
import pytest
from django.db import connection, transaction
from django.test import Client

from cartsvc import image, operations, service, store
from tests.api.conftest import call
from tests.factories import make_cart

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("needs_redis")]


class Rollback(Exception):
    pass


def read_elsewhere(cart_id: str) -> service.Cart:
    """The cart as another request (thread, connection) sees it."""
    found: list[service.Cart] = []

    def read() -> None:
        try:
            found.append(service.get_cart(cart_id))
        finally:
            connection.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(10)
    return found[0]


def control_hash(cart_id: str) -> dict[bytes, bytes]:
    cache = image.image_store()
    return cache.client.hgetall(cache.key(cart_id))


def test_a_rolled_back_command_never_reaches_the_cache(products):
    cart = make_cart({"SKU-1": 1})
    assert service.get_cart(cart.id) == cart  # in memory at v2
    with pytest.raises(Rollback), transaction.atomic():
        inside = service.add_line(cart.id, "SKU-2", 1)
        assert service.get_cart(cart.id) == inside  # the transaction sees its own write
        assert read_elsewhere(cart.id) == cart  # nobody else does
        assert operations.memory_image(cart.id) in (None, cart)
        raise Rollback
    assert service.get_cart(cart.id) == cart
    assert operations.memory_image(cart.id) in (None, cart)
    assert list(operations.verify_carts([cart.id])) == []


def test_a_committed_command_is_published_when_the_transaction_commits(products):
    cart = make_cart({"SKU-1": 1})
    with transaction.atomic():
        after = service.add_line(cart.id, "SKU-2", 1)
        assert b"m" in control_hash(cart.id)  # still locked: readers use the database
    assert operations.memory_image(cart.id) == after
    assert b"m" not in control_hash(cart.id)  # and released
    assert service.get_cart(cart.id) == after


def test_commands_on_one_cart_in_one_transaction_do_not_wait_for_each_other(products, caplog):
    cart = make_cart({"SKU-1": 1})
    caplog.set_level(logging.WARNING, logger="cartsvc")
    with transaction.atomic():
        service.add_line(cart.id, "SKU-2", 1)
        service.set_quantity(cart.id, 1, 3)
        last = service.add_line(cart.id, "SKU-3", 2)
    assert last.version == cart.version + 3
    assert [line.quantity for line in last.lines] == [3, 1, 2]
    assert "timed out" not in caplog.text  # no lock wait: the transaction's own lock
    assert store.dirty_marks() == []
    # Published by the first command's callback, dropped by the later ones' (the next read
    # rehydrates it): never a state that might not be the last.
    assert operations.memory_image(cart.id) in (None, last)
    assert service.get_cart(cart.id) == last == operations.rows_state(cart.id)


def test_after_commit_callbacks_wait_for_the_callers_commit(products):
    expired: list[str] = []
    rolled = make_cart({"SKU-1": 1})
    with pytest.raises(Rollback), transaction.atomic():
        service.expire_cart(rolled.id, on_expired=lambda cart: expired.append(cart.id))
        assert expired == []
        raise Rollback
    assert expired == [] and service.get_cart(rolled.id).status == service.OPEN
    kept = make_cart({"SKU-1": 1})
    with transaction.atomic():
        service.expire_cart(kept.id, on_expired=lambda cart: expired.append(cart.id))
        assert expired == []
    assert expired == [kept.id]


def test_the_api_under_atomic_requests(products, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    client = Client()
    opened = call(client, "POST", "carts")
    assert opened.status_code == 201, opened.content
    cart_id = orjson.loads(opened.content)["id"]
    for sku in ("SKU-1", "SKU-2", "SKU-1"):
        answer = call(client, "POST", f"carts/{cart_id}/lines", {"sku": sku, "quantity": 1})
        assert answer.status_code == 200, answer.content
    body = orjson.loads(call(client, "GET", f"carts/{cart_id}").content)
    assert body["version"] == 4 and [line["quantity"] for line in body["lines"]] == [2, 1]
    assert operations.memory_image(cart_id) == operations.rows_state(cart_id)
    assert b"m" not in control_hash(cart_id)


def test_a_savepoint_rolled_back_inside_the_transaction_is_never_published(products):
    cart = make_cart({"SKU-1": 1})
    with transaction.atomic():
        kept = service.add_line(cart.id, "SKU-2", 1)
        with pytest.raises(Rollback), transaction.atomic():
            service.add_line(cart.id, "SKU-3", 1)  # v+2, rolled back with its savepoint
            raise Rollback
        # A third command reads the cart as the transaction has it, not the rolled-back one.
        last = service.set_quantity(cart.id, 1, 4)
    assert last.version == kept.version + 1
    assert [line.sku for line in last.lines] == ["SKU-1", "SKU-2"]
    assert operations.memory_image(cart.id) in (None, last)
    assert service.get_cart(cart.id) == last == operations.rows_state(cart.id)
    assert list(operations.verify_carts([cart.id])) == []
