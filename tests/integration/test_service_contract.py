"""The service contract: the same tests on PostgreSQL + Redis and on the embedded default."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from carts.models import Product
from cartsvc import domain, image, service, store
from cartsvc.models import CartEvent
from tests.factories import make_cart, make_discount, make_product

pytestmark = [pytest.mark.contract, pytest.mark.django_db]


def versions(cart_id: str) -> list[int]:
    return list(
        CartEvent.objects.filter(cart_id=cart_id)
        .order_by("version")
        .values_list("version", flat=True)
    )


class TestServiceContract:
    """Every public function, its answers and its errors; the backend is the run's own."""

    def test_open_cart_starts_empty_at_version_one(self):
        cart = service.open_cart()
        assert cart.version == 1
        assert cart.status == "open"
        assert cart.lines == ()
        assert cart.subtotal == Decimal("0") and cart.total == Decimal("0")
        assert cart.item_count == 0
        assert service.get_cart(cart.id) == cart

    def test_open_cart_with_an_existing_id_is_refused(self):
        cart = service.open_cart()
        with pytest.raises(domain.InvalidInput):
            service.open_cart(cart.id)
        assert versions(cart.id) == [1]

    def test_add_line_then_merge_same_sku_and_options_in_any_order(self, products):
        cart = service.open_cart()
        cart = service.add_line(cart.id, "SKU-1", 2, {"size": "M", "color": "red"})
        cart = service.add_line(cart.id, "SKU-1", 1, {"color": "red", "size": "M"})
        assert len(cart.lines) == 1 and cart.lines[0].quantity == 3
        cart = service.add_line(cart.id, "SKU-1", 1, {"size": "L"})
        assert len(cart.lines) == 2
        assert cart.version == 4
        assert service.get_cart(cart.id) == cart

    def test_a_line_keeps_the_price_it_was_added_at(self, products):
        cart = service.add_line(service.open_cart().id, "SKU-2", 1)
        Product.objects.filter(sku="SKU-2").update(price=Decimal("99.00"))
        assert service.get_cart(cart.id).lines[0].unit_price == Decimal("5.50")

    def test_totals_are_decimal_money(self, products):
        make_discount("TEN", "percent", "10")
        cart = make_cart({"SKU-1": 3, "SKU-2": 1})
        assert cart.subtotal == Decimal("3.50") * 3 + Decimal("5.50")
        cart = service.apply_discount(cart.id, "ten")
        assert cart.discount.code == "TEN"
        assert cart.total == cart.subtotal - Decimal("1.60")
        cart = service.remove_discount(cart.id)
        assert cart.discount is None and cart.total == cart.subtotal

    def test_set_quantity_and_remove_line(self, products):
        cart = make_cart({"SKU-1": 1, "SKU-2": 1})
        first, second = (line.id for line in cart.lines)
        cart = service.set_quantity(cart.id, first, 5)
        assert cart.line(first).quantity == 5
        cart = service.set_quantity(cart.id, first, 0)
        assert cart.line(first) is None
        cart = service.remove_line(cart.id, second)
        assert cart.lines == ()
        assert service.get_cart(cart.id) == cart

    def test_checkout_freezes_the_cart(self, products):
        cart = service.checkout(make_cart({"SKU-1": 1}).id)
        assert cart.status == "checked_out"
        with pytest.raises(domain.CartNotOpen) as err:
            service.add_line(cart.id, "SKU-1", 1)
        assert err.value.code == "cart_not_open"
        assert service.get_cart(cart.id).version == cart.version

    def test_expire_is_idempotent(self, products):
        cart = make_cart({"SKU-1": 1})
        expired = service.expire_cart(cart.id)
        assert expired.status == "expired"
        assert service.expire_cart(cart.id).version == expired.version

    def test_merge_moves_lines_and_marks_the_source(self, products):
        source = make_cart({"SKU-1": 2, "SKU-3": 1})
        target = make_cart({"SKU-1": 1})
        merged = service.merge_carts(source.id, target.id)
        quantities = {line.sku: line.quantity for line in merged.lines}
        assert quantities == {"SKU-1": 3, "SKU-3": 1}
        assert service.get_cart(source.id).status == "merged"
        with pytest.raises(domain.CartNotOpen):
            service.merge_carts(source.id, target.id)

    def test_merge_caps_quantities_at_the_line_limit(self, products, settings):
        settings.CARTIMAGE = {**settings.CARTIMAGE, "MAX_LINE_QUANTITY": 5}
        source = make_cart({"SKU-1": 4})
        target = make_cart({"SKU-1": 3})
        assert service.merge_carts(source.id, target.id).lines[0].quantity == 5

    def test_expected_version_conflict_changes_nothing(self, products):
        cart = make_cart({"SKU-1": 1})
        with pytest.raises(domain.VersionConflict) as err:
            service.add_line(cart.id, "SKU-1", 1, expected_version=cart.version - 1)
        assert err.value.code == "version_conflict"
        assert service.add_line(cart.id, "SKU-1", 1, expected_version=cart.version).version == 3

    @pytest.mark.parametrize(
        ("call", "code"),
        [
            (lambda c: service.add_line(c, "NOPE", 1), "unknown_sku"),
            (lambda c: service.add_line(c, "SKU-1", 0), "invalid"),
            (lambda c: service.add_line(c, "SKU-1", -1), "invalid"),
            (lambda c: service.add_line(c, "SKU-1", True), "invalid"),
            (lambda c: service.add_line(c, "SKU-1", 2.5), "invalid"),
            (lambda c: service.add_line(c, "SKU-1", "2"), "invalid"),
            (lambda c: service.add_line(c, "SKU-1", None), "invalid"),
            (lambda c: service.add_line(c, "", 1), "invalid"),
            (lambda c: service.add_line(c, "SKU-1", 1, {"size": 3}), "invalid"),
            (lambda c: service.add_line(c, "SKU-1", 1, ["size"]), "invalid"),
            (lambda c: service.add_line(c, "SKU-1", 100), "quantity_limit"),
            (lambda c: service.add_line(c, "LOW", 3), "insufficient_stock"),
            (lambda c: service.set_quantity(c, 999, 1), "not_found"),
            (lambda c: service.set_quantity(c, "1", 1), "invalid"),
            (lambda c: service.remove_line(c, 999), "not_found"),
            (lambda c: service.apply_discount(c, "BOGUS"), "invalid_discount"),
            (lambda c: service.apply_discount(c, "OFF"), "invalid_discount"),
            (lambda c: service.apply_discount(c, "BIG"), "invalid_discount"),
            (lambda c: service.checkout(service.open_cart().id), "invalid"),
        ],
    )
    def test_bad_input_gets_its_code_and_changes_nothing(self, products, call, code):
        make_product("LOW", stock=2)
        make_discount("OFF", active=False)
        make_discount("BIG", "fixed", "5", min_subtotal=Decimal("1000"))
        cart = make_cart({"SKU-1": 1})
        with pytest.raises(domain.DomainError) as err:
            call(cart.id)
        assert err.value.code == code
        assert versions(cart.id) == [1, 2]
        assert service.get_cart(cart.id) == cart

    @pytest.mark.parametrize("cart_id", [str(uuid.uuid4()), "not-a-uuid", 42, ""])
    def test_unknown_carts_are_not_found(self, products, cart_id):
        for call in (
            lambda: service.get_cart(cart_id),
            lambda: service.add_line(cart_id, "SKU-1", 1),
            lambda: service.remove_line(cart_id, 1),
            lambda: service.history(cart_id),
        ):
            with pytest.raises(domain.NotFound) as err:
                call()
            assert err.value.code == "not_found"

    def test_a_cart_holds_at_most_100_lines(self, products, settings):
        settings.CARTIMAGE = {**settings.CARTIMAGE, "MAX_LINES": 3}
        cart = make_cart({"SKU-1": 1, "SKU-2": 1, "SKU-3": 1})
        with pytest.raises(domain.QuantityLimit):
            service.add_line(cart.id, "SKU-4", 1)

    def test_history_is_paginated_oldest_first(self, products):
        cart = make_cart({"SKU-1": 1, "SKU-2": 1, "SKU-3": 1})
        page = service.history(cart.id, after=0, limit=2)
        assert [e["version"] for e in page] == [1, 2]
        assert page[0]["type"] == "cart_opened"
        assert [e["version"] for e in service.history(cart.id, after=2, limit=10)] == [3, 4]

    def test_state_at_any_past_version(self, products):
        cart = make_cart({"SKU-1": 1, "SKU-2": 1})
        assert service.cart_at(cart.id, 2).item_count == 1
        assert service.cart_at(cart.id, 3) == cart

    def test_rows_events_and_memory_agree(self, products, settings):
        settings.CARTIMAGE = {**settings.CARTIMAGE, "SNAPSHOT_EVERY": 2}
        cart = make_cart({"SKU-1": 2, "SKU-2": 1})
        cart = service.set_quantity(cart.id, cart.lines[0].id, 7)
        cart = service.remove_line(cart.id, cart.lines[1].id)
        assert store.load_from_rows(cart.id) == cart
        assert store.load_from_events(cart.id) == cart
        assert image.peek([cart.id])[cart.id] == cart

    @pytest.mark.parametrize("source", ["rows", "events"])
    def test_a_cart_gone_from_memory_is_rehydrated(self, products, settings, source):
        settings.CARTIMAGE = {**settings.CARTIMAGE, "REHYDRATE_FROM": source, "SNAPSHOT_EVERY": 3}
        cart = make_cart({"SKU-1": 2, "SKU-2": 1, "SKU-3": 4})
        assert image.evict(cart.id)
        assert image.peek([cart.id]) == {}
        assert service.get_cart(cart.id) == cart
        assert image.peek([cart.id])[cart.id] == cart

    def test_writes_after_memory_is_cleared_start_from_the_database(self, products):
        cart = make_cart({"SKU-1": 2})
        image.clear()
        cart = service.add_line(cart.id, "SKU-1", 1)
        assert cart.version == 3 and cart.lines[0].quantity == 3
        assert service.get_cart(cart.id) == cart
