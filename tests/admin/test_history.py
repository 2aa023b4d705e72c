"""The detail page's event history and timestamps: the Idempotency-Key a request was sent
with, options shown as a map (as the cart shows them), and every time with its zone."""

from __future__ import annotations

import re

import orjson
import pytest
from django.test import Client

from cartsvc import service
from tests.admin.conftest import detail_url, page_text, section
from tests.factories import make_cart

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("needs_redis")]


def history_row(response, version: int) -> str:
    found = re.search(rf'<tr data-version="{version}".*?</tr>', section(response, "history"), re.S)
    assert found, f"no v{version}"
    return found.group(0)


def key_cell(row: str) -> str:
    found = re.search(r'data-testid="idempotency-key">(.*?)</td>', row, re.S)
    assert found
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_a_keyed_api_request_shows_its_key(staff_client, catalog):
    cart = make_cart()
    shopper = Client()
    response = shopper.post(
        f"/api/v1/carts/{cart.id}/lines",
        orjson.dumps({"sku": "SKU-1", "quantity": 2}),
        content_type="application/json",
        headers={"Idempotency-Key": "add-mug-7f3a"},
    )
    assert response.status_code == 200, response.content
    shopper.post(
        f"/api/v1/carts/{cart.id}/lines",
        orjson.dumps({"sku": "SKU-2", "quantity": 1}),
        content_type="application/json",
    )  # no key
    service.merge_carts(
        make_cart({"SKU-3": 1}).id, cart.id, idempotency=service.idempotency("me", "merge-1", {})
    )

    page = staff_client.get(detail_url(cart.id))
    assert "<th>Idempotency-Key</th>" in section(page, "history")
    assert key_cell(history_row(page, 2)) == "add-mug-7f3a"
    assert key_cell(history_row(page, 3)) == "—"
    assert key_cell(history_row(page, 1)) == "—"
    merged = service.get_cart(cart.id).version
    assert key_cell(history_row(page, merged)) == "merge-1"


def test_options_show_as_a_map_like_the_cart(staff_client, catalog):
    cart = make_cart()
    service.add_line(cart.id, "SKU-1", 1, {"size": "M", "colour": "sand"})
    row = history_row(staff_client.get(detail_url(cart.id)), 2).replace("&quot;", '"')
    assert '"options": {"colour": "sand", "size": "M"}' in row
    assert "[[" not in row


@pytest.mark.parametrize(("zone", "name"), [("UTC", "UTC"), ("Asia/Kolkata", "IST")])
def test_every_timestamp_names_its_zone(staff_client, catalog, settings, zone, name):
    settings.TIME_ZONE = zone
    cart = make_cart({"SKU-1": 1})
    response = staff_client.get(detail_url(cart.id))
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{3})?"
    header = page_text(response)
    facts = re.findall(rf"(?:Created|Updated) ({stamp})( \w+)?", header)
    assert len(facts) >= 4, facts  # the facts box and the panels
    assert all(zone_name == f" {name}" for _, _, zone_name in facts), facts
    recorded = re.findall(
        rf"<td class=\"nowrap\">({stamp})( \w+)?</td>", section(response, "history")
    )
    assert recorded and all(zone_name == f" {name}" for _, _, zone_name in recorded), recorded


def test_a_carried_lines_options_show_as_a_map_too(staff_client, catalog):
    cart = make_cart({"SKU-1": 1})
    cart = service.add_line(cart.id, "SKU-2", 1, {"size": "M"})
    cart = service.save_for_later(cart.id, cart.line_for("SKU-2", (("size", "M"),)).id)
    order = service.checkout(cart.id)
    following = service.next_cart(order.id)
    assert following is not None
    row = history_row(staff_client.get(detail_url(following.id)), 2).replace("&quot;", '"')
    assert '"options": {"size": "M"}' in row and "[[" not in row
