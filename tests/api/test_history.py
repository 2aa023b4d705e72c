"""GET /carts/{id}/events: the history, oldest first, a page at a time."""

from __future__ import annotations

import orjson
import pytest

from cartsvc import service
from tests.factories import make_cart

pytestmark = pytest.mark.django_db


def page(client, cart_id: str, query: str = "") -> dict:
    response = client.get(f"/api/v1/carts/{cart_id}/events{query}")
    assert response.status_code == 200
    return orjson.loads(response.content)


def test_pages_walk_the_history_oldest_first(client, catalog):
    cart = make_cart({"SKU-1": 1, "SKU-2": 1, "SKU-3": 1})
    service.set_quantity(cart.id, 1, 4)
    service.apply_discount(cart.id, "TEN")
    service.remove_line(cart.id, 2)
    service.checkout(cart.id)  # 1 open + 3 adds + 4 more = 8 events
    seen, after, pages = [], 0, 0
    while after is not None:
        body = page(client, cart.id, f"?after={after}&limit=3")
        assert len(body["events"]) <= 3
        seen += body["events"]
        after = body["next_after"]
        pages += 1
    assert pages == 3
    assert [event["version"] for event in seen] == list(range(1, 9))
    assert [event["type"] for event in seen] == [
        "cart_opened",
        "line_added",
        "line_added",
        "line_added",
        "quantity_changed",
        "discount_applied",
        "line_removed",
        "checked_out",
    ]
    assert seen[1]["data"]["sku"] == "SKU-1"
    assert all(set(event) == {"version", "type", "schema", "data", "at"} for event in seen)


def test_defaults_and_the_end(client, cart):
    body = page(client, cart.id)
    assert [event["version"] for event in body["events"]] == [1, 2, 3]
    assert body["next_after"] is None
    assert page(client, cart.id, "?after=3") == {"events": [], "next_after": None}
    assert page(client, cart.id, "?after=500") == {"events": [], "next_after": None}


def test_a_full_last_page_says_there_is_no_next_one(client, cart):
    assert page(client, cart.id, "?limit=3")["next_after"] is None
    assert page(client, cart.id, "?limit=2")["next_after"] == 2
