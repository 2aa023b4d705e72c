"""Amounts from the catalog enter the cart at the currency's places: rows = events = memory."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartsvc import operations, service, store
from cartsvc.catalog import CatalogDataError, DiscountInfo, ProductInfo, catalog
from cartsvc.models import CartEvent
from tests.hypothesis_profiles import examples

pytestmark = pytest.mark.django_db

HERE = "tests.integration.test_catalog_money.LooseCatalog"


class LooseCatalog:
    """A test adapter answering whatever amounts the test put in (as a careless shop might)."""

    prices: ClassVar[dict[str, object]] = {}
    discounts: ClassVar[dict[str, tuple[str, object, object]]] = {}

    def product(self, sku: str) -> ProductInfo | None:
        price = self.prices.get(sku)
        return None if price is None else ProductInfo(sku, f"Product {sku}", price, 10_000)  # type: ignore[arg-type]

    def products(self, skus: list[str]) -> dict[str, ProductInfo]:
        return {sku: found for sku in skus if (found := self.product(sku)) is not None}

    def listing(self) -> list[ProductInfo]:
        return [found for sku in sorted(self.prices) if (found := self.product(sku)) is not None]

    def discount(self, code: str) -> DiscountInfo | None:
        found = self.discounts.get(code)
        if found is None:
            return None
        kind, value, minimum = found
        return DiscountInfo(code, kind, value, minimum)  # type: ignore[arg-type]

    def reserve(self, items: dict[str, int]) -> list[str]:
        return []


@pytest.fixture
def loose(db):
    LooseCatalog.prices.clear()
    LooseCatalog.discounts.clear()
    with override_settings(CARTIMAGE={**django_settings.CARTIMAGE, "CATALOG": HERE}):
        yield LooseCatalog
    LooseCatalog.prices.clear()
    LooseCatalog.discounts.clear()


# Any decimal a shop's adapter might hand over: many places, up to the rows' ten digits.
price = st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=None).filter(
    lambda p: p.is_finite()
)
percent = st.decimals(min_value=0, max_value=100, places=None).filter(lambda p: p.is_finite())
fixed = st.decimals(min_value=0, max_value=Decimal("999.999"), places=5)


@settings(
    max_examples=examples(40),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    prices=st.lists(price, min_size=1, max_size=3),
    repriced=st.lists(price, min_size=1, max_size=3),
    discount=st.one_of(st.tuples(st.just("percent"), percent), st.tuples(st.just("fixed"), fixed)),
    minimum=fixed,
    quantity=st.integers(1, 7),
)
def test_arbitrary_catalog_amounts_keep_rows_and_events_equal(
    loose, prices, repriced, discount, minimum, quantity
):
    skus = [f"LOOSE-{i}" for i in range(len(prices))]
    loose.prices.update(zip(skus, prices, strict=True))
    loose.discounts["ANY"] = (*discount, minimum)
    cart = service.open_cart()
    for sku in skus:
        cart = service.add_line(cart.id, sku, quantity)
    try:
        cart = service.apply_discount(cart.id, "ANY")
    except service.InvalidDiscount:
        pass  # under the code's minimum: refused, nothing changed
    # The catalog moves its prices; the cart takes them, then checks out.
    loose.prices.update(zip(skus, repriced, strict=False))
    cart, _changes = service.refresh_prices(cart.id)
    cart = service.checkout(cart.id)

    assert store.load_from_rows(cart.id) == cart
    assert store.load_from_events(cart.id) == cart
    assert list(operations.verify_carts([cart.id])) == []
    for line in cart.lines:
        assert line.unit_price == line.unit_price.quantize(Decimal("0.01")), line
    if cart.discount is not None:
        assert cart.discount.value == cart.discount.value.quantize(Decimal("0.01"))


def test_a_price_with_more_places_is_rounded_half_up_to_cents(loose):
    loose.prices.update({"A": Decimal("12.345"), "B": 0.125, "C": 7})
    loose.discounts["TENISH"] = ("percent", Decimal("10.005"), Decimal("0.001"))
    cart = service.open_cart()
    for sku in "ABC":
        cart = service.add_line(cart.id, sku)
    cart = service.apply_discount(cart.id, "TENISH")
    assert [line.unit_price for line in cart.lines] == [
        Decimal("12.35"),
        Decimal("0.13"),
        Decimal("7.00"),
    ]
    assert cart.discount.value == Decimal("10.01")
    assert store.load_from_rows(cart.id) == store.load_from_events(cart.id) == cart
    assert list(operations.verify_carts([cart.id])) == []


def test_a_currency_without_minor_units_takes_whole_prices(loose):
    loose.prices["YEN"] = Decimal("1234.5")
    loose.discounts["OFF"] = ("fixed", Decimal("99.5"), Decimal(0))
    with override_settings(
        CARTIMAGE={**django_settings.CARTIMAGE, "CATALOG": HERE, "CURRENCY": "JPY"}
    ):
        cart = service.open_cart()
        cart = service.add_line(cart.id, "YEN")
        cart = service.apply_discount(cart.id, "OFF")
        assert cart.lines[0].unit_price == Decimal("1235")
        assert cart.discount.value == Decimal("100")
        assert catalog().listing()[0].price == Decimal("1235")
        assert store.load_from_rows(cart.id) == store.load_from_events(cart.id) == cart


def test_a_negative_amount_that_rounds_to_zero_is_a_zero_price(loose):
    loose.prices["FREE"] = Decimal("-0.001")
    cart = service.add_line(service.open_cart().id, "FREE")
    assert cart.lines[0].unit_price == Decimal("0.00")
    assert str(cart.lines[0].unit_price) == "0.00"  # not "-0.00"
    assert store.load_from_rows(cart.id) == store.load_from_events(cart.id) == cart


@pytest.mark.parametrize(
    "bad",
    [
        Decimal("NaN"),
        Decimal("Infinity"),
        float("inf"),
        Decimal("-0.01"),
        -3,
        "ten",
        True,
        Decimal("1e10"),
    ],
)
def test_an_amount_the_cart_can_not_hold_is_refused_and_changes_nothing(loose, bad):
    loose.prices.update({"GOOD": Decimal("1.00"), "BAD": bad})
    loose.discounts["BADCODE"] = ("fixed", bad, Decimal(0))
    cart = service.add_line(service.open_cart().id, "GOOD")
    events = CartEvent.objects.filter(cart_id=cart.id).count()
    with pytest.raises(CatalogDataError, match="the catalog gave the price of 'BAD'"):
        service.add_line(cart.id, "BAD")
    with pytest.raises(CatalogDataError, match="the catalog gave the value of code 'BADCODE'"):
        service.apply_discount(cart.id, "BADCODE")
    assert CartEvent.objects.filter(cart_id=cart.id).count() == events
    assert service.get_cart(cart.id) == cart
