"""Every endpoint of the API contract answers with the documented body and headers."""

from __future__ import annotations

import re

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from carts.models import Product
from cartsvc import service
from tests.api.conftest import API, JSON, call
from tests.factories import make_cart

pytestmark = pytest.mark.django_db

CART_KEYS = {
    "id",
    "version",
    "status",
    "currency",
    "lines",
    "saved_for_later",
    "discount",
    "subtotal",
    "total",
    "item_count",
    "updated_at",
}
LINE_KEYS = {"id", "sku", "name", "options", "quantity", "unit_price", "line_total"}
ISO_8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def body_of(response) -> dict:
    assert response["Content-Type"] == JSON
    return orjson.loads(response.content)


def test_products_lists_the_active_catalog_with_money_as_strings(client, catalog):
    Product.objects.filter(sku="SKU-5").update(active=False)
    response = client.get(f"{API}/products")
    assert response.status_code == 200
    products = body_of(response)
    assert [p["sku"] for p in products] == ["SKU-1", "SKU-2", "SKU-3", "SKU-4"]
    assert products[0] == {"sku": "SKU-1", "name": "Product SKU-1", "price": "3.50", "stock": 100}


def test_open_cart_is_201_with_location_and_etag(client, catalog):
    response = call(client, "POST", "carts")
    assert response.status_code == 201
    body = body_of(response)
    assert set(body) == CART_KEYS
    assert response["Location"] == f"{API}/carts/{body['id']}"
    assert response["ETag"] == '"1"'
    assert body["version"] == 1
    assert body["status"] == "open"
    assert body["lines"] == body["saved_for_later"] == []
    assert body["discount"] is None
    assert (body["subtotal"], body["total"], body["item_count"]) == ("0.00", "0.00", 0)
    assert ISO_8601.match(body["updated_at"])
    assert service.get_cart(body["id"]).owner_id is None


def test_get_cart_has_the_body_of_the_contract_and_an_etag(client, cart):
    response = client.get(f"{API}/carts/{cart.id}")
    assert response.status_code == 200
    assert response["ETag"] == '"3"'
    body = body_of(response)
    assert set(body) == CART_KEYS
    assert body["lines"] == [
        {
            "id": 1,
            "sku": "SKU-1",
            "name": "Product SKU-1",
            "options": {},
            "quantity": 2,
            "unit_price": "3.50",
            "line_total": "7.00",
        },
        {
            "id": 2,
            "sku": "SKU-2",
            "name": "Product SKU-2",
            "options": {},
            "quantity": 1,
            "unit_price": "5.50",
            "line_total": "5.50",
        },
    ]
    assert (body["subtotal"], body["total"], body["item_count"]) == ("12.50", "12.50", 3)
    assert body["updated_at"] == cart.updated_at.isoformat()


def test_if_none_match_with_the_current_etag_is_304(client, cart):
    response = client.get(f"{API}/carts/{cart.id}", headers={"If-None-Match": '"3"'})
    assert response.status_code == 304
    assert response["ETag"] == '"3"'
    assert response.content == b""
    response = client.get(f"{API}/carts/{cart.id}", headers={"If-None-Match": 'W/"2", "1"'})
    assert response.status_code == 200


def test_add_line_merges_options_in_any_key_order(client, cart):
    first = call(
        client,
        "POST",
        f"carts/{cart.id}/lines",
        {"sku": "SKU-3", "quantity": 1, "options": {"size": "M", "color": "red"}},
    )
    assert first.status_code == 200
    assert first["ETag"] == '"4"'
    second = call(
        client,
        "POST",
        f"carts/{cart.id}/lines",
        {"sku": "SKU-3", "quantity": 2, "options": {"color": "red", "size": "M"}},
    )
    body = body_of(second)
    assert second["ETag"] == '"5"'
    (line,) = [line for line in body["lines"] if line["sku"] == "SKU-3"]
    assert set(line) == LINE_KEYS
    assert line["options"] == {"color": "red", "size": "M"}
    assert (line["quantity"], line["unit_price"], line["line_total"]) == (3, "7.50", "22.50")
    assert body["item_count"] == 6


def test_patch_sets_the_quantity_and_zero_removes_the_line(client, cart):
    response = call(client, "PATCH", f"carts/{cart.id}/lines/1", {"quantity": 5})
    assert response.status_code == 200
    assert body_of(response)["lines"][0]["quantity"] == 5
    response = call(client, "PATCH", f"carts/{cart.id}/lines/1", {"quantity": 0})
    assert [line["id"] for line in body_of(response)["lines"]] == [2]


def test_delete_removes_a_line(client, cart):
    response = call(client, "DELETE", f"carts/{cart.id}/lines/2", content_type=None)
    assert response.status_code == 200
    assert response["ETag"] == '"4"'
    assert [line["id"] for line in body_of(response)["lines"]] == [1]


