"""The naive cart's API: what a typical Django shop writes (every read goes to SQL)."""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import transaction
from django.db.models import F

from bench.naivecart.models import NaiveCart, NaiveLine
from carts.models import DiscountCode, Product

ZERO = Decimal("0.00")
CENT = Decimal("0.01")


def open_cart() -> uuid.UUID:
    """Create an empty open cart and return its id."""
    return NaiveCart.objects.create().id


def _discount_amount(code: DiscountCode, subtotal: Decimal) -> Decimal:
    if code.kind == DiscountCode.PERCENT:
        return min(subtotal, (subtotal * code.value / 100).quantize(CENT, rounding=ROUND_HALF_UP))
    return min(subtotal, code.value)


def get_cart(cart_id: Any) -> dict[str, Any]:
    """The cart body: two queries (the header row, then its lines), and a third for the
    discount code when the cart has one."""
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
    discount = None
    total = subtotal
    if cart.discount_code:
        code = DiscountCode.objects.filter(code=cart.discount_code, active=True).first()
        if code is not None and subtotal >= code.min_subtotal:
            amount = _discount_amount(code, subtotal)
            discount = {"code": code.code, "amount": amount}
            total = subtotal - amount
    return {
        "id": str(cart.id),
        "status": cart.status,
        "lines": lines,
        "discount": discount,
        "subtotal": subtotal,
        "total": total,
        "item_count": item_count,
        "updated_at": cart.updated,
    }


def _open_for_update(cart_id: Any) -> NaiveCart:
    """The cart's row, locked until the transaction ends; it must still be open."""
    cart = NaiveCart.objects.select_for_update().get(pk=cart_id)
    if cart.status != "open":
        raise ValueError(f"cart is {cart.status}")
    return cart


def add_line(cart_id: Any, sku: str, quantity: int = 1) -> dict[str, Any]:
    """Add `quantity` of `sku` (merging into the existing line), then return the cart."""
    if quantity < 1:
        raise ValueError("quantity must be a positive integer")
    with transaction.atomic():
        cart = _open_for_update(cart_id)
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


def set_quantity(cart_id: Any, line_id: int, quantity: int) -> dict[str, Any]:
    """Set one line's quantity (checked against stock), then return the cart."""
    if quantity < 1:
        raise ValueError("quantity must be a positive integer")
    with transaction.atomic():
        cart = _open_for_update(cart_id)
        line = NaiveLine.objects.get(pk=line_id, cart=cart)
        product = Product.objects.get(sku=line.sku, active=True)
        if quantity > product.stock:
            raise ValueError(f"only {product.stock} of {line.sku} in stock")
        line.quantity = quantity
        line.save(update_fields=["quantity"])
    return get_cart(cart_id)


def apply_discount(cart_id: Any, code: str) -> dict[str, Any]:
    """Put an active discount code on the cart (its minimum subtotal checked), then return
    the cart; applying the code the cart already has changes nothing."""
    with transaction.atomic():
        cart = _open_for_update(cart_id)
        discount = DiscountCode.objects.get(code__iexact=code.strip(), active=True)
        lines = NaiveLine.objects.filter(cart=cart)
        subtotal = sum((line.unit_price * line.quantity for line in lines), ZERO)
        if subtotal < discount.min_subtotal:
            raise ValueError(f"code {discount.code} needs a subtotal of {discount.min_subtotal}")
        cart.discount_code = discount.code
        cart.save(update_fields=["discount_code", "updated"])
    return get_cart(cart_id)


def checkout(cart_id: Any) -> dict[str, Any]:
    """Freeze an open cart, taking its items from stock in the same transaction, all or
    nothing (products locked in sku order, so two checkouts never deadlock)."""
    with transaction.atomic():
        cart = _open_for_update(cart_id)
        wanted = dict(NaiveLine.objects.filter(cart=cart).values_list("sku", "quantity"))
        if not wanted:
            raise ValueError("an empty cart can not be checked out")
        for sku in sorted(wanted):
            taken = Product.objects.filter(sku=sku, active=True, stock__gte=wanted[sku]).update(
                stock=F("stock") - wanted[sku]
            )
            if not taken:
                # Raising rolls the whole transaction back: no stock taken for any line.
                raise ValueError(f"not enough stock left for {sku}")
        cart.status = "checked_out"
        cart.save(update_fields=["status", "updated"])
    return get_cart(cart_id)
