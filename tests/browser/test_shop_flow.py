"""The storefront in a real browser (JavaScript off): browse, add, change, remove, save for
later and back, discount, log in and see the visitor's cart merged, check out."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from carts.models import DiscountCode, Product
from cartsvc import service

pytestmark = pytest.mark.django_db(transaction=True)

CATALOG = [
    ("MUG-01", "Classic Stoneware Mug", "12.00"),
    ("NOTE-02", "Linen Notebook", "8.50"),
    ("BAG-03", "Travel Backpack", "59.00"),
    ("LAMP-04", "Studio Desk Lamp", "34.90"),
    ("TEA-05", "Cast Iron Teapot", "27.00"),
    ("SCARF-06", "Merino Scarf", "24.00"),
]


@pytest.fixture
def shop(db):
    for sku, name, price in CATALOG:
        Product.objects.create(sku=sku, name=name, price=Decimal(price), stock=50)
    DiscountCode.objects.create(code="WELCOME10", kind="percent", value=Decimal("10"))
    user = get_user_model().objects.create_user("dana", password="dana-shops-2026")
    # Dana already has a cart from another visit: one desk lamp.
    mine = service.open_cart(owner_id=user.id)
    service.add_line(mine.id, "LAMP-04", 1)
    return user


def card(page: Page, sku: str):
    return page.locator(f'li.product[data-sku="{sku}"]')


def line(page: Page, sku: str):
    return page.locator(f'[data-testid="cart-lines"] li.line[data-sku="{sku}"]')


def saved(page: Page, sku: str):
    return page.locator(f'[data-testid="saved"] li.line[data-sku="{sku}"]')


def add(page: Page, sku: str, quantity: int) -> None:
    product = card(page, sku)
    product.locator('input[name="quantity"]').fill(str(quantity))
    product.get_by_role("button", name="Add to cart").click()


def expect_message(page: Page, text: str) -> None:
    expect(page.locator(".messages")).to_contain_text(text)


def expect_count(page: Page, count: int) -> None:
    expect(page.locator("#cart-count")).to_have_text(str(count))


def test_the_whole_shopping_flow(live_server, shop, context, artifacts):
    page = context.new_page()
    base = live_server.url

    # Browse.
    page.goto(base + "/")
    expect(page.locator("li.product")).to_have_count(len(CATALOG))
    expect(card(page, "MUG-01")).to_contain_text("€12.00")
    expect_count(page, 0)

    # Add two products (and a third to remove later).
    add(page, "MUG-01", 2)
    expect_message(page, "Added 2 \u00d7 Classic Stoneware Mug to your cart.")
    expect_count(page, 2)
    add(page, "NOTE-02", 1)
    add(page, "BAG-03", 1)
    expect_count(page, 4)

    # The cart page.
    page.locator('[data-testid="mini-cart"]').click()
    expect(page).to_have_url(re.compile(r"/cart/$"))
    expect(page.locator('[data-testid="cart-lines"] li.line')).to_have_count(3)
    expect(page.get_by_test_id("subtotal")).to_have_text("€91.50")

    # Change a quantity.
    mug = line(page, "MUG-01")
    mug.locator('input[name="quantity"]').fill("3")
    mug.get_by_role("button", name="Update").click()
    expect_message(page, "Updated Classic Stoneware Mug: quantity 3.")
    expect(line(page, "MUG-01").locator(".line-total")).to_have_text("€36.00")
    expect_count(page, 5)

    # Remove a line.
    line(page, "NOTE-02").get_by_role("button", name="Remove").click()
    expect_message(page, "Removed Linen Notebook from your cart.")
    expect(line(page, "NOTE-02")).to_have_count(0)

    # Save for later, then move back.
    line(page, "BAG-03").get_by_role("button", name="Save for later").click()
    expect_message(page, "Saved Travel Backpack for later.")
    expect(line(page, "BAG-03")).to_have_count(0)
    expect(saved(page, "BAG-03")).to_be_visible()
    expect(page.get_by_test_id("subtotal")).to_have_text("€36.00")
    saved(page, "BAG-03").get_by_role("button", name="Move to cart").click()
    expect_message(page, "Moved Travel Backpack back to your cart.")
    expect(line(page, "BAG-03")).to_be_visible()
    expect(page.get_by_test_id("saved")).to_have_count(0)

    # A discount code.
    page.get_by_label("Discount code").fill("welcome10")
    page.get_by_role("button", name="Apply").click()
    expect_message(page, "Discount code WELCOME10 applied.")
    expect(page.get_by_test_id("discount")).to_have_text("\u2212€9.50")
    expect(page.get_by_test_id("total")).to_have_text("€85.50")

    # Log in: the visitor's cart merges into Dana's cart (which holds a desk lamp).
    page.get_by_role("link", name="Log in", exact=True).first.click()
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill("dana-shops-2026")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/cart/$"))
    expect_message(page, "Welcome, dana!")
    expect_message(page, "We added the 4 items you picked to your saved cart: it now holds 5.")
    expect(page.locator('[data-testid="cart-lines"] li.line')).to_have_count(3)
    expect(line(page, "LAMP-04")).to_be_visible()
    expect(line(page, "MUG-01").locator('input[name="quantity"]')).to_have_value("3")
    expect_count(page, 5)
    expect(page.locator(".nav-user")).to_have_text("Hi, dana")

    # The visitor's code came along with the merge; Dana keeps one thing for later.
    expect(page.get_by_role("button", name="Remove discount code")).to_be_visible()
    add_page_scarf(page, base)
    line(page, "LAMP-04").get_by_role("button", name="Save for later").click()
    expect(page.get_by_test_id("total")).to_have_text("€107.10")
    page.screenshot(path=str(artifacts / "cart-page.png"), full_page=True)

    # Check out.
    page.get_by_role("button", name="Check out").click()
    expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}/$"))
    expect(page.locator("h1")).to_have_text("Thank you for your order")
    expect_count(page, 0)
    order = service.get_cart(page.url.rstrip("/").rsplit("/", 1)[1])
    assert order.status == "checked_out" and order.owner_id == shop.id
    assert {ln.sku: ln.quantity for ln in order.lines} == {"MUG-01": 3, "BAG-03": 1, "SCARF-06": 1}
    assert Product.objects.get(sku="MUG-01").stock == 47

    # The next add starts a new cart.
    page.goto(base + "/")
    add(page, "TEA-05", 1)
    expect_count(page, 1)


def add_page_scarf(page: Page, base: str) -> None:
    """One more product from the shop, back to the cart."""
    page.goto(base + "/")
    add(page, "SCARF-06", 1)
    expect_count(page, 6)
    page.goto(base + "/cart/")


def test_two_tabs_a_line_removed_in_one_and_updated_in_the_other(live_server, shop, context):
    first = context.new_page()
    first.goto(live_server.url + "/")
    add(first, "MUG-01", 1)
    add(first, "TEA-05", 1)
    first.goto(live_server.url + "/cart/")
    second = context.new_page()
    second.goto(live_server.url + "/cart/")

    line(first, "MUG-01").get_by_role("button", name="Remove").click()
    expect_message(first, "Removed Classic Stoneware Mug from your cart.")

    mug = line(second, "MUG-01")
    mug.locator('input[name="quantity"]').fill("4")
    mug.get_by_role("button", name="Update").click()
    expect(second).to_have_url(re.compile(r"/cart/$"))
    expect_message(second, "That item is no longer in your cart")
    expect(line(second, "MUG-01")).to_have_count(0)
    expect(line(second, "TEA-05")).to_be_visible()
