"""The cart list in a real browser at laptop and phone widths: short ids, and the key columns
(id, status, total, version, in memory) in view without scrolling at 1280 px. Screenshots:
artifacts/admin-cart-list-1280.png, artifacts/admin-cart-list-390.png."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from cartsvc import admin as cart_admin
from cartsvc import operations
from tests.browser.conftest import PHONE, sized_context
from tests.factories import make_cart, make_products

pytestmark = pytest.mark.django_db(transaction=True)

KEY_COLUMNS = ("cart_id", "status_display", "total", "version", "in_memory")


@pytest.fixture
def carts(db) -> list[str]:
    make_products(3)
    users = get_user_model().objects
    users.create_superuser("ops", email="ops@shop.example", password="ops-inspects-2026")
    made = []
    for n in range(4):
        owner = users.create_user(
            f"shopper{n}", email=f"a.rather.long.address{n}@customers.example", password="pw-2026"
        )
        made.append(make_cart({"SKU-1": 2, "SKU-2": n + 1}, owner_id=owner.id).id)
    operations.evict_cart(made[0])
    return made


@pytest.fixture
def laptop(browser) -> Iterator[Page]:
    with sized_context(browser, {"viewport": {"width": 1280, "height": 800}}) as ctx:
        yield ctx.new_page()


@pytest.fixture
def phone(browser) -> Iterator[Page]:
    with sized_context(browser, PHONE) as ctx:
        yield ctx.new_page()


def open_list(page: Page, base: str) -> None:
    page.goto(base + "/admin/login/?next=/admin/cartsvc/cart/")
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill("ops-inspects-2026")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/cartsvc/cart/$"))
    # The URL is there before the admin's actions.js has set up its checkboxes (it does on
    # DOMContentLoaded): a tick before that would change nothing else on the page.
    page.wait_for_load_state("load")


def in_view(page: Page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    viewport = page.viewport_size
    return box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] and box["y"] >= 0


def test_the_key_columns_are_in_view_at_1280(live_server, carts, laptop, artifacts, monkeypatch):
    monkeypatch.setattr(cart_admin, "ACTION_LIMIT", 3)
    monkeypatch.setattr(cart_admin.CartAdmin, "list_per_page", 3)
    open_list(laptop, live_server.url)
    # Every cart of the page ticked: past the action limit, no "Select all 4" but a note.
    laptop.locator("#action-toggle").check()
    expect(laptop.locator(".action-counter")).to_contain_text("3 of 3 selected")
    expect(laptop.get_by_test_id("action-limit")).to_be_visible()
    expect(laptop.get_by_text("Select all 4 carts")).to_have_count(0)
    laptop.screenshot(path=str(artifacts / "admin-cart-list-1280.png"), full_page=True)
    for column in KEY_COLUMNS:
        assert in_view(laptop, f"#result_list thead th.column-{column}"), column
    # The page itself does not scroll sideways.
    assert laptop.evaluate("document.documentElement.scrollWidth") <= 1280
    # Short ids, the full one on hover and on the detail page.
    link = laptop.locator(
        "#result_list td.field-cart_id a, #result_list th.field-cart_id a"
    ).filter(has_text=carts[1][:8])
    expect(link).to_have_text(carts[1][:8])
    expect(link.locator(".cart-id")).to_have_attribute("title", carts[1])
    link.click()
    expect(laptop.locator("h1")).to_contain_text(carts[1])


def test_the_list_on_a_phone(live_server, carts, phone, artifacts):
    open_list(phone, live_server.url)
    phone.screenshot(path=str(artifacts / "admin-cart-list-390.png"), full_page=True)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    for column in ("cart_id", "status_display"):
        assert in_view(phone, f"#result_list thead th.column-{column}"), column
