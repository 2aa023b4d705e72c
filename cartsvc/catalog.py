"""The catalog port: what the cart needs to know about a SKU and a discount code."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Protocol

from django.utils.module_loading import import_string

from cartsvc.conf import conf
from cartsvc.domain import ProductInfo

__all__ = [
    "Catalog",
    "CatalogDataError",
    "CatalogNotConfigured",
    "DiscountInfo",
    "ProductInfo",
    "catalog",
    "money_places",
]


@dataclass(frozen=True, slots=True)
class DiscountInfo:
    code: str
    kind: str  # "percent" or "fixed"
    value: Decimal
    min_subtotal: Decimal
    active: bool = True


class Catalog(Protocol):
    """What a shop implements to sell through carts (see docs/use-in-your-shop.md). Methods
    run inside the request (and, for `reserve`, inside the checkout's transaction); `product`
    and `discount` for a command, while its cart's lock is being taken."""

    def product(self, sku: str) -> ProductInfo | None:
        """The product's current name, price and stock, or None if the sku is unknown."""

    def products(self, skus: list[str]) -> dict[str, ProductInfo]:
        """Several products in one query."""

    def listing(self) -> list[ProductInfo]:
        """Every product on sale, ordered by sku (`GET products` of the JSON API)."""

    def discount(self, code: str) -> DiscountInfo | None:
        """The discount code, or None if unknown."""

    def reserve(self, items: dict[str, int]) -> list[str]:
        """Take `quantity` units of each sku from stock, all or none, inside the caller's
        transaction; returns the skus that were short (nothing was taken then)."""


REQUIRED_METHODS = ("product", "products", "listing", "discount", "reserve")


class CatalogNotConfigured(LookupError):
    """CARTIMAGE["CATALOG"] is not set (`manage.py check` reports it as cartimage.E003)."""


class CatalogDataError(ValueError):
    """The catalog adapter answered an amount the cart can not hold (not a number, not
    finite, negative, or too large for the rows): a bug in the shop's adapter, refused
    before anything is written."""


# The rows hold amounts with two decimals (models: DecimalField(max_digits=12,
# decimal_places=2)); an amount with more places would be rounded by the database while
# memory and the events kept it whole, and `verify_carts` would find the rows differ.
ROW_PLACES = 2
ROW_LIMIT = Decimal(10) ** (12 - ROW_PLACES)
# ISO 4217 currencies without minor units: their prices are whole numbers. Every other
# currency is held to cents (three-decimal currencies too: the rows have two places).
WHOLE_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"}
    | {"RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
)


def money_places(currency: str) -> int:
    """Decimal places of a price in `currency` (2, or 0 for a currency without minor units)."""
    return 0 if currency.upper() in WHOLE_CURRENCIES else ROW_PLACES


def _amount(value: Any, places: int, what: str) -> Decimal:
    """`value` as a Decimal rounded half up (the rounding the cart's totals use,
    `domain.money`) to `places`; anything else is a CatalogDataError."""
    try:
        if isinstance(value, bool):
            raise TypeError
        # A float goes through its shortest repr: 12.345 means 12.345, not 12.3449999...
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise CatalogDataError(f"the catalog gave {what} as {value!r}: not a number") from None
    if not number.is_finite():
        raise CatalogDataError(
            f"the catalog gave {what} as {value!r}: it must be a finite number, 0 or more"
        )
    rounded = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if rounded < 0:  # checked after rounding: -0.001 is a zero price, not a negative one
        raise CatalogDataError(
            f"the catalog gave {what} as {value!r}: it must be a finite number, 0 or more"
        )
    rounded = rounded.copy_abs()
    if rounded >= ROW_LIMIT:
        raise CatalogDataError(
            f"the catalog gave {what} as {value!r}: the cart holds amounts under {ROW_LIMIT}"
        )
    return rounded


def _product(found: ProductInfo) -> ProductInfo:
    places = money_places(conf.CURRENCY)
    return replace(found, price=_amount(found.price, places, f"the price of {found.sku!r}"))


class _Normalized:
    """The adapter behind the port, its amounts normalized where they enter the cart:
    prices and fixed discounts rounded to the currency's places (conf.CURRENCY), percent
    discounts to the rows' two places, so memory, events and rows hold the same number."""

    __slots__ = ("adapter",)

    def __init__(self, adapter: Catalog) -> None:
        self.adapter = adapter

    def product(self, sku: str) -> ProductInfo | None:
        found = self.adapter.product(sku)
        return None if found is None else _product(found)

    def products(self, skus: list[str]) -> dict[str, ProductInfo]:
        return {sku: _product(found) for sku, found in self.adapter.products(skus).items()}

    def listing(self) -> list[ProductInfo]:
        return [_product(found) for found in self.adapter.listing()]

    def discount(self, code: str) -> DiscountInfo | None:
        found = self.adapter.discount(code)
        if found is None:
            return None
        money = money_places(conf.CURRENCY)
        places = ROW_PLACES if found.kind == "percent" else money
        return replace(
            found,
            value=_amount(found.value, places, f"the value of code {found.code!r}"),
            min_subtotal=_amount(
                found.min_subtotal, money, f"the minimum subtotal of code {found.code!r}"
            ),
        )

    def reserve(self, items: dict[str, int]) -> list[str]:
        return self.adapter.reserve(items)


@lru_cache(maxsize=4)
def _build(path: str) -> Catalog:
    return _Normalized(import_string(path)())


def catalog() -> Catalog:
    """The shop's catalog adapter, named by the CATALOG setting (a dotted path to a class
    implementing `Catalog`, instantiated once per process), behind the port's check of the
    amounts it answers (CatalogDataError for one the cart can not hold)."""
    path = conf.CATALOG
    if not path:
        raise CatalogNotConfigured('set CARTIMAGE["CATALOG"] to your catalog adapter class')
    return _build(path)
