"""Saved-for-later items outlive the cart they were saved in: checkout and login merge."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from carts.models import Product
from cartsvc import image, operations, service, store
from cartsvc.models import Cart as CartRow
from cartsvc.models import CartEvent
from tests.factories import make_cart

pytestmark = [pytest.mark.contract, pytest.mark.django_db]


def saving(lines: dict[str, int], saved: list[str], **open_kwargs) -> service.Cart:
    """A cart with `lines`, the ones whose sku is in `saved` set aside for later."""
    cart = make_cart(lines, **open_kwargs)
    for line in [line for line in cart.lines if line.sku in saved]:
        cart = service.save_for_later(cart.id, line.id)
    return cart


def event_types(cart_id: str) -> list[str]:
    return list(
        CartEvent.objects.filter(cart_id=cart_id).order_by("version").values_list("type", flat=True)
    )


def assert_consistent(*cart_ids: str) -> None:
    """Rows = events = memory for each cart (what verify_carts checks)."""
    assert list(operations.verify_carts(list(cart_ids))) == []
    for cart_id in cart_ids:
        assert store.load_from_rows(cart_id) == store.load_from_events(cart_id)


def test_checkout_carries_saved_items_to_the_visitors_next_cart(products):
    cart = saving({"SKU-1": 2, "SKU-2": 3}, ["SKU-2"])
    saved = cart.saved[0]

    order = service.checkout(cart.id)

    assert order.status == service.CHECKED_OUT and order.saved == ()
    assert [line.sku for line in order.lines] == ["SKU-1"]
    after = service.next_cart(order.id)
    assert after is not None and after.id != order.id
    assert after.status == service.OPEN and after.owner_id is None and after.lines == ()
    (kept,) = after.saved
    assert (kept.sku, kept.name, kept.options, kept.quantity, kept.unit_price) == (
        saved.sku,
        saved.name,
        saved.options,
        saved.quantity,
        saved.unit_price,
    )
    # Through the log: the order says where they went, the next cart where they came from.
    assert event_types(order.id)[-2:] == ["saved_items_carried_out", "checked_out"]
    assert event_types(after.id) == ["cart_opened", "saved_items_carried_in"]
    assert service.history(after.id)[-1]["data"]["from_cart_id"] == order.id
    # The saved item was not bought: its stock is untouched.
    assert Product.objects.get(sku="SKU-2").stock == 100
    assert Product.objects.get(sku="SKU-1").stock == 98
    assert_consistent(order.id, after.id)
    assert image.peek([after.id])[after.id] == after  # published like any commit


def test_a_customers_saved_items_are_in_their_next_cart(products):
    user = get_user_model().objects.create_user("saver", password="pw")
    cart = saving({"SKU-1": 1, "SKU-3": 1}, ["SKU-3"], owner_id=user.id)

    service.checkout(cart.id, as_user=user.id)

    following = service.cart_for_user(user.id)
    assert following is not None and following.id != cart.id
    assert following.owner_id == user.id
    assert [line.sku for line in following.saved] == ["SKU-3"]
    assert service.next_cart(cart.id, as_user=user.id) == following
    # Another shopper can not follow the order to the next cart.
    with pytest.raises(service.NotFound):
        service.next_cart(cart.id, as_user=user.id + 1)
    # Moved back and bought later, like any saved item.
    following = service.move_to_cart(following.id, following.saved[0].id, as_user=user.id)
    assert service.checkout(following.id, as_user=user.id).item_count == 1


def test_checkout_without_saved_items_opens_no_cart(products):
    cart = make_cart({"SKU-1": 1})
    before = CartRow.objects.count()
    service.checkout(cart.id)
    assert CartRow.objects.count() == before
    assert service.next_cart(cart.id) is None


def test_a_refused_checkout_leaves_the_saved_items_where_they_were(products):
    cart = saving({"SKU-1": 2, "SKU-2": 1}, ["SKU-2"])
    Product.objects.filter(sku="SKU-1").update(stock=1)
    before = CartRow.objects.count()
    with pytest.raises(service.InsufficientStock):
        service.checkout(cart.id)
    assert CartRow.objects.count() == before
    assert service.get_cart(cart.id) == cart
    assert_consistent(cart.id)


def test_a_carried_item_is_repriced_like_any_saved_item(products):
    cart = saving({"SKU-1": 1, "SKU-2": 1}, ["SKU-2"])
    Product.objects.filter(sku="SKU-2").update(price=Decimal("99.00"))
    order = service.checkout(cart.id)
    after = service.next_cart(order.id)
    assert after is not None and after.saved[0].unit_price == Decimal("5.50")
    # The next cart's view brings it to today's price, with a notice.
    after, changes = service.refresh_prices(after.id)
    assert after.saved[0].unit_price == Decimal("99.00") and len(changes) == 1
    assert_consistent(order.id, after.id)


def test_an_item_saved_while_the_checkout_reads_the_catalog_is_carried_too(products, monkeypatch):
    cart = make_cart({"SKU-1": 1, "SKU-2": 1})
    real = service.catalog

    class SavingMeanwhile:
        """The catalog, with another request saving SKU-2 just as checkout asks for prices."""

        def __getattr__(self, name):
            return getattr(real(), name)

        def products(self, skus):
            line = service.get_cart(cart.id).line_for("SKU-2", ())
            if line is not None:
                service.save_for_later(cart.id, line.id)
            return real().products(skus)

    monkeypatch.setattr(service, "catalog", SavingMeanwhile)
    order = service.checkout(cart.id)
    monkeypatch.undo()

    after = service.next_cart(order.id)
    assert order.saved == () and [line.sku for line in order.lines] == ["SKU-1"]
    assert after is not None and [line.sku for line in after.saved] == ["SKU-2"]
    assert_consistent(order.id, after.id)


def test_a_retried_checkout_carries_once(products):
    cart = saving({"SKU-1": 1, "SKU-2": 1}, ["SKU-2"])
    key = service.idempotency("test", "checkout-1", {"cart": cart.id})
    first = service.checkout(cart.id, idempotency=key)
    before = CartRow.objects.count()
    again = service.checkout(cart.id, idempotency=key)
    assert again == first and CartRow.objects.count() == before
    assert service.next_cart(cart.id) is not None


def test_if_match_names_the_checked_out_cart(products):
    cart = saving({"SKU-1": 1, "SKU-2": 1}, ["SKU-2"])
    with pytest.raises(service.VersionConflict):
        service.checkout(cart.id, expected_version=cart.version - 1)
    order = service.checkout(cart.id, expected_version=cart.version)
    assert order.version == cart.version + 2  # carried out, checked out


def test_a_login_merge_brings_the_visitors_saved_items(products):
    user = get_user_model().objects.create_user("merger", password="pw")
    mine = saving({"SKU-1": 1, "SKU-3": 1}, ["SKU-3"], owner_id=user.id)
    visitor = saving({"SKU-1": 1, "SKU-3": 1, "SKU-4": 2}, ["SKU-3", "SKU-4"])

    merged = service.merge_on_login(visitor.id, user.id)

    assert merged is not None and merged.id == mine.id
    assert merged.lines[0].quantity == 2
    # SKU-3 was saved in both: one entry, the quantities added; SKU-4 came along.
    assert [(line.sku, line.quantity) for line in merged.saved] == [("SKU-3", 2), ("SKU-4", 2)]
    assert len({line.id for line in (*merged.lines, *merged.saved)}) == 3
    assert_consistent(mine.id, visitor.id)


def test_two_saved_entries_of_one_item_both_survive_checkout(products):
    cart = make_cart({"SKU-1": 1, "SKU-2": 2})
    cart = service.save_for_later(cart.id, cart.line_for("SKU-2", ()).id)
    cart = service.add_line(cart.id, "SKU-2", 3)
    cart = service.save_for_later(cart.id, cart.line_for("SKU-2", ()).id)
    assert [line.quantity for line in cart.saved] == [2, 3]
    order = service.checkout(cart.id)
    following = service.next_cart(order.id)
    assert following is not None
    assert [(line.sku, line.quantity) for line in following.saved] == [("SKU-2", 5)]
    assert order.saved == ()
    assert_consistent(order.id, following.id)


def test_saved_items_that_do_not_fit_the_next_cart_stay_on_the_orders_record(products, settings):
    cart = saving({"SKU-1": 1, "SKU-2": 1, "SKU-3": 1, "SKU-4": 1}, ["SKU-2", "SKU-3", "SKU-4"])
    settings.CARTIMAGE = {**settings.CARTIMAGE, "MAX_LINES": 2}  # lowered since they were saved
    order = service.checkout(cart.id)
    following = service.next_cart(order.id)
    assert following is not None
    assert [line.sku for line in following.saved] == ["SKU-2", "SKU-3"]
    # Nothing vanishes: what was not carried is still on the order, for the record.
    assert [line.sku for line in order.saved] == ["SKU-4"]
    assert_consistent(order.id, following.id)


def test_a_login_merge_adds_the_quantities_of_an_item_saved_in_both(products):
    user = get_user_model().objects.create_user("both", password="pw")
    mine = saving({"SKU-1": 1, "SKU-3": 2}, ["SKU-3"], owner_id=user.id)
    visitor = saving({"SKU-3": 4}, ["SKU-3"])
    merged = service.merge_on_login(visitor.id, user.id)
    assert merged is not None
    assert [(line.sku, line.quantity) for line in merged.saved] == [("SKU-3", 6)]
    assert_consistent(mine.id, visitor.id)
