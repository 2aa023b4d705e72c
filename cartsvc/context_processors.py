"""The mini-cart in every page's header."""

from __future__ import annotations

from django.http import HttpRequest

from cartsvc import shop as session
from cartsvc.service import OPEN


def mini_cart(request: HttpRequest) -> dict[str, int]:
    """`cart_count`: items in the session's open cart. At most one service.get_cart call
    (none when the session holds no cart, none when the view already loaded it), which
    is served from memory without SQL when the cart is warm."""
    if not hasattr(request, "session"):
        return {"cart_count": 0}
    found, cart = session.loaded(request)
    if not found:
        if session.session_cart_id(request) is None:
            return {"cart_count": 0}
        cart = session.session_cart(request)
    return {"cart_count": cart.item_count if cart is not None and cart.status == OPEN else 0}
