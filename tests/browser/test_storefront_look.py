"""The storefront's look in a real browser: the cart at desktop and phone widths,
one focus ring with enough contrast, and axe-core finding nothing serious on any page."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from carts.models import Product
from tests.browser.conftest import LAPTOP, PHONE, sized_context

pytestmark = pytest.mark.django_db(transaction=True)

CATALOG = [
    ("MUG-01", "Classic Stoneware Mug", "12.00", 50),
    ("NOTE-02", "Linen Notebook", "8.50", 3),  # low: the cart line says "Only 3 left"
    ("BAG-03", "Travel Backpack with Padded Laptop Sleeve", "59.00", 50),
]


@pytest.fixture
def shop(db):
    for sku, name, price, stock in CATALOG:
        Product.objects.create(sku=sku, name=name, price=Decimal(price), stock=stock)


@pytest.fixture
def desktop(browser):
    with sized_context(browser, LAPTOP) as ctx:
        yield ctx


@pytest.fixture
def phone(browser):
    with sized_context(browser, PHONE) as ctx:
        yield ctx


def add(page: Page, sku: str, quantity: int) -> None:
    product = page.locator(f'li.product[data-sku="{sku}"]')
    product.locator('input[name="quantity"]').fill(str(quantity))
    product.get_by_role("button", name="Add to cart").click()
    expect(page.locator(".messages")).to_contain_text("to your cart")


def fill_cart(page: Page, base: str) -> None:
    """Two lines in the cart and one saved for later."""
    page.goto(base + "/")
    add(page, "MUG-01", 2)
    add(page, "NOTE-02", 1)
    add(page, "BAG-03", 1)
    page.goto(base + "/cart/")
    page.locator('li.line[data-sku="BAG-03"]').get_by_role("button", name="Save for later").click()
    expect(page.get_by_test_id("saved")).to_be_visible()


def box(page: Page, selector: str) -> dict:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not rendered"
    return found


# ---------------------------------------------------------------- layout at two widths


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_cart_and_the_saved_list_at_both_widths(live_server, shop, request, artifacts, width):
    page = request.getfixturevalue(width).new_page()
    fill_cart(page, live_server.url)
    note = page.locator('li.line[data-sku="NOTE-02"]').get_by_test_id("stock-note")
    expect(note).to_have_text("Only 3 left")
    page.screenshot(path=str(artifacts / f"issue13-cart-{width}.png"), full_page=True)
    saved = page.get_by_test_id("saved")
    saved.scroll_into_view_if_needed()
    saved.screenshot(path=str(artifacts / f"issue13-saved-{width}.png"))

    text = box(page, '[data-testid="saved"] li.line .line-info')
    assert text["width"] > 200, f"the saved row's text column is {text['width']:.0f} px wide"
    # No word of the saved item's name stands alone on a line of its own.
    name = page.locator('[data-testid="saved"] .line-name').first
    lines = name.evaluate(
        "e => Math.round(e.getBoundingClientRect().height"
        " / parseFloat(getComputedStyle(e).lineHeight))"
    )
    assert lines <= 2, f"the saved item's name wraps onto {lines} lines"

    summary, saved_box = box(page, '[data-testid="summary"]'), box(page, '[data-testid="saved"]')
    checkout = page.get_by_role("button", name="Check out")
    if width == "phone":
        # The summary and Check out follow the cart's lines, before the saved list.
        lines_box = box(page, '[data-testid="cart-lines"]')
        assert lines_box["y"] < summary["y"] < saved_box["y"]
        assert checkout.bounding_box()["y"] < saved_box["y"]
        # Scrolled to the cart's last line, Check out is in view.
        page.locator('[data-testid="cart-lines"] li.line').last.evaluate(
            "e => e.scrollIntoView({block: 'start'})"
        )
        at = checkout.evaluate("e => e.getBoundingClientRect().toJSON()")
        assert at["top"] >= 0 and at["bottom"] <= PHONE["viewport"]["height"], at
    else:
        # Wide: the summary stands beside the lines, at their top.
        assert summary["x"] > box(page, '[data-testid="cart-lines"]')["x"] + 300
        expect(checkout).to_be_in_viewport()


# ---------------------------------------------------------------- the focus ring

RING = """e => {
  const s = getComputedStyle(e);
  let bg = null;
  for (let p = e.parentElement; p && !bg; p = p.parentElement) {
    const c = getComputedStyle(p).backgroundColor;
    if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') bg = c;
  }
  return {visible: e.matches(':focus-visible'), color: s.outlineColor, style: s.outlineStyle,
          width: s.outlineWidth, behind: bg || 'rgb(255, 255, 255)'};
}"""


def rgba(css: str) -> tuple[float, float, float, float]:
    found = re.fullmatch(r"rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)", css)
    assert found, f"not an rgb colour: {css}"
    r, g, b, a = found.groups()
    return float(r), float(g), float(b), float(a) if a is not None else 1.0


def over(colour: str, behind: str) -> tuple[float, float, float]:
    """The colour as seen over an opaque background (alpha composited)."""
    r, g, b, a = rgba(colour)
    br, bg, bb, _ = rgba(behind)
    return (r * a + br * (1 - a), g * a + bg * (1 - a), b * a + bb * (1 - a))


def luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_one_focus_ring_with_3_to_1_contrast(live_server, shop, desktop):
    page = desktop.new_page()
    fill_cart(page, live_server.url)
    targets = {
        "button": page.locator('li.line[data-sku="MUG-01"]').get_by_role("button", name="Update"),
        "link button": page.locator('li.line[data-sku="MUG-01"]').get_by_role(
            "button", name="Save for later"
        ),
        "primary button": page.get_by_role("button", name="Check out"),
        "input": page.get_by_label("Discount code"),
        "link": page.get_by_role("link", name="Shop", exact=True),
        "cart link": page.get_by_test_id("mini-cart"),
    }
    rings = {}
    for what, target in targets.items():
        target.focus()
        ring = target.evaluate(RING)
        assert ring["visible"], f"the focused {what} is not :focus-visible"
        assert ring["style"] == "solid" and float(ring["width"].rstrip("px")) >= 2, (what, ring)
        seen = over(ring["color"], ring["behind"])
        for name, behind in (
            ("white", (255, 255, 255)),
            ("its background", over(ring["behind"], "rgb(255, 255, 255)")),
        ):
            ratio = contrast(seen, behind)
            assert ratio >= 3, f"the {what}'s focus ring is {ratio:.2f}:1 against {name}"
        rings[what] = (ring["color"], ring["style"], ring["width"])
    assert len(set(rings.values())) == 1, f"different focus rings: {rings}"


# ---------------------------------------------------------------- axe-core

SERIOUS = ("serious", "critical")


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page, one line each."""
    results = Axe().run(page).response
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in results["violations"]
        if v["impact"] in SERIOUS
    ]


def check(page: Page, url: str, name: str, artifacts: Path) -> list[str]:
    if url:
        page.goto(url)
    found = serious_violations(page)
    if found:
        page.screenshot(path=str(artifacts / f"issue13-axe-{name}.png"), full_page=True)
    return [f"{name}: {line}" for line in found]


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_axe_finds_nothing_serious_on_the_shops_pages(live_server, shop, request, artifacts, width):
    page = request.getfixturevalue(width).new_page()
    base = live_server.url
    found = []
    found += check(page, base + "/", f"products-{width}", artifacts)
    found += check(page, base + "/cart/", f"cart-empty-{width}", artifacts)
    found += check(page, base + "/login/", f"login-{width}", artifacts)
    response = page.goto(base + "/no-such-page/")
    assert response is not None and response.status == 404
    found += check(page, "", f"404-{width}", artifacts)
    fill_cart(page, base)
    found += check(page, "", f"cart-{width}", artifacts)
    page.get_by_role("button", name="Check out").click()
    expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}/$"))
    found += check(page, "", f"order-{width}", artifacts)
    assert not found, "\n".join(found)
