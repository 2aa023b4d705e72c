"""Storefront helpers: the session's cart, checkout and the login merge (public API)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from cartsvc import service
from cartsvc.service import OPEN, NotFound

CART_SESSION_KEY = "cartimage_cart_id"
_LOADED = "_cartimage_cart"


def as_user(request: HttpRequest) -> int | None:
    """Who is asking, as the service wants it: the user's id, or None for a visitor."""
    user = getattr(request, "user", None)
    return user.id if user is not None and user.is_authenticated else None


def session_cart_id(request: HttpRequest) -> str | None:
    """The cart id bound to this session, if any (no service call)."""
    value = request.session.get(CART_SESSION_KEY)
    return value if isinstance(value, str) else None


def bind(request: HttpRequest, cart: service.Cart | None) -> None:
    """Bind `cart` to the session (or unbind with None) and remember it for this request."""
    if cart is None:
        request.session.pop(CART_SESSION_KEY, None)
    elif request.session.get(CART_SESSION_KEY) != cart.id:
        request.session[CART_SESSION_KEY] = cart.id
    remember(request, cart)


def remember(request: HttpRequest, cart: service.Cart | None) -> None:
    """Keep the cart this request already loaded, so the mini-cart need not read it again."""
    setattr(request, _LOADED, cart)


def loaded(request: HttpRequest) -> tuple[bool, service.Cart | None]:
    """(True, cart) if this request already loaded the session's cart."""
    if hasattr(request, _LOADED):
        return True, getattr(request, _LOADED)
    return False, None


def session_cart(request: HttpRequest) -> service.Cart | None:
    """The session's cart as it is now (one get_cart), or None if the session has none or
    it is gone. Never touches SQL when the cart is in memory."""
    found, cart = loaded(request)
    if found:
        return cart
    cart_id = session_cart_id(request)
    if cart_id is None:
        return None
    try:
        cart = service.get_cart(cart_id, as_user=as_user(request))
    except NotFound:
        cart = None  # gone or not theirs; a database that is away is not a reason to let go
    remember(request, cart)
    return cart


def current_cart(request: HttpRequest, *, create: bool = False) -> service.Cart | None:
    """The open cart this visitor shops with. A session cart that is no longer open (checked
    out, merged, expired, or unknown) is let go; a logged-in user without one in the session
    gets their open cart; with `create`, a new cart is opened and bound."""
    cart = session_cart(request)
    if cart is not None and cart.status == OPEN:
        return cart
    if session_cart_id(request) is not None:
        bind(request, None)
    user_id = as_user(request)
    if user_id is not None:
        cart = service.cart_for_user(user_id)
        if cart is not None:
            bind(request, cart)
            return cart
    if not create:
        remember(request, None)
        return None
    cart = service.open_cart(owner_id=user_id)
    bind(request, cart)
    return cart


def require_cart_id(request: HttpRequest) -> str:
    """The open cart's id for a mutation on an existing line; NotFound if there is none."""
    cart = current_cart(request)
    if cart is None:
        raise NotFound("cart not found")
    return cart.id


def checkout(request: HttpRequest, **door: Any) -> service.Cart:
    """Check out the session's open cart (NotFound if it has none) and bind what the shopper
    goes on with: the cart the checkout opened for their saved-for-later items, or none (the
    next add opens one). `door` is what the service's door takes (expected_version, ...).
    Returns the order (the checked-out cart)."""
    who = as_user(request)
    order = service.checkout(require_cart_id(request), as_user=who, **door)
    bind(request, service.next_cart(order.id, as_user=who))
    return order


def login_merge(request: HttpRequest, visitor_cart_id: Any, user_id: int) -> service.Cart | None:
    """After login(): fold the visitor's cart into the user's (once) and bind the result."""
    cart = service.merge_on_login(visitor_cart_id, user_id)
    bind(request, cart)
    return cart
