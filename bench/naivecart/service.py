"""The naive cart's API: what a typical Django shop writes (every read goes to SQL)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F

from bench.naivecart.models import NaiveCart, NaiveLine
from carts.models import Product

ZERO = Decimal("0.00")


def open_cart() -> uuid.UUID:
    """Create an empty open cart and return its id."""
    return NaiveCart.objects.create().id


def get_cart(cart_id: Any) -> dict[str, Any]:
    """The cart body: two queries (the header row, then its lines)."""
    cart = NaiveCart.objects.get(pk=cart_id)
    lines = []
    subtotal = ZERO
    item_count = 0
    for line in cart.lines.order_by("id"):
        line_total = line.unit_price * line.quantity
        subtotal += line_total
        item_count += line.quantity
        lines.append(
            {
                "id": line.id,
                "sku": line.sku,
                "name": line.name,
                "options": line.options,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line_total,
            }
        )
    return {
        "id": str(cart.id),
        "status": cart.status,
        "lines": lines,
        "subtotal": subtotal,
        "total": subtotal,
        "item_count": item_count,
        "updated_at": cart.updated,
    }


def add_line(cart_id: Any, sku: str, quantity: int = 1) -> dict[str, Any]:
    """Add `quantity` of `sku` (merging into the existing line), then return the cart."""
    if quantity < 1:
        raise ValueError("quantity must be a positive integer")
    with transaction.atomic():
        cart = NaiveCart.objects.select_for_update().get(pk=cart_id)
        if cart.status != "open":
            raise ValueError(f"cart is {cart.status}")
        product = Product.objects.get(sku=sku, active=True)
        line, _created = NaiveLine.objects.get_or_create(
            cart=cart,
            sku=sku,
            defaults={"name": product.name, "unit_price": product.price, "quantity": 0},
        )
        if line.quantity + quantity > product.stock:
            raise ValueError(f"only {product.stock} of {sku} in stock")
        NaiveLine.objects.filter(pk=line.pk).update(quantity=F("quantity") + quantity)
    return get_cart(cart_id)
