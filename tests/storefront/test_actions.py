"""Every storefront action: POST, a message, a redirect (POST/redirect/GET); refusals are
messages too, never a 500, and change nothing."""

from __future__ import annotations

import pytest
from django.test import Client

from carts.models import Product
from cartsvc import service
from tests.factories import make_discount
from tests.storefront.conftest import (
    add,
    cart_id_of,
    cart_of,
    landed,
    login,
    post,
    quantities,
    texts,
)

pytestmark = pytest.mark.django_db


def line_id(client: Client, sku: str) -> int:
    cart = cart_of(client)
    found = [line.id for line in (*cart.lines, *cart.saved) if line.sku == sku]
    assert found, f"{sku} is not in the cart"
    return found[0]


class TestAdd:
    def test_the_first_add_opens_a_cart_bound_to_the_session(self, client, products):
        response = add(client, "SKU-1", 2, next="/")
        assert landed(response) == "/"
        assert texts(response) == ["Added 2 \u00d7 Product SKU-1 to your cart."]
        cart = cart_of(client)
        assert quantities(cart) == {"SKU-1": 2} and cart.owner_id is None

    def test_adding_again_merges_into_the_line(self, shopper):
        cart_id = cart_id_of(shopper)
        add(shopper, "SKU-1", 3)
        assert cart_id_of(shopper) == cart_id
        assert quantities(cart_of(shopper)) == {"SKU-1": 5, "SKU-2": 1}

    def test_next_must_be_on_this_site(self, client, products):
        response = add(client, "SKU-1", 1, next="https://evil.example/")
        assert landed(response) == "/"

    @pytest.mark.parametrize(
        "quantity, message",
        [
            (0, "Please choose a quantity between 1 and 99."),
            ("two", "Please choose a quantity between 1 and 99."),
            (100, "Please choose a quantity between 1 and 99."),
            ("", "Please choose a quantity between 1 and 99."),
        ],
    )
    def test_bad_quantities_are_a_message(self, shopper, quantity, message):
        before = cart_of(shopper)
        response = add(shopper, "SKU-1", quantity, next="/")
        assert landed(response) == "/"
        assert texts(response) == [message]
        assert cart_of(shopper) == before

    def test_an_unknown_or_inactive_product_is_a_message(self, shopper):
        before = cart_of(shopper)
        Product.objects.filter(sku="SKU-3").update(active=False)
        for sku in ("NOPE", "SKU-3"):
            response = add(shopper, sku, 1)
            assert texts(response) == ["Sorry, that product is no longer available."]
        assert cart_of(shopper) == before

    def test_more_than_the_stock_is_a_message(self, shopper):
        Product.objects.filter(sku="SKU-1").update(stock=3)
        response = add(shopper, "SKU-1", 2)
        assert texts(response) == ["Sorry: only 3 of Product SKU-1 in stock: you can add 1 more."]
        assert quantities(cart_of(shopper))["SKU-1"] == 2

    def test_more_than_the_line_limit_is_a_message(self, shopper):
        add(shopper, "SKU-1", 97)
        response = add(shopper, "SKU-1", 1)
        assert texts(response) == [
            "Sorry, at most 99 of one item per cart, and your cart already holds 99 Product SKU-1."
        ]
        assert quantities(cart_of(shopper))["SKU-1"] == 99

    def test_a_double_clicked_add_applies_once(self, shopper):
        add(shopper, "SKU-3", 1, token="form-1")
        again = add(shopper, "SKU-3", 1, token="form-1")
        assert landed(again) == "/"
        assert quantities(cart_of(shopper))["SKU-3"] == 1
        # The same form sent back with another quantity is a new intention.
        add(shopper, "SKU-3", 2, token="form-1")
        assert quantities(cart_of(shopper))["SKU-3"] == 3

    def test_a_logged_in_users_cart_is_theirs(self, client, products, alice):
        client.force_login(alice)
        add(client, "SKU-1", 1)
        cart = cart_of(client)
        assert cart.owner_id == alice.id
        assert service.cart_for_user(alice.id).id == cart.id


