"""The demo catalog adapter behind `cartsvc.catalog.Catalog`."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from carts.models import DiscountCode, Product
from cartsvc.catalog import DiscountInfo, ProductInfo

_FIELDS = ("sku", "name", "price", "stock", "active")


class DemoCatalog:
    def product(self, sku: str) -> ProductInfo | None:
        row = Product.objects.filter(sku=sku).values_list(*_FIELDS).first()
        return ProductInfo(*row) if row else None

    def products(self, skus: list[str]) -> dict[str, ProductInfo]:
        rows = Product.objects.filter(sku__in=skus).values_list(*_FIELDS)
        return {row[0]: ProductInfo(*row) for row in rows}

    def discount(self, code: str) -> DiscountInfo | None:
        row = (
            DiscountCode.objects.filter(code__iexact=code)
            .values_list("code", "kind", "value", "min_subtotal", "active")
            .first()
        )
        return DiscountInfo(*row) if row else None

    def reserve(self, items: dict[str, int]) -> list[str]:
        short = []
        with transaction.atomic():
            # Sorted: two checkouts lock the same products in the same order.
            for sku in sorted(items):
                taken = Product.objects.filter(sku=sku, active=True, stock__gte=items[sku]).update(
                    stock=F("stock") - items[sku]
                )
                if not taken:
                    short.append(sku)
            if short:
                transaction.set_rollback(True)
        return short
