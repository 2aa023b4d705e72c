"""Factories: products and carts built through the public service (or, for a state, in memory)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.test import Client

from carts.models import DiscountCode, Product
from cartsvc import domain as d
from cartsvc import service


def make_product(sku: str = "SKU-1", price: str = "10.00", stock: int = 100, **extra) -> Product:
    return Product.objects.create(
        sku=sku,
        name=extra.pop("name", f"Product {sku}"),
        price=Decimal(price),
        stock=stock,
        **extra,
    )


def make_products(n: int, stock: int = 100) -> list[Product]:
    return [make_product(f"SKU-{i}", price=f"{i * 2 + 1}.50", stock=stock) for i in range(1, n + 1)]


def make_discount(code: str = "TEN", kind: str = "percent", value: str = "10", **extra):
    return DiscountCode.objects.create(code=code, kind=kind, value=Decimal(value), **extra)


def make_cart(lines: dict[str, int] | None = None, **open_kwargs) -> service.Cart:
    cart = service.open_cart(**open_kwargs)
    for sku, quantity in (lines or {}).items():
        cart = service.add_line(cart.id, sku, quantity)
    return cart


def logged_in(user, **client_kwargs) -> Client:
    """A test client with `user` logged in (no password check, no hashing)."""
    client = Client(**client_kwargs)
    client.force_login(user)
    return client


def cart_state(**fields) -> d.Cart:
    """A cart's state built in memory (nothing stored), with a line whose options use the
    state's own short keys ("o", "st"): a payload check must not take them for the cart's."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    values = {
        "id": "00000000-0000-4000-8000-000000000001",
        "version": 3,
        "status": d.OPEN,
        "currency": "USD",
        "owner_id": None,
        "lines": (
            d.Line(1, "SKU-1", "Product 1", (("o", "7"), ("st", "closed")), 1, Decimal("1.00")),
        ),
        "discount": None,
        "next_line_id": 2,
        "created_at": at,
        "updated_at": at,
    }
    return d.Cart(**{**values, **fields})
