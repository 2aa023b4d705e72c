"""The demo catalog adapter behind `cartsvc.catalog.Catalog`."""

from __future__ import annotations

from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F

from carts.models import DiscountCode, Product
from cartsvc.catalog import DiscountInfo, ProductInfo

_FIELDS = ("sku", "name", "price", "stock", "active")
_PRODUCT_SQL = f"SELECT {', '.join(_FIELDS)} FROM {Product._meta.db_table} WHERE sku = %s"


class DemoCatalog:
    def product(self, sku: str) -> ProductInfo | None:
        # On every add: one indexed lookup, without the ORM's per-query overhead.
        with connection.cursor() as cursor:
            cursor.execute(_PRODUCT_SQL, [sku])
            row = cursor.fetchone()
        if row is None:
            return None
        sku, name, price, stock, active = row
        if not isinstance(price, Decimal):  # SQLite hands raw numerics back as floats
            price = Decimal(str(price)).quantize(Decimal("0.01"))
        return ProductInfo(sku, name, price, stock, bool(active))

    def products(self, skus: list[str]) -> dict[str, ProductInfo]:
        rows = Product.objects.filter(sku__in=skus).values_list(*_FIELDS)
        return {row[0]: ProductInfo(*row) for row in rows}

    def listing(self) -> list[ProductInfo]:
        rows = Product.objects.filter(active=True).order_by("sku").values_list(*_FIELDS)
        return [ProductInfo(*row) for row in rows]

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
