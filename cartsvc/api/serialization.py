"""Cart state, products and history as the API's JSON bodies (money as "12.50" strings)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson

from cartsvc.service import Cart

CENT = Decimal("0.01")
# Encoded cart bodies by (cart id, version): a version names one state for good (the log is
# append-only), so a body once encoded never changes. Bounded; cleared whole when full.
_BODIES: dict[tuple[str, int], bytes] = {}
MAX_BODIES = 4096


def money(value: Decimal) -> str:
    """A decimal string with exactly two places, never a float nor an exponent."""
    return format(value.quantize(CENT, rounding=ROUND_HALF_UP), "f")


def _line(line: Any) -> dict[str, Any]:
    return {
        "id": line.id,
        "sku": line.sku,
        "name": line.name,
        "options": dict(line.options),
        "quantity": line.quantity,
        "unit_price": money(line.unit_price),
        "line_total": money(line.line_total),
    }


def cart_body(cart: Cart) -> dict[str, Any]:
    """The cart body of the API contract, saved list included (the `Cart` model of
    contract.py documents it)."""
    subtotal = cart.subtotal
    discount = cart.discount
    shown: dict[str, str] | None = None
    total = subtotal
    if discount is not None:
        amount = discount.amount_for(subtotal)
        shown = {"code": discount.code, "amount": money(amount)}
        total = subtotal - amount
    return {
        "id": cart.id,
        "version": cart.version,
        "status": cart.status,
        "currency": cart.currency,
        "lines": [_line(line) for line in cart.lines],
        "saved_for_later": [_line(line) for line in cart.saved],
        "discount": shown,
        "subtotal": money(subtotal),
        "total": money(total),
        "item_count": cart.item_count,
        "updated_at": cart.updated_at,
    }


def cart_json(cart: Cart) -> bytes:
    """`cart_body` encoded, from the per-process cache when this version was seen before."""
    key = (cart.id, cart.version)
    body = _BODIES.get(key)
    if body is None:
        body = orjson.dumps(cart_body(cart))
        if len(_BODIES) >= MAX_BODIES:
            _BODIES.clear()
        _BODIES[key] = body
    return body


def etag(cart: Cart) -> str:
    return f'"{cart.version}"'


def product_body(sku: str, name: str, price: Decimal, stock: int) -> dict[str, Any]:
    return {"sku": sku, "name": name, "price": money(price), "stock": stock}


def event_body(event: dict[str, Any]) -> dict[str, Any]:
    """One history entry: version, type, the event's data (as recorded, in its schema), time."""
    return {
        "version": event["version"],
        "type": event["type"],
        "schema": event["schema"],
        "data": event["data"],
        "at": event["at"],
    }
