"""Storefront fixtures: shoppers, a cart bound to a test client's session, page helpers."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from cartsvc import service
from cartsvc.shop import CART_SESSION_KEY

PASSWORDS = {"alice": "pw-alice-123", "bob": "pw-bob-123"}


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password=PASSWORDS["alice"])


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password=PASSWORDS["bob"])


@pytest.fixture
def shopper(db, products) -> Client:
    """A visitor with SKU-1 x2 and SKU-2 x1 in the session's cart."""
    client = Client()
    add(client, "SKU-1", 2)
    add(client, "SKU-2", 1)
    return client


def post(client: Client, url: str, data: dict | None = None):
    """A form post as a browser makes it: the redirect is followed (POST/redirect/GET)."""
    return client.post(url, data or {}, follow=True)


def add(client: Client, sku: str, quantity: int | str = 1, **extra: str):
    return post(client, "/cart/add/", {"sku": sku, "quantity": quantity, **extra})


def landed(response) -> str:
    """Where a followed post was redirected to."""
    assert response.redirect_chain, "no redirect"
    url, status = response.redirect_chain[-1]
    assert status == 302
    return url


def cart_id_of(client: Client) -> str | None:
    return client.session.get(CART_SESSION_KEY)


def cart_of(client: Client) -> service.Cart:
    cart_id = cart_id_of(client)
    assert cart_id, "the session holds no cart"
    return service.get_cart(cart_id)


def quantities(cart: service.Cart | None) -> dict[str, int]:
    return {line.sku: line.quantity for line in cart.lines} if cart else {}


def texts(response) -> list[str]:
    """The messages the page shows."""
    found = re.findall(r'<li class="message message-\w+">(.*?)</li>', response.content.decode())
    return [html.unescape(text) for text in found]


def minicart(html: str) -> int:
    found = re.search(r'id="cart-count">(\d+)<', html)
    assert found, "no mini-cart in the page"
    return int(found.group(1))


def login(client: Client, username: str, password: str | None = None, **extra: str):
    return client.post(
        "/login/", {"username": username, "password": password or PASSWORDS[username], **extra}
    )
