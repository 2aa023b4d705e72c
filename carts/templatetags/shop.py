"""Template filters of the storefront: the app's money, options and status, a colour per product."""

from __future__ import annotations

import zlib

from django import template

from cartsvc.templatetags.cartimage import money, options, status_label

register = template.Library()
register.filter("money", money)
register.filter("options", options)
register.filter("status_label", status_label)


@register.filter
def hue(sku: str) -> int:
    """A stable colour (0-359) for a product's picture tile."""
    return zlib.crc32(str(sku).encode()) % 360


@register.filter
def initials(name: str) -> str:
    """ "Classic Mug" -> "CM" """
    return "".join(word[0] for word in str(name).split()[:2]).upper() or "?"


@register.filter
def lookup(mapping: dict, key: object) -> object:
    """`notes|lookup:line.id`: the mapping's value for key, or None."""
    return mapping.get(key) if hasattr(mapping, "get") else None