def test_save_for_later_and_move_back(client, cart):
    response = call(client, "POST", f"carts/{cart.id}/lines/1/save-for-later")
    assert response.status_code == 200
    body = body_of(response)
    assert [line["id"] for line in body["lines"]] == [2]
    assert [line["id"] for line in body["saved_for_later"]] == [1]
    assert set(body["saved_for_later"][0]) == LINE_KEYS
    assert (body["subtotal"], body["item_count"]) == ("5.50", 1)
    response = call(client, "POST", f"carts/{cart.id}/saved/1/move-to-cart", {})
    body = body_of(response)
    assert [line["id"] for line in body["lines"]] == [1, 2]
    assert body["saved_for_later"] == []


def test_delete_removes_a_saved_item_too(client, cart):
    call(client, "POST", f"carts/{cart.id}/lines/1/save-for-later")
    response = call(client, "DELETE", f"carts/{cart.id}/lines/1", content_type=None)
    assert response.status_code == 200
    assert body_of(response)["saved_for_later"] == []


def test_discount_applies_and_goes(client, cart):
    response = call(client, "POST", f"carts/{cart.id}/discount", {"code": "TEN"})
    assert response.status_code == 200
    body = body_of(response)
    assert body["discount"] == {"code": "TEN", "amount": "1.25"}
    assert (body["subtotal"], body["total"]) == ("12.50", "11.25")
    response = call(client, "DELETE", f"carts/{cart.id}/discount", content_type=None)
    body = body_of(response)
    assert body["discount"] is None
    assert body["total"] == "12.50"


def test_checkout_freezes_the_cart_and_takes_stock(client, cart):
    response = call(client, "POST", f"carts/{cart.id}/checkout")
    assert response.status_code == 200
    assert body_of(response)["status"] == "checked_out"
    assert Product.objects.get(sku="SKU-1").stock == 98


def test_checkout_names_the_cart_that_holds_the_saved_items(client, cart):
    assert "Link" not in call(client, "POST", f"carts/{make_cart({'SKU-1': 1}).id}/checkout")
    call(client, "POST", f"carts/{cart.id}/lines/2/save-for-later")
    response = call(client, "POST", f"carts/{cart.id}/checkout")
    assert response.status_code == 200
    body = body_of(response)
    assert body["saved_for_later"] == [] and [line["id"] for line in body["lines"]] == [1]
    match = re.fullmatch(rf'<{API}/carts/([0-9a-f-]{{36}})>; rel="next"', response["Link"])
    assert match, response["Link"]
    following = body_of(call(client, "GET", f"carts/{match[1]}"))
    assert following["status"] == "open" and following["lines"] == []
    assert [item["sku"] for item in following["saved_for_later"]] == ["SKU-2"]
    # A retry with the same key answers the same, Link included, and opens nothing more.
    other = make_cart({"SKU-1": 1, "SKU-2": 1})
    call(client, "POST", f"carts/{other.id}/lines/2/save-for-later")
    headers = {"Idempotency-Key": "checkout-retry-1"}
    first = call(client, "POST", f"carts/{other.id}/checkout", headers=headers)
    again = call(client, "POST", f"carts/{other.id}/checkout", headers=headers)
    assert (again.content, again["Link"]) == (first.content, first["Link"])


def test_a_replayed_checkout_answers_even_when_the_next_cart_is_no_longer_the_callers(client, cart):
    call(client, "POST", f"carts/{cart.id}/lines/2/save-for-later")
    headers = {"Idempotency-Key": "checkout-then-login-1"}
    first = call(client, "POST", f"carts/{cart.id}/checkout", headers=headers)
    following = service.next_cart(cart.id)
    assert following is not None
    user = get_user_model().objects.create_user("later")
    service.merge_on_login(following.id, user.id)  # the visitor logged in elsewhere
    again = call(client, "POST", f"carts/{cart.id}/checkout", headers=headers)
    assert again.status_code == 200 and again.content == first.content
    assert "Link" not in again  # that cart is the account's now: not named to a visitor


def test_bodyless_mutations_take_an_empty_object_or_an_empty_body(client, cart):
    assert call(client, "POST", f"carts/{cart.id}/checkout", {}).status_code == 200
    other = make_cart({"SKU-1": 1})
    assert call(client, "DELETE", f"carts/{other.id}/lines/1", {}).status_code == 200


def test_json_with_a_charset_is_accepted(client, cart):
    response = call(
        client,
        "POST",
        f"carts/{cart.id}/lines",
        {"sku": "SKU-1", "quantity": 1},
        content_type="application/json; charset=UTF-8",
    )
    assert response.status_code == 200


def test_the_openapi_document_is_served(client):
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    assert orjson.loads(response.content)["openapi"].startswith("3.")


def test_a_logged_in_user_owns_the_carts_they_open(as_alice, alice, catalog):
    response = call(as_alice, "POST", "carts")
    assert response.status_code == 201
    assert service.get_cart(body_of(response)["id"]).owner_id == alice.id


def test_anonymous_client_without_cookies_gets_none_set_on_a_read(cart):
    response = Client().get(f"{API}/carts/{cart.id}")
    assert response.status_code == 200
    assert not response.cookies
    # The answer depends on the session (ownership), read or not.
    assert "Cookie" in response["Vary"]
