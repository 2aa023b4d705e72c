"""Price changes show on the next cart view; CSRF is enforced on every form."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from carts.models import Product
from tests.factories import make_discount
from tests.storefront.conftest import add, cart_id_of, cart_of, post, quantities, texts

pytestmark = pytest.mark.django_db


class TestPriceChanges:
    def test_the_next_cart_view_shows_the_new_price_and_a_notice(self, shopper):
        Product.objects.filter(sku="SKU-1").update(price=Decimal("4.00"))
        page = shopper.get("/cart/")
        html = page.content.decode()
        assert texts(page) == ["Price of Product SKU-1 changed from 3.50 to 4.00."]
        assert "€4.00</span> each" in html and "€8.00" in html
        assert cart_of(shopper).lines[0].unit_price == Decimal("4.00")
        # Told once: the next view has nothing new to say.
        assert texts(shopper.get("/cart/")) == []

    def test_a_saved_item_is_repriced_too(self, shopper):
        post(shopper, f"/cart/lines/{cart_of(shopper).lines[1].id}/save/")
        Product.objects.filter(sku="SKU-2").update(price=Decimal("5.00"))
        Product.objects.filter(sku="SKU-1").update(price=Decimal("3.00"))
        assert sorted(texts(shopper.get("/cart/"))) == [
            "Price of Product SKU-1 changed from 3.50 to 3.00.",
            "Price of Product SKU-2 changed from 5.50 to 5.00.",
        ]

    def test_checkout_stops_to_show_a_price_change(self, shopper):
        order_id = cart_id_of(shopper)
        version = cart_of(shopper).version
        Product.objects.filter(sku="SKU-2").update(price=Decimal("6.00"))
        response = post(shopper, "/cart/checkout/", {"version": version})
        assert response.redirect_chain == [("/cart/", 302)]
        assert texts(response) == [
            "Price of Product SKU-2 changed from 5.50 to 6.00.",
            "Please review the new prices before checking out.",
        ]
        assert cart_of(shopper).status == "open"
        # Reviewed: the form now carries the new version and checkout goes through.
        response = post(shopper, "/cart/checkout/", {"version": cart_of(shopper).version})
        assert response.redirect_chain == [(f"/orders/{order_id}/", 302)]
        assert "€13.00" in response.content.decode()  # 2 x 3.50 + 6.00


def csrf_free(client: Client) -> Client:
    """The same session, but a client that enforces CSRF and sends no token."""
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    return strict


class TestCsrf:
    @pytest.fixture
    def strict(self, shopper):
        make_discount("WELCOME10")
        return csrf_free(shopper)

    def forms(self, shopper) -> list[tuple[str, dict]]:
        line = cart_of(shopper).lines[0].id
        return [
            ("/cart/add/", {"sku": "SKU-3", "quantity": 1}),
            (f"/cart/lines/{line}/quantity/", {"quantity": 5}),
            (f"/cart/lines/{line}/remove/", {}),
            (f"/cart/lines/{line}/save/", {}),
            (f"/cart/saved/{line}/move/", {}),
            (f"/cart/saved/{line}/remove/", {}),
            ("/cart/discount/", {"code": "WELCOME10"}),
            ("/cart/discount/remove/", {}),
            ("/cart/checkout/", {}),
            ("/logout/", {}),
        ]

    def test_every_form_without_a_token_is_403_and_changes_nothing(self, shopper, strict):
        before = cart_of(shopper)
        for url, data in self.forms(shopper):
            assert strict.post(url, data).status_code == 403, url
        assert cart_of(shopper) == before
        assert cart_id_of(shopper) == before.id

    def test_login_without_a_token_is_403_and_merges_nothing(self, shopper, strict, alice):
        response = strict.post("/login/", {"username": "alice", "password": "pw-alice-123"})
        assert response.status_code == 403
        assert cart_of(shopper).owner_id is None
        assert "_auth_user_id" not in shopper.session

    def test_a_wrong_token_is_403(self, shopper, strict):
        before = cart_of(shopper)
        strict.get("/")  # sets the csrftoken cookie
        response = strict.post(
            "/cart/add/", {"sku": "SKU-3", "quantity": 1, "csrfmiddlewaretoken": "x" * 64}
        )
        assert response.status_code == 403
        assert cart_of(shopper) == before

    def test_the_token_from_the_page_works(self, shopper, strict):
        page = strict.get("/")
        token = page.context["csrf_token"]
        response = strict.post(
            "/cart/add/", {"sku": "SKU-3", "quantity": 1, "csrfmiddlewaretoken": str(token)}
        )
        assert response.status_code == 302
        assert quantities(cart_of(shopper)) == {"SKU-1": 2, "SKU-2": 1, "SKU-3": 1}

    def test_add_without_a_session_cart_and_without_a_token_opens_no_cart(self, products):
        strict = Client(enforce_csrf_checks=True)
        assert strict.post("/cart/add/", {"sku": "SKU-1", "quantity": 1}).status_code == 403
        assert cart_id_of(strict) is None
        assert add(Client(), "SKU-1", 1).status_code == 200  # the lenient client, for contrast
