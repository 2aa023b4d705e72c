"""Factories: products and carts built through the public service."""

from __future__ import annotations

from decimal import Decimal

from django.test import Client

from carts.models import DiscountCode, Product
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
