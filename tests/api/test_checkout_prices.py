"""A checkout never charges a price the client was not shown: 409 prices_changed instead."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from carts.models import Product
from cartsvc import service
from tests.factories import make_cart, make_product

pytestmark = pytest.mark.django_db
API = "/api/v1"


def checkout(client, cart_id, version=None):
    headers = {"If-Match": f'"{version}"'} if version is not None else {}
    return client.post(
        f"{API}/carts/{cart_id}/checkout", "{}", content_type="application/json", headers=headers
    )


@pytest.mark.parametrize("with_if_match", [True, False])
def test_a_moved_price_stops_the_checkout_and_leaves_the_cart_repriced(client, with_if_match):
    make_product("MUG", price="38.17", stock=10)
    cart = make_cart({"MUG": 1})
    seen = client.get(f"{API}/carts/{cart.id}").json()
    assert seen["total"] == "38.17"
    Product.objects.filter(sku="MUG").update(price=Decimal("381.70"))

    answer = checkout(client, cart.id, seen["version"] if with_if_match else None)
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "prices_changed"
    assert error["changes"] == [
        {"line_id": 1, "sku": "MUG", "old_price": "38.17", "new_price": "381.70"}
    ]
    now = client.get(f"{API}/carts/{cart.id}").json()
    assert now["status"] == "open"  # not checked out
    assert now["total"] == "381.70"  # re-priced, for the client to confirm
    assert now["version"] == seen["version"] + 1
    assert Product.objects.get(sku="MUG").stock == 10  # no stock taken

    if with_if_match:  # the old version is stale now
        assert checkout(client, cart.id, seen["version"]).status_code == 412
    confirmed = checkout(client, cart.id, now["version"])
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "checked_out"
    assert confirmed.json()["total"] == "381.70"


def test_the_service_raises_prices_changed_with_the_changes():
    make_product("TEA", price="4.00")
    make_product("POT", price="20.00")
    cart = make_cart({"TEA": 2, "POT": 1})
    Product.objects.filter(sku="TEA").update(price=Decimal("3.50"))
    with pytest.raises(service.PricesChanged) as raised:
        service.checkout(cart.id)
    assert raised.value.changes == [
        {"line_id": 1, "sku": "TEA", "old_price": "4.00", "new_price": "3.50"}
    ]
    assert service.get_cart(cart.id).total == Decimal("27.00")
    assert service.checkout(cart.id).status == service.CHECKED_OUT


def test_the_openapi_document_describes_prices_changed(client):
    document = json.loads(client.get(f"{API}/openapi.json").content)
    checkout_409 = document["paths"]["/carts/{cart_id}/checkout"]["post"]["responses"]["409"]
    assert "prices_changed" in json.dumps(checkout_409)
