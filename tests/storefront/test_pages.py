"""Each storefront page renders, with the mini-cart, from the service's cart state."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from carts.models import Product
from cartsvc import service
from tests.factories import make_cart
from tests.storefront.conftest import add, cart_id_of, cart_of, login, minicart

pytestmark = pytest.mark.django_db


def test_the_product_list_shows_active_products_with_add_forms(client, products):
    Product.objects.filter(sku="SKU-5").update(active=False)
    Product.objects.filter(sku="SKU-4").update(stock=0)
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Product SKU-1" in html and "€3.50" in html
    assert "Product SKU-5" not in html
    assert html.count('action="/cart/add/"') == 4
    assert html.count('name="csrfmiddlewaretoken"') >= 4
    assert "Out of stock" in html
    assert minicart(html) == 0
    assert cart_id_of(client) is None  # browsing opens no cart


def test_an_empty_cart_page_opens_no_cart(client, products):
    response = client.get("/cart/")
    assert response.status_code == 200
    assert "Your cart is empty" in response.content.decode()
    assert cart_id_of(client) is None


def test_the_cart_page_shows_lines_options_prices_and_totals(shopper):
    cart = cart_of(shopper)
    service.add_line(cart.id, "SKU-3", 1, {"size": "M", "colour": "red"})
    html = shopper.get("/cart/").content.decode()
    assert "Product SKU-1" in html and "Product SKU-2" in html
    assert "Colour: red · Size: M" in html
    assert "€3.50</span> each" in html  # unit price
    assert "€7.00" in html  # line total 2 x 3.50
    # subtotal 7.00 + 5.50 + 7.50
    assert 'data-testid="subtotal">€20.00<' in html
    assert 'data-testid="total">€20.00<' in html
    assert f'name="version" value="{cart.version + 1}"' in html
    assert minicart(html) == 4


def test_the_read_only_cart_page(shopper):
    cart = cart_of(shopper)
    response = Client().get(f"/carts/{cart.id}/")  # an anonymous cart id is its capability
    html = response.content.decode()
    assert response.status_code == 200
    assert "Product SKU-1" in html and "Read-only" in html and "Open" in html
    assert 'action="/cart/' not in html  # no forms that change it


def test_the_read_only_page_is_404_for_unknown_or_malformed_ids(client, db):
    assert client.get(f"/carts/{uuid.uuid4()}/").status_code == 404
    assert client.get("/carts/not-a-uuid/").status_code == 404
    assert client.get(f"/orders/{uuid.uuid4()}/").status_code == 404


def test_another_users_cart_page_is_404(client, products, alice, bob):
    theirs = make_cart({"SKU-1": 1}, owner_id=bob.id)
    assert client.get(f"/carts/{theirs.id}/").status_code == 404  # anonymous
    login(client, "alice")
    assert client.get(f"/carts/{theirs.id}/").status_code == 404  # another user
    bobs = Client()
    login(bobs, "bob")
    assert bobs.get(f"/carts/{theirs.id}/").status_code == 200  # the owner


def test_another_users_order_page_is_404(client, products, alice, bob):
    order = service.checkout(make_cart({"SKU-1": 1}, owner_id=bob.id).id)
    login(client, "alice")
    assert client.get(f"/orders/{order.id}/").status_code == 404
    bobs = Client()
    login(bobs, "bob")
    assert "Thank you for your order" in bobs.get(f"/orders/{order.id}/").content.decode()


def test_an_open_cart_has_no_order_page(shopper):
    assert shopper.get(f"/orders/{cart_id_of(shopper)}/").status_code == 404


def test_the_login_page(client, db):
    response = client.get("/login/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="username"' in html and 'name="csrfmiddlewaretoken"' in html
    assert minicart(html) == 0


def test_a_wrong_password_shows_the_form_again(client, alice):
    response = login(client, "alice", "wrong")
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_logout_is_post_only_and_flushes_the_session(shopper, alice):
    login(shopper, "alice")
    assert shopper.get("/logout/").status_code == 405
    response = shopper.post("/logout/", follow=True)
    html = response.content.decode()
    assert "You are logged out" in html
    assert cart_id_of(shopper) is None
    assert minicart(html) == 0
    assert "_auth_user_id" not in shopper.session


def test_mutations_are_post_only(shopper):
    for url in ("/cart/add/", "/cart/checkout/", "/cart/lines/1/remove/", "/cart/discount/"):
        assert shopper.get(url).status_code == 405
    assert len(cart_of(shopper).lines) == 2


@pytest.mark.parametrize("path", ["/", "/cart/", "/login/", "CART", "ORDER"])
def test_the_mini_cart_count_is_on_every_page(shopper, path):
    cart_id = cart_id_of(shopper)
    if path == "CART":
        path = f"/carts/{cart_id}/"
    if path == "ORDER":
        other = Client()
        add(other, "SKU-3", 1)
        order_id = cart_id_of(other)
        other.post("/cart/checkout/")
        shopper = other
        path = f"/orders/{order_id}/"
        expected = 0  # after checkout the session has no cart until the next add
    else:
        expected = 3
    response = shopper.get(path)
    assert response.status_code == 200
    assert minicart(response.content.decode()) == expected
