"""The catalog port: what the cart needs to know about a SKU and a discount code."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Protocol

from django.utils.module_loading import import_string

from cartsvc.conf import conf
from cartsvc.domain import ProductInfo

__all__ = ["Catalog", "CatalogNotConfigured", "DiscountInfo", "ProductInfo", "catalog"]


@dataclass(frozen=True, slots=True)
class DiscountInfo:
    code: str
    kind: str  # "percent" or "fixed"
    value: Decimal
    min_subtotal: Decimal
    active: bool = True


class Catalog(Protocol):
    """What a shop implements to sell through carts (see docs/use-in-your-shop.md). Methods
    run inside the request (and, for `reserve`, inside the checkout's transaction)."""

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


@lru_cache(maxsize=4)
def _build(path: str) -> Catalog:
    return import_string(path)()


def catalog() -> Catalog:
    """The shop's catalog adapter, named by the CATALOG setting (a dotted path to a class
    implementing `Catalog`, instantiated once per process)."""
    path = conf.CATALOG
    if not path:
        raise CatalogNotConfigured('set CARTIMAGE["CATALOG"] to your catalog adapter class')
    return _build(path)