class TestLines:
    def test_update_the_quantity(self, shopper):
        response = post(
            shopper, f"/cart/lines/{line_id(shopper, 'SKU-1')}/quantity/", {"quantity": 4}
        )
        assert landed(response) == "/cart/"
        assert texts(response) == ["Updated Product SKU-1: quantity 4."]
        assert quantities(cart_of(shopper)) == {"SKU-1": 4, "SKU-2": 1}

    def test_quantity_zero_removes_the_line(self, shopper):
        response = post(
            shopper, f"/cart/lines/{line_id(shopper, 'SKU-1')}/quantity/", {"quantity": 0}
        )
        assert texts(response) == ["Removed Product SKU-1 from your cart."]
        assert quantities(cart_of(shopper)) == {"SKU-2": 1}

    @pytest.mark.parametrize("quantity", [-1, 100, "x", ""])
    def test_a_bad_quantity_is_a_message(self, shopper, quantity):
        before = cart_of(shopper)
        url = f"/cart/lines/{line_id(shopper, 'SKU-1')}/quantity/"
        response = post(shopper, url, {"quantity": quantity})
        assert texts(response) == ["Please choose a quantity between 0 and 99."]
        assert cart_of(shopper) == before

    def test_more_than_the_stock_is_a_message(self, shopper):
        Product.objects.filter(sku="SKU-1").update(stock=3)
        url = f"/cart/lines/{line_id(shopper, 'SKU-1')}/quantity/"
        response = post(shopper, url, {"quantity": 5})
        assert texts(response) == [
            "Sorry: only 3 of Product SKU-1 in stock: this line can be at most 3."
        ]
        assert quantities(cart_of(shopper))["SKU-1"] == 2

    def test_remove(self, shopper):
        response = post(shopper, f"/cart/lines/{line_id(shopper, 'SKU-2')}/remove/")
        assert texts(response) == ["Removed Product SKU-2 from your cart."]
        assert quantities(cart_of(shopper)) == {"SKU-1": 2}

    def test_save_for_later_and_move_back(self, shopper):
        sku1 = line_id(shopper, "SKU-1")
        response = post(shopper, f"/cart/lines/{sku1}/save/")
        assert texts(response) == ["Saved Product SKU-1 for later."]
        cart = cart_of(shopper)
        assert quantities(cart) == {"SKU-2": 1} and [s.sku for s in cart.saved] == ["SKU-1"]
        html = shopper.get("/cart/").content.decode()
        assert "Saved for later" in html and f'action="/cart/saved/{sku1}/move/"' in html
        response = post(shopper, f"/cart/saved/{sku1}/move/")
        assert texts(response) == ["Moved Product SKU-1 back to your cart."]
        cart = cart_of(shopper)
        assert quantities(cart) == {"SKU-1": 2, "SKU-2": 1} and cart.saved == ()

    def test_remove_a_saved_item(self, shopper):
        sku1 = line_id(shopper, "SKU-1")
        post(shopper, f"/cart/lines/{sku1}/save/")
        response = post(shopper, f"/cart/saved/{sku1}/remove/")
        assert texts(response) == ["Removed Product SKU-1 from your saved items."]
        assert cart_of(shopper).saved == ()

    def test_only_saved_items_show_their_list_and_checkout_is_disabled(self, shopper):
        for sku in ("SKU-1", "SKU-2"):
            post(shopper, f"/cart/lines/{line_id(shopper, sku)}/save/")
        html = shopper.get("/cart/").content.decode()
        assert "you saved a few things for later" in html
        assert "Check out</button>" in html and " disabled>Check out" in html


