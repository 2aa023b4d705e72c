"""Deleting a user closes their carts through the log: rows, events and memory agree, and
no cart becomes anyone's."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.test import Client

from cartsvc import operations, service
from tests.factories import make_cart

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("needs_redis")]


class Rollback(Exception):
    pass


def users():
    return get_user_model().objects


def assert_closed_for_everyone(cart_id: str) -> None:
    state = service.get_cart(cart_id)
    assert (state.status, state.owner_id) == (service.CLOSED, None)
    assert service.history(cart_id)[-1]["type"] == "owner_deleted"
    other, _ = users().get_or_create(username="someone-else")
    for caller in (None, other.pk):
        with pytest.raises(service.NotFound):
            service.get_cart(cart_id, as_user=caller)
        with pytest.raises(service.NotFound):
            service.add_line(cart_id, "SKU-1", 1, as_user=caller)
        with pytest.raises(service.NotFound):
            service.history(cart_id, as_user=caller)


def assert_rows_events_memory_agree(*cart_ids: str) -> None:
    assert list(operations.verify_carts(list(cart_ids))) == []
    for cart_id in cart_ids:
        memory = operations.memory_image(cart_id)
        assert memory is None or memory == operations.rows_state(cart_id)


def test_deleting_a_user_closes_every_cart_of_theirs_in_memory_and_rows(products):
    alice = users().create_user("alice-del")
    order = make_cart({"SKU-1": 2}, owner_id=alice.pk)
    service.checkout(order.id)
    cart = make_cart({"SKU-2": 1, "SKU-3": 1}, owner_id=alice.pk)
    service.save_for_later(cart.id, 2)
    assert service.get_cart(cart.id).owner_id == alice.pk  # in memory, owned

    alice.delete()

    for cart_id in (order.id, cart.id):
        assert_closed_for_everyone(cart_id)
    assert operations.memory_image(cart.id) == operations.rows_state(cart.id)  # published
    assert_rows_events_memory_agree(order.id, cart.id)
    # Evicted and read again from the database: still no one's.
    operations.evict_cart(cart.id)
    assert_closed_for_everyone(cart.id)


def test_a_visitors_cart_and_other_users_carts_are_left_alone(products):
    alice, bob = users().create_user("alice-del2"), users().create_user("bob-del2")
    visitor = make_cart({"SKU-1": 1})
    bobs = make_cart({"SKU-1": 1}, owner_id=bob.pk)
    alice.delete()
    assert service.get_cart(visitor.id, as_user=None) == visitor
    assert service.get_cart(bobs.id, as_user=bob.pk).version == bobs.version


def test_a_bulk_delete_closes_the_carts_of_every_user_it_deletes(products):
    alice, bob = users().create_user("alice-bulk"), users().create_user("bob-bulk")
    carts = [make_cart({"SKU-1": 1}, owner_id=who.pk) for who in (alice, bob)]
    users().filter(username__endswith="-bulk").delete()
    for cart in carts:
        assert_closed_for_everyone(cart.id)
    assert_rows_events_memory_agree(*(cart.id for cart in carts))


def test_deleting_a_user_in_the_admin_closes_their_cart(products):
    root = users().create_superuser("root-del", email="root@shop.example", password="pw-2026")
    alice = users().create_user("alice-admin")
    cart = make_cart({"SKU-1": 1}, owner_id=alice.pk)
    client = Client()
    client.force_login(root)
    page = client.get(f"/admin/auth/user/{alice.pk}/delete/")
    assert page.status_code == 200 and b"protected" not in page.content.lower()
    answer = client.post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert not users().filter(pk=alice.pk).exists()
    assert_closed_for_everyone(cart.id)
    assert_rows_events_memory_agree(cart.id)


def test_a_deletion_that_bypasses_the_orm_fails_and_changes_nothing(products):
    alice = users().create_user("alice-raw")
    cart = make_cart({"SKU-1": 1}, owner_id=alice.pk)
    table = get_user_model()._meta.db_table
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [alice.pk])
        connection.check_constraints()  # what the commit would check (deferred keys)
    assert users().filter(pk=alice.pk).exists()
    assert service.get_cart(cart.id, as_user=alice.pk) == cart


def test_a_deletion_rolled_back_leaves_the_carts_open_and_the_cache_not_ahead(products):
    alice = users().create_user("alice-undo")
    pk = alice.pk
    cart = make_cart({"SKU-1": 1}, owner_id=pk)
    assert service.get_cart(cart.id) == cart  # in memory
    with pytest.raises(Rollback), transaction.atomic():
        alice.delete()
        assert service.get_cart(cart.id).status == service.CLOSED  # as this transaction sees
        raise Rollback
    assert users().filter(pk=pk).exists()
    assert service.get_cart(cart.id, as_user=pk) == cart
    assert operations.memory_image(cart.id) in (None, cart)
    assert_rows_events_memory_agree(cart.id)


def test_no_cart_is_opened_for_a_user_who_is_gone(products):
    alice = users().create_user("alice-gone")
    pk = alice.pk
    alice.delete()
    with pytest.raises(service.NotFound):
        service.cart_for_user(pk, create=True)


def test_closing_again_closes_nothing(products):
    alice = users().create_user("alice-again")
    make_cart({"SKU-1": 1}, owner_id=alice.pk)
    assert service.close_user_carts(alice.pk) == 1
    assert service.close_user_carts(alice.pk) == 0
