"""Shop rules in the service: ownership, idempotency, saved items, prices, stock, login merge."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from carts.models import Product
from cartsvc import domain, service
from cartsvc.models import CartEvent, IdempotencyKey
from tests.factories import make_cart, make_product

pytestmark = [pytest.mark.contract, pytest.mark.django_db]


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password="pw-bob-123")


def events_of(cart_id) -> int:
    return CartEvent.objects.filter(cart_id=cart_id).count()


class TestOwnership:
    def test_a_users_cart_is_not_found_for_anyone_else(self, products, alice, bob):
        cart = make_cart({"SKU-1": 1}, owner_id=alice.id)
        assert service.get_cart(cart.id, as_user=alice.id) == cart
        for stranger in (bob.id, None):
            with pytest.raises(domain.NotFound):
                service.get_cart(cart.id, as_user=stranger)
            with pytest.raises(domain.NotFound):
                service.add_line(cart.id, "SKU-1", 1, as_user=stranger)
            with pytest.raises(domain.NotFound):
                service.history(cart.id, as_user=stranger)
        assert events_of(cart.id) == 2

    def test_an_anonymous_cart_is_a_bearer_capability(self, products, alice):
        cart = make_cart({"SKU-1": 1})
        assert service.add_line(cart.id, "SKU-1", 1, as_user=alice.id).version == 3
        assert service.add_line(cart.id, "SKU-1", 1, as_user=None).version == 4


class TestIdempotency:
    def key(self, token="k-1", body=None):
        return service.idempotency("scope", token, body or {"sku": "SKU-1", "quantity": 1})

    def test_a_retry_returns_the_first_answer_and_applies_nothing(self, products):
        cart = make_cart({"SKU-1": 1})
        idem = service.idempotency(cart.id, "k-1", {"sku": "SKU-1", "quantity": 2})
        first = service.add_line(cart.id, "SKU-1", 2, idempotency=idem)
        service.add_line(cart.id, "SKU-2", 1)
        again = service.add_line(cart.id, "SKU-1", 2, idempotency=idem)
        assert again == first
        assert service.get_cart(cart.id).lines[0].quantity == 3
        assert IdempotencyKey.objects.filter(key="k-1").count() == 1

    def test_a_replay_does_not_show_a_users_cart_to_anyone_else(self, products, alice, bob):
        cart = make_cart({"SKU-1": 1}, owner_id=alice.id)
        idem = service.idempotency(cart.id, "k-owner", {"sku": "SKU-1", "quantity": 1})
        service.add_line(cart.id, "SKU-1", 1, as_user=alice.id, idempotency=idem)
        for stranger in (bob.id, None):
            with pytest.raises(domain.NotFound):
                service.add_line(cart.id, "SKU-1", 1, as_user=stranger, idempotency=idem)

    @pytest.mark.parametrize(
        "call",
        [
            lambda c: service.add_line(c, "SKU\x001", 1),
            lambda c: service.add_line(c, "SKU-1", 1, {"size": "M\x00"}),
            lambda c: service.add_line(c, "SKU-1", 1, {"s\x00": "M"}),
            lambda c: service.apply_discount(c, "TEN\x00"),
        ],
    )
    def test_nul_characters_are_refused_before_any_lookup(self, products, call):
        cart = make_cart({"SKU-1": 1})
        with pytest.raises(domain.InvalidInput):
            call(cart.id)
        assert service.get_cart(cart.id) == cart

    def test_the_same_key_with_another_body_is_refused(self, products):
        cart = make_cart({"SKU-1": 1})
        service.add_line(
            cart.id, "SKU-1", 1, idempotency=service.idempotency(cart.id, "k", {"q": 1})
        )
        with pytest.raises(domain.IdempotencyKeyReused) as err:
            service.add_line(
                cart.id, "SKU-1", 5, idempotency=service.idempotency(cart.id, "k", {"q": 5})
            )
        assert err.value.code == "idempotency_key_reused"
        assert service.get_cart(cart.id).lines[0].quantity == 2

    def test_bad_keys_are_invalid(self):
        for key in ("", "x" * 129, "tab\there", 42):
            with pytest.raises(domain.InvalidInput):
                service.idempotency("scope", key, {})

    @pytest.mark.django_db(transaction=True)
    def test_eight_concurrent_duplicates_apply_once(self, products):
        cart = make_cart({"SKU-1": 1})
        idem = service.idempotency(cart.id, "double-click", {"sku": "SKU-2", "quantity": 1})
        go = threading.Barrier(8)
        answers, errors = [], []

        def click():
            go.wait()
            try:
                answers.append(service.add_line(cart.id, "SKU-2", 1, idempotency=idem))
            except Exception as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=click) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len({a.version for a in answers}) == 1
        final = service.get_cart(cart.id)
        assert final.version == cart.version + 1
        assert [line.quantity for line in final.lines if line.sku == "SKU-2"] == [1]

    def test_open_cart_with_a_key_opens_one_cart(self):
        idem = service.idempotency("open:session-1", "open-1", {})
        first = service.open_cart(idempotency=idem)
        assert service.open_cart(idempotency=idem) == first


class TestSavedForLater:
    def test_save_and_move_back(self, products):
        cart = make_cart({"SKU-1": 2, "SKU-2": 1})
        first = cart.lines[0]
        cart = service.save_for_later(cart.id, first.id)
        assert [line.id for line in cart.saved] == [first.id]
        assert cart.item_count == 1 and cart.subtotal == Decimal("5.50")
        cart = service.move_to_cart(cart.id, first.id)
        assert cart.saved == () and cart.line(first.id).quantity == 2
        assert [line.id for line in cart.lines] == sorted(line.id for line in cart.lines)

    def test_moving_back_merges_with_the_same_line(self, products):
        cart = make_cart({"SKU-1": 2})
        cart = service.save_for_later(cart.id, cart.lines[0].id)
        cart = service.add_line(cart.id, "SKU-1", 1)
        cart = service.move_to_cart(cart.id, cart.saved[0].id)
        assert cart.saved == () and [line.quantity for line in cart.lines] == [3]

    def test_a_saved_item_can_be_removed_but_not_saved_twice(self, products):
        cart = make_cart({"SKU-1": 2})
        line_id = cart.lines[0].id
        cart = service.save_for_later(cart.id, line_id)
        with pytest.raises(domain.NotFound):
            service.save_for_later(cart.id, line_id)
        assert service.remove_line(cart.id, line_id).saved == ()


class TestPricesAndStock:
    def test_a_price_change_shows_on_the_next_view_with_a_notice(self, products):
        cart = make_cart({"SKU-1": 2, "SKU-2": 1})
        Product.objects.filter(sku="SKU-1").update(price=Decimal("4.00"))
        refreshed, changes = service.refresh_prices(cart.id)
        assert [(c.line_id, c.old_price, c.unit_price) for c in changes] == [
            (cart.lines[0].id, Decimal("3.50"), Decimal("4.00"))
        ]
        assert refreshed.lines[0].unit_price == Decimal("4.00")
        assert service.refresh_prices(cart.id) == (refreshed, [])

    def test_checkout_takes_the_current_price_once_shown_and_the_stock(self, products):
        cart = make_cart({"SKU-1": 2})
        Product.objects.filter(sku="SKU-1").update(price=Decimal("9.99"))
        with pytest.raises(domain.PricesChanged):  # never a price the shopper was not shown
            service.checkout(cart.id)
        assert Product.objects.get(sku="SKU-1").stock == 100
        assert service.get_cart(cart.id).lines[0].unit_price == Decimal("9.99")
        done = service.checkout(cart.id)
        assert done.status == "checked_out" and done.lines[0].unit_price == Decimal("9.99")
        assert Product.objects.get(sku="SKU-1").stock == 98

    def test_checkout_refuses_what_is_not_in_stock_and_takes_nothing(self, products):
        cart = make_cart({"SKU-1": 2, "SKU-2": 2})
        Product.objects.filter(sku="SKU-2").update(stock=1)
        with pytest.raises(domain.InsufficientStock):
            service.checkout(cart.id)
        assert service.get_cart(cart.id).status == "open"
        assert Product.objects.get(sku="SKU-1").stock == 100

    @pytest.mark.django_db(transaction=True)
    def test_two_carts_racing_for_the_last_unit_exactly_one_checks_out(self):
        make_product("LAST", stock=1)
        carts = [make_cart({"LAST": 1}), make_cart({"LAST": 1})]
        go = threading.Barrier(2)
        outcomes = []

        def buy(cart):
            go.wait()
            try:
                outcomes.append(service.checkout(cart.id).status)
            except domain.InsufficientStock:
                outcomes.append("refused")
            finally:
                connection.close()

        threads = [threading.Thread(target=buy, args=(c,)) for c in carts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["checked_out", "refused"]
        assert Product.objects.get(sku="LAST").stock == 0


class TestLoginMerge:
    @pytest.mark.parametrize("visitor_lines", [{}, {"SKU-1": 2, "SKU-2": 1}])
    @pytest.mark.parametrize("user_lines", [None, {}, {"SKU-1": 1, "SKU-3": 1}])
    def test_matrix(self, products, alice, visitor_lines, user_lines):
        visitor = make_cart(visitor_lines)
        mine = make_cart(user_lines, owner_id=alice.id) if user_lines is not None else None
        result = service.merge_on_login(visitor.id, alice.id)
        expected: dict[str, int] = {}
        for lines in (user_lines or {}, visitor_lines):
            for sku, quantity in lines.items():
                expected[sku] = expected.get(sku, 0) + quantity
        assert {line.sku: line.quantity for line in result.lines} == expected
        assert result.owner_id == alice.id
        if mine is None:
            assert result.id == visitor.id  # the visitor's cart became theirs
        else:
            assert result.id == mine.id
            assert service.get_cart(visitor.id).status == "merged"
        assert service.merge_on_login(visitor.id, alice.id) == result  # once

    def test_limits_hold(self, products, alice, settings):
        settings.CARTIMAGE = {**settings.CARTIMAGE, "MAX_LINE_QUANTITY": 5}
        visitor = make_cart({"SKU-1": 4})
        make_cart({"SKU-1": 3}, owner_id=alice.id)
        assert service.merge_on_login(visitor.id, alice.id).lines[0].quantity == 5

    def test_a_checked_out_cart_is_never_merged(self, products, alice):
        visitor = service.checkout(make_cart({"SKU-1": 1}).id)
        mine = make_cart({"SKU-2": 1}, owner_id=alice.id)
        assert service.merge_on_login(visitor.id, alice.id) == mine
        assert service.get_cart(visitor.id).status == "checked_out"

    @pytest.mark.parametrize("close", ["checkout", "expire_cart"])
    def test_a_closed_visitor_cart_is_not_claimed_by_a_user_without_a_cart(
        self, products, alice, close
    ):
        """The contract (service.merge_on_login): no open cart for the user, a visitor cart
        that is not open: nothing happens, the answer is None, the visitor's cart is as it was."""
        closed = getattr(service, close)(make_cart({"SKU-1": 1}).id)
        assert service.merge_on_login(closed.id, alice.id) is None
        after = service.get_cart(closed.id)
        assert after == closed
        assert after.owner_id is None
        assert service.cart_for_user(alice.id) is None

    def test_someone_elses_cart_is_not_taken(self, products, alice, bob):
        theirs = make_cart({"SKU-1": 1}, owner_id=bob.id)
        assert service.merge_on_login(theirs.id, alice.id) is None
        assert service.get_cart(theirs.id).owner_id == bob.id

    @pytest.mark.django_db(transaction=True)
    @pytest.mark.parametrize("has_cart", [False, True])
    def test_two_racing_logins_merge_once(self, alice, has_cart):
        from tests.factories import make_products

        make_products(3)
        visitor = make_cart({"SKU-1": 2})
        if has_cart:
            make_cart({"SKU-1": 1}, owner_id=alice.id)
        go = threading.Barrier(2)
        results = []

        def login():
            go.wait()
            try:
                results.append(service.merge_on_login(visitor.id, alice.id))
            finally:
                connection.close()

        threads = [threading.Thread(target=login) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 2 and results[0].id == results[1].id
        final = service.cart_for_user(alice.id)
        assert final.lines[0].quantity == (3 if has_cart else 2)
