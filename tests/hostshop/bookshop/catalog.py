"""The catalog adapter: what cartsvc needs to know about a book (cartsvc.catalog.Catalog)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from bookshop.models import Book, Voucher
from cartsvc.catalog import DiscountInfo, ProductInfo

FIELDS = ("isbn", "title", "price", "stock", "active")


class BookCatalog:
    def product(self, sku: str) -> ProductInfo | None:
        row = Book.objects.filter(isbn=sku).values_list(*FIELDS).first()
        return ProductInfo(*row) if row else None

    def products(self, skus: list[str]) -> dict[str, ProductInfo]:
        return {
            row[0]: ProductInfo(*row)
            for row in Book.objects.filter(isbn__in=skus).values_list(*FIELDS)
        }

    def listing(self) -> list[ProductInfo]:
        rows = Book.objects.filter(active=True).order_by("isbn").values_list(*FIELDS)
        return [ProductInfo(*row) for row in rows]

    def discount(self, code: str) -> DiscountInfo | None:
        fields = ("code", "kind", "value", "min_subtotal", "active")
        row = Voucher.objects.filter(code__iexact=code).values_list(*fields).first()
        return DiscountInfo(*row) if row else None

    def reserve(self, items: dict[str, int]) -> list[str]:
        short = []
        with transaction.atomic():
            for isbn in sorted(items):  # one lock order for every checkout
                taken = Book.objects.filter(isbn=isbn, active=True, stock__gte=items[isbn]).update(
                    stock=F("stock") - items[isbn]
                )
                if not taken:
                    short.append(isbn)
            if short:
                transaction.set_rollback(True)
        return short
