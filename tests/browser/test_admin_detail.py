"""The cart admin in a real browser (JavaScript off): log in as staff through the admin's login
page, find a cart, see rows beside memory with a difference marked, repair it, keep a
screenshot of the detail page (artifacts/admin-cart-detail.png)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from carts.models import DiscountCode, Product
from cartsvc import operations, service
from cartsvc.models import CartLine

pytestmark = pytest.mark.django_db(transaction=True)

CATALOG = [
    ("MUG-01", "Classic Stoneware Mug", "12.00"),
    ("NOTE-02", "Linen Notebook", "8.50"),
    ("BAG-03", "Travel Backpack", "59.00"),
    ("LAMP-04", "Studio Desk Lamp", "34.90"),
]


@pytest.fixture
def shop_cart(db) -> str:
    """Dana's cart, with a little history: adds, a quantity change, a saved item, a code."""
    for sku, name, price in CATALOG:
        Product.objects.create(sku=sku, name=name, price=Decimal(price), stock=50)
    DiscountCode.objects.create(code="WELCOME10", kind="percent", value=Decimal("10"))
    users = get_user_model().objects
    users.create_superuser("ops", email="ops@shop.example", password="ops-inspects-2026")
    dana = users.create_user("dana", email="dana@customers.example", password="dana-2026")
    cart = service.open_cart(owner_id=dana.id)
    service.add_line(cart.id, "MUG-01", 2, {"colour": "sand"})
    service.add_line(cart.id, "NOTE-02", 1)
    service.add_line(cart.id, "BAG-03", 1)
    service.set_quantity(cart.id, 1, 3)
    service.add_line(cart.id, "LAMP-04", 1)
    service.save_for_later(cart.id, 4)
    service.apply_discount(cart.id, "WELCOME10")
    operations.rehydrate_cart(cart.id)
    return cart.id


def log_in(page: Page, base: str) -> None:
    page.goto(base + "/admin/cartsvc/cart/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next="))
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill("ops-inspects-2026")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/cartsvc/cart/$"))


def test_inspect_a_cart_and_repair_its_rows(live_server, shop_cart, context, artifacts):
    page = context.new_page()
    log_in(page, live_server.url)

    # The list: Dana's cart, in memory, its total after the discount.
    row = page.locator("#result_list tbody tr", has_text=shop_cart[:8])
    expect(row).to_contain_text("dana@customers.example")
    expect(row.locator("td.field-total")).to_have_text("€93.15")
    expect(row.locator("td.field-in_memory img")).to_have_attribute("alt", "True")

    # Someone edits a line row behind the service's back.
    CartLine.objects.filter(cart_id=shop_cart, line_id=2).update(quantity=5)

    row.get_by_role("link", name=shop_cart[:8]).click()
    expect(page.locator("h1")).to_contain_text(shop_cart)
    expect(page.get_by_test_id("memory-pill")).to_have_text("in memory · v8")
    summary = page.get_by_test_id("rows-summary")
    expect(summary).to_contain_text("The rows differ from the event log")
    expect(summary).to_contain_text(
        "rows say quantity 5 for line 2 (Linen Notebook, NOTE-02), the event log says 1"
    )
    expect(page.get_by_test_id("memory-summary")).to_contain_text("matches the event log")
    expect(page.get_by_test_id("panel-log")).to_contain_text("Event log")
    rows_note = page.get_by_test_id("rows-lines").locator('tr[data-line="2"] td[data-field]')
    expect(rows_note.first).to_have_class(re.compile(r"\bdiff-cell\b"))
    expect(page.get_by_test_id("history").locator("tbody tr")).to_have_count(8)
    expect(page.get_by_test_id("history")).to_contain_text('"sku": "MUG-01"')

    # The state at version 3, replayed from the log.
    page.get_by_label("Replay the event log up to version").fill("3")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("panel-at")).to_contain_text("Version 3 of 8")
    expect(page.get_by_test_id("at-lines").locator("tr.line")).to_have_count(2)

    page.screenshot(path=str(artifacts / "admin-cart-detail.png"), full_page=True)

    # Verify names the damage; rebuilding the rows from the log repairs it.
    page.get_by_role("button", name="Verify").click()
    messages = page.locator(".messagelist")
    expect(messages).to_contain_text(f"Cart {shop_cart}: rows say quantity 5 for line 2")
    page.get_by_role("button", name="Rebuild rows from the event log").click()
    expect(page.locator(".messagelist")).to_contain_text("Rebuilt the rows")
    page.get_by_role("button", name="Rehydrate now").click()
    expect(page.get_by_test_id("rows-summary")).to_contain_text(
        "The rows match the event log (version 8)"
    )
    assert CartLine.objects.get(cart_id=shop_cart, line_id=2).quantity == 1
    page.get_by_role("button", name="Verify").click()
    expect(page.locator(".messagelist")).to_contain_text("agree")
