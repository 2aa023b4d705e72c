"""Template filters and tags for carts: `{% load cartimage %}`, then money, options, status."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

from cartsvc.conf import conf

register = template.Library()

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}

STATUS_LABELS = {
    "open": "Open",
    "checked_out": "Checked out",
    "merged": "Merged",
    "expired": "Expired",
    "closed": "Closed (owner deleted)",
}


@register.filter
def money(value: Any, currency: str | None = None) -> str:
    """12.5 -> "€12.50" (the currency's symbol, or its code after the amount)."""
    amount = Decimal(value).quantize(Decimal("0.01"))
    code = currency or conf.CURRENCY
    symbol = SYMBOLS.get(code)
    return f"{symbol}{amount:,}" if symbol else f"{amount:,} {code}"


@register.filter
def options(value: Any) -> str:
    """(("colour", "red"), ("size", "M")) -> "Colour: red · Size: M"."""
    return " · ".join(f"{str(k).capitalize()}: {v}" for k, v in value or ())


@register.filter
def status_label(status: str) -> str:
    """ "checked_out" -> "Checked out" """
    return STATUS_LABELS.get(status, str(status).replace("_", " ").capitalize())


@register.simple_tag(takes_context=True)
def cart_count(context: template.Context) -> int:
    """`{% cart_count %}`: items in the visitor's open cart, for a header's mini-cart; the same
    number as the `cart_count` the context processor provides (at most one read, from memory)."""
    from cartsvc.context_processors import mini_cart

    request = context.get("request")
    return mini_cart(request)["cart_count"] if request is not None else 0