class TestTwoTabs:
    """The same session in two tabs: the second tab acts on a page that is out of date."""

    def test_a_line_removed_in_one_tab_then_updated_in_the_other(self, shopper):
        sku1 = line_id(shopper, "SKU-1")
        post(shopper, f"/cart/lines/{sku1}/remove/")  # tab 1
        before = cart_of(shopper)
        response = post(shopper, f"/cart/lines/{sku1}/quantity/", {"quantity": 3})  # tab 2
        assert landed(response) == "/cart/"
        [message] = texts(response)
        assert message.startswith("That item is no longer in your cart")
        assert cart_of(shopper) == before
        assert response.status_code == 200 and "another tab" in response.content.decode()

    @pytest.mark.parametrize("action", ["remove", "save", "quantity"])
    def test_every_line_action_on_a_gone_line_is_a_message(self, shopper, action):
        sku1 = line_id(shopper, "SKU-1")
        post(shopper, f"/cart/lines/{sku1}/remove/")
        response = post(shopper, f"/cart/lines/{sku1}/{action}/", {"quantity": 1})
        assert landed(response) == "/cart/"
        assert texts(response)[0].startswith("That item is no longer in your cart")

    def test_moving_back_a_saved_item_removed_in_the_other_tab(self, shopper):
        sku1 = line_id(shopper, "SKU-1")
        post(shopper, f"/cart/lines/{sku1}/save/")
        post(shopper, f"/cart/saved/{sku1}/remove/")
        response = post(shopper, f"/cart/saved/{sku1}/move/")
        assert texts(response)[0].startswith("That item is no longer in your cart")

    def test_a_cart_checked_out_in_one_tab_then_changed_in_the_other(self, shopper):
        sku1 = line_id(shopper, "SKU-1")
        post(shopper, "/cart/checkout/")
        response = post(shopper, f"/cart/lines/{sku1}/quantity/", {"quantity": 3})
        assert landed(response) == "/cart/"
        assert texts(response) == [
            "We could not find your cart; it may have expired. Add a product to start again."
        ]

    def test_checkout_of_a_cart_changed_since_the_page_was_shown(self, shopper):
        version = cart_of(shopper).version
        add(shopper, "SKU-3", 1)  # the other tab
        response = post(shopper, "/cart/checkout/", {"version": version})
        assert landed(response) == "/cart/"
        assert texts(response) == [
            "Your cart changed in the meantime (in another tab?). Please review it and retry."
        ]
        assert cart_of(shopper).status == "open"

    def test_a_session_cart_checked_out_elsewhere_is_let_go(self, shopper):
        old = cart_id_of(shopper)
        service.checkout(old)  # through the API, say
        html = shopper.get("/cart/").content.decode()
        assert "Your cart is empty" in html
        add(shopper, "SKU-1", 1)
        assert cart_id_of(shopper) != old

    def test_a_database_away_does_not_make_the_visitor_let_go_of_their_cart(
        self, shopper, monkeypatch
    ):
        old = cart_id_of(shopper)

        def database_away(*args, **kwargs):  # what the service says after its own retry
            raise service.DatabaseUnavailable("the database can not be reached right now")

        for name in ("get_cart", "refresh_prices"):
            monkeypatch.setattr(service, name, database_away)
        shopper.raise_request_exception = False
        assert shopper.get("/cart/").status_code == 500
        monkeypatch.undo()
        assert cart_id_of(shopper) == old  # not unbound, and no new cart opened
        assert quantities(cart_of(shopper)) == {"SKU-1": 2, "SKU-2": 1}


class TestDiscount:
    def test_apply_and_remove(self, shopper):
        make_discount("WELCOME10", "percent", "10")
        response = post(shopper, "/cart/discount/", {"code": " welcome10 "})
        assert texts(response) == ["Discount code WELCOME10 applied."]
        html = shopper.get("/cart/").content.decode()
        # subtotal 7.00 + 5.50 = 12.50; 10% = 1.25
        assert 'data-testid="discount">\u2212€1.25<' in html
        assert 'data-testid="total">€11.25<' in html
        response = post(shopper, "/cart/discount/remove/")
        assert texts(response) == ["Discount code removed."]
        assert cart_of(shopper).discount is None

    def test_unknown_inactive_or_too_small_codes_are_messages(self, shopper):
        make_discount("OLD", "percent", "50", active=False)
        make_discount("FIVEOFF", "fixed", "5", min_subtotal="20")
        cases = {
            "NOPE": "Unknown or inactive discount code 'NOPE'.",
            "OLD": "Unknown or inactive discount code 'OLD'.",
            "FIVEOFF": "Code FIVEOFF needs a subtotal of at least 20.00.",
            "": "Please enter a discount code.",
        }
        for code, message in cases.items():
            response = post(shopper, "/cart/discount/", {"code": code})
            assert texts(response) == [message], code
        assert cart_of(shopper).discount is None

    def test_a_discount_without_a_cart_is_a_message(self, client, products):
        make_discount("WELCOME10")
        response = post(client, "/cart/discount/", {"code": "WELCOME10"})
        assert landed(response) == "/cart/"
        assert "could not find your cart" in texts(response)[0]


