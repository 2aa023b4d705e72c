"""Template filters of the storefront: money, options, a colour per product."""

from __future__ import annotations

import zlib
from decimal import Decimal
from typing import Any

from django import template

from cartsvc.conf import conf

register = template.Library()

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


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
def hue(sku: str) -> int:
    """A stable colour (0-359) for a product's picture tile."""
    return zlib.crc32(str(sku).encode()) % 360


@register.filter
def initials(name: str) -> str:
    """ "Classic Mug" -> "CM" """
    return "".join(word[0] for word in str(name).split()[:2]).upper() or "?"


STATUS_LABELS = {
    "open": "Open",
    "checked_out": "Checked out",
    "merged": "Merged",
    "expired": "Expired",
}


@register.filter
def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, str(status).replace("_", " ").capitalize())
