"""A user's cart is theirs alone: 404 for everyone else through every endpoint."""

from __future__ import annotations

import orjson
import pytest
from django.test import Client

from cartsvc import service
from tests.api.conftest import call, error_of

pytestmark = pytest.mark.django_db

EVERY_ENDPOINT = [
    ("GET", "", None),
    ("GET", "/events", None),
    ("POST", "/lines", {"sku": "SKU-1", "quantity": 1}),
    ("PATCH", "/lines/1", {"quantity": 3}),
    ("POST", "/lines/1/save-for-later", None),
    ("POST", "/saved/2/move-to-cart", None),
    ("DELETE", "/lines/1", None),
    ("POST", "/discount", {"code": "TEN"}),
    ("DELETE", "/discount", None),
    ("POST", "/checkout", None),
]


@pytest.fixture
def alices_cart(as_alice, catalog) -> str:
    """Opened through the API by Alice: SKU-1 (line 1), SKU-2 saved for later (line 2)."""
    response = call(as_alice, "POST", "carts")
    cart_id = orjson.loads(response.content)["id"]
    for sku in ("SKU-1", "SKU-2"):
        call(as_alice, "POST", f"carts/{cart_id}/lines", {"sku": sku, "quantity": 1})
    call(as_alice, "POST", f"carts/{cart_id}/lines/2/save-for-later")
    call(as_alice, "POST", f"carts/{cart_id}/discount", {"code": "TEN"})
    return cart_id


@pytest.mark.parametrize("who", ["bob", "anonymous"])
@pytest.mark.parametrize("method,path,body", EVERY_ENDPOINT)
def test_another_users_cart_is_404_everywhere(alices_cart, as_bob, who, method, path, body):
    stranger = as_bob if who == "bob" else Client()
    before = service.get_cart(alices_cart)
    response = call(stranger, method, f"carts/{alices_cart}{path}", body)
    assert response.status_code == 404, response.content
    assert error_of(response)["code"] == "not_found"
    assert service.get_cart(alices_cart) == before


@pytest.mark.parametrize("method,path,body", EVERY_ENDPOINT)
def test_the_owner_gets_through_everywhere(alices_cart, as_alice, method, path, body):
    response = call(as_alice, method, f"carts/{alices_cart}{path}", body)
    assert response.status_code == 200, response.content


def test_a_strangers_replay_of_the_owners_key_is_404(alices_cart, as_alice, as_bob):
    headers = {"Idempotency-Key": "alices-key"}
    body = {"sku": "SKU-3", "quantity": 1}
    path = f"carts/{alices_cart}/lines"
    assert call(as_alice, "POST", path, body, headers=headers).status_code == 200
    for stranger in (as_bob, Client()):
        response = call(stranger, "POST", path, body, headers=headers)
        assert response.status_code == 404
        response = call(stranger, "POST", path, {"sku": "SKU-4", "quantity": 1}, headers=headers)
        assert response.status_code == 404


def test_a_logged_in_user_can_use_an_anonymous_cart_by_its_id(as_alice, cart):
    response = call(as_alice, "POST", f"carts/{cart.id}/lines", {"sku": "SKU-1", "quantity": 1})
    assert response.status_code == 200
    assert service.get_cart(cart.id).owner_id is None