class TestCheckout:
    def test_checkout_confirms_the_order_and_the_next_add_starts_a_new_cart(self, shopper):
        order_id = cart_id_of(shopper)
        response = post(shopper, "/cart/checkout/", {"version": cart_of(shopper).version})
        assert landed(response) == f"/orders/{order_id}/"
        assert texts(response) == []  # the order page itself says thank you
        assert cart_id_of(shopper) is None
        assert service.get_cart(order_id).status == "checked_out"
        assert Product.objects.get(sku="SKU-1").stock == 98
        page = response.content.decode()
        assert "Thank you for your order" in page and order_id[:8].upper() in page
        assert "Product SKU-1" in page and "€12.50" in page
        add(shopper, "SKU-3", 1)
        assert cart_id_of(shopper) != order_id
        assert quantities(cart_of(shopper)) == {"SKU-3": 1}

    def test_saved_items_wait_in_the_visitors_next_cart(self, shopper):
        post(shopper, f"/cart/lines/{line_id(shopper, 'SKU-2')}/save/")
        order_id = cart_id_of(shopper)
        response = post(shopper, "/cart/checkout/", {"version": cart_of(shopper).version})
        assert landed(response) == f"/orders/{order_id}/"
        assert texts(response) == ["Your 1 saved item will wait for you in your cart."]
        # The session holds the next cart, with the saved item and nothing bought.
        following = cart_of(shopper)
        assert following.id != order_id and following.status == "open"
        assert [line.sku for line in following.saved] == ["SKU-2"] and not following.lines
        page = shopper.get("/cart/").content.decode()
        assert "Saved for later" in page and "Product SKU-2" in page
        assert Product.objects.get(sku="SKU-2").stock == 100

    def test_saved_items_wait_in_the_customers_next_cart(self, shopper, alice):
        login(shopper, "alice")
        post(shopper, f"/cart/lines/{line_id(shopper, 'SKU-2')}/save/")
        order_id = cart_id_of(shopper)
        post(shopper, "/cart/checkout/", {"version": cart_of(shopper).version})
        following = cart_of(shopper)
        assert following.id != order_id and following.owner_id == alice.id
        assert [line.sku for line in following.saved] == ["SKU-2"]
        # A new session (another device) finds them too.
        other = Client()
        login(other, "alice")
        assert cart_of(other).id == following.id

    def test_an_empty_cart_can_not_be_checked_out(self, client, products):
        response = post(client, "/cart/checkout/")
        assert texts(response) == ["Your cart is empty: add a product before checking out."]
        add(client, "SKU-1", 1)
        post(client, f"/cart/lines/{line_id(client, 'SKU-1')}/remove/")
        response = post(client, "/cart/checkout/")
        assert texts(response) == ["Your cart is empty: add a product before checking out."]

    def test_not_enough_stock_is_a_message_and_nothing_is_taken(self, shopper):
        Product.objects.filter(sku="SKU-2").update(stock=0)
        response = post(shopper, "/cart/checkout/")
        assert landed(response) == "/cart/"
        assert texts(response) == ["Sorry: Product SKU-2 is sold out: remove it to check out."]
        assert cart_of(shopper).status == "open"
        assert Product.objects.get(sku="SKU-1").stock == 100

    def test_a_bad_version_field_is_a_message(self, shopper):
        response = post(shopper, "/cart/checkout/", {"version": "abc"})
        assert landed(response) == "/cart/" and texts(response)
        assert cart_of(shopper).status == "open"
