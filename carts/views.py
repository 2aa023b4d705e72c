"""Storefront pages: every cart read and write goes through cartsvc.service."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.forms import Form
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotFound,
    HttpResponseRedirect,
    HttpResponseServerError,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from carts.forms import AddToCartForm, CheckoutForm, DiscountForm, QuantityForm, first_error
from carts.models import Product
from cartsvc import service
from cartsvc import shop as session
from cartsvc.catalog import catalog
from cartsvc.conf import conf
from cartsvc.service import CHECKED_OUT, OPEN, DomainError, IdempotencyKeyReused

View = Callable[..., HttpResponse]


# ---------------------------------------------------------------- errors as messages


# What a shopper is told for an error code, when the error's own words do not matter.
_IN_WORDS = {
    "cart_not_open": "That cart has already been checked out. Add a product to start a new cart.",
    "version_conflict": (
        "Your cart changed in the meantime (in another tab?). Please review it and retry."
    ),
    "unknown_sku": "Sorry, that product is no longer available.",
    "idempotency_key_reused": "That form was already sent. Please try again.",
    "database_unavailable": (
        "Sorry, the shop could not save that just now; nothing was changed. Please retry."
    ),
    "outcome_unknown": (
        "Sorry, we lost track of that change: please check your cart before you retry."
    ),
}


def friendly(error: DomainError) -> str:
    """A DomainError in words a shopper understands."""
    code = error.code
    if code == "not_found":
        if error.field == "line_id":
            return (
                "That item is no longer in your cart: it may have been changed in another "
                "tab or window. Here is your cart as it is now."
            )
        return "We could not find your cart; it may have expired. Add a product to start again."
    if code in _IN_WORDS:
        return _IN_WORDS[code]
    if code == "insufficient_stock":
        return f"Sorry: {error.message}."
    if code == "quantity_limit":
        return f"Sorry, {error.message}."
    message = error.message.rstrip(".")
    return message[:1].upper() + message[1:] + "."


def _next_url(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def cart_action(view: View) -> View:
    """A POST-only cart mutation (CSRF-checked by the middleware): a refused command becomes
    a message and a redirect to the cart page, or to the page the form came from."""

    @require_POST
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        before = session.session_cart(request)  # from memory; the view reuses it
        code = before.discount.code if before is not None and before.discount else None
        try:
            response = view(request, *args, **kwargs)
        except DomainError as error:
            messages.error(request, friendly(error))
            return redirect(_next_url(request, reverse("shop:cart")))
        if before is not None and code is not None and view.__name__ != "remove_discount":
            _discount_notice(request, before.id, code)
        return response

    return wrapper


def _discount_notice(request: HttpRequest, cart_id: str, code: str) -> None:
    """The change left the cart where its code no longer applies (the service dropped it):
    say so, as a price change is said. Only for carts that had a code: one read, from memory."""
    try:
        after = service.get_cart(cart_id, as_user=session.as_user(request))
    except DomainError:
        return
    if after.status == OPEN and after.discount is None:
        messages.warning(
            request, f"The code {code} no longer applies to your cart, so it was taken off."
        )


def _invalid(request: HttpRequest, form: Form, default: str = "") -> HttpResponseRedirect:
    messages.error(request, first_error(form))
    return redirect(_next_url(request, default or reverse("shop:cart")))


def _price_notices(request: HttpRequest, cart: service.Cart, changes: list[Any]) -> None:
    names = {line.id: line.name for line in (*cart.lines, *cart.saved)}
    for change in changes:
        name = names.get(change.line_id, "an item")
        messages.warning(
            request, f"Price of {name} changed from {change.old_price} to {change.unit_price}."
        )


# ---------------------------------------------------------------- pages


@require_GET
def product_list(request: HttpRequest) -> HttpResponse:
    products = list(Product.objects.filter(active=True))
    return render(
        request,
        "carts/product_list.html",
        {"products": products, "token": uuid.uuid4().hex, "limit": conf.MAX_LINE_QUANTITY},
    )


def _refreshed(request: HttpRequest, cart_id: str | None) -> tuple[service.Cart | None, list]:
    """The open cart `cart_id` at current prices, with the price changes; (None, []) if it
    is not there for this visitor (gone, someone else's, checked out, merged, expired)."""
    if cart_id is None:
        return None, []
    try:
        cart, changes = service.refresh_prices(cart_id, as_user=session.as_user(request))
    except service.NotFound:
        return None, []  # (a database that is away is no reason to let the cart go)
    return (cart, changes) if cart.status == OPEN else (None, [])


@require_GET
def cart_page(request: HttpRequest) -> HttpResponse:
    """The shopper's cart; prices are brought up to date first, with a notice per change.
    One cart read for the page (the mini-cart reuses it)."""
    cart, changes = _refreshed(request, session.session_cart_id(request))
    who = session.as_user(request)
    if cart is None and who is not None:
        mine = service.cart_for_user(who)
        cart, changes = _refreshed(request, mine.id if mine else None)
    session.bind(request, cart)
    if cart is not None:
        _price_notices(request, cart, changes)
    context = {"cart": cart, "limit": conf.MAX_LINE_QUANTITY, "stock_notes": stock_notes(cart)}
    return render(request, "carts/cart.html", context)


# At or below this many units left, a cart line says how many there are.
LOW_STOCK = 5


def stock_notes(cart: service.Cart | None) -> dict[int, str]:
    """Line id -> "Only N left" (or "Out of stock") for the lines whose product is short:
    fewer left than the cart holds of it, or LOW_STOCK or fewer. One catalog query for all
    the lines; a sku's lines are counted together, as checkout takes them together."""
    if cart is None or not cart.lines:
        return {}
    wanted: dict[str, int] = {}
    for line in cart.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    products = catalog().products(sorted(wanted))
    notes = {}
    for line in cart.lines:
        product = products.get(line.sku)
        if product is None:
            continue  # an unknown sku is the price refresh's business
        left = max(product.stock, 0)
        if left == 0:
            notes[line.id] = "Out of stock"
        elif left < wanted[line.sku] or left <= LOW_STOCK:
            notes[line.id] = f"Only {left} left"
    return notes


def _visible_cart(request: HttpRequest, cart_id: uuid.UUID) -> service.Cart:
    try:
        return service.get_cart(cart_id, as_user=session.as_user(request))
    except service.NotFound:
        raise Http404("cart not found") from None


@require_GET
def cart_detail(request: HttpRequest, cart_id: uuid.UUID) -> HttpResponse:
    """Any cart by id, read-only: 404 for unknown carts and for other people's carts."""
    cart = _visible_cart(request, cart_id)
    return render(request, "carts/cart_detail.html", {"cart": cart})


@require_GET
def order_confirmation(request: HttpRequest, cart_id: uuid.UUID) -> HttpResponse:
    cart = _visible_cart(request, cart_id)
    if cart.status != CHECKED_OUT:
        raise Http404("no such order")
    # Promise an e-mail only to the account that placed the order, and only if it has one.
    user = request.user
    email = user.email if user.is_authenticated and user.id == cart.owner_id else ""
    return render(request, "carts/order.html", {"cart": cart, "email": email})


# ---------------------------------------------------------------- error pages


def _error_page(status: int, title: str, text: str) -> str:
    """A self-contained page (styles inline: no static files, which no server serves with
    DEBUG off) rendered without the request: no database, session or context processor."""
    context = {"status": status, "title": title, "text": text}
    return render_to_string("carts/error.html", context)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: the shop's own "not found" page."""
    text = "We could not find that page. It may have moved, or the link may be mistyped."
    return HttpResponseNotFound(_error_page(404, "Page not found", text))


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the shop's own error page; it needs nothing that could have failed."""
    text = "Something went wrong on our side. Your cart is kept: please try again in a moment."
    return HttpResponseServerError(_error_page(500, "Something went wrong", text))


# ---------------------------------------------------------------- actions


@cart_action
def add_to_cart(request: HttpRequest) -> HttpResponse:
    back = _next_url(request, reverse("shop:product_list"))
    form = AddToCartForm(request.POST)
    if not form.is_valid():
        return _invalid(request, form, back)
    sku, quantity, token = (form.cleaned_data[k] for k in ("sku", "quantity", "token"))
    cart = session.current_cart(request, create=True)
    assert cart is not None
    door: dict[str, Any] = {}
    if token:
        body = {"sku": sku, "quantity": quantity}
        try:
            door["idempotency"] = service.idempotency(f"shop:{cart.id}", token, body)
        except DomainError:
            pass  # a mangled token only loses the double-click protection
    try:
        cart = service.add_line(cart.id, sku, quantity, as_user=session.as_user(request), **door)
    except IdempotencyKeyReused:
        # The same form sent again with another quantity: it was a new intention after all.
        cart = service.add_line(cart.id, sku, quantity, as_user=session.as_user(request))
    session.remember(request, cart)
    line = cart.line_for(sku, ())
    name = line.name if line else sku
    messages.success(request, f"Added {quantity} \u00d7 {name} to your cart.")
    return redirect(back)


@cart_action
def update_quantity(request: HttpRequest, line_id: int) -> HttpResponse:
    form = QuantityForm(request.POST)
    if not form.is_valid():
        return _invalid(request, form)
    quantity = form.cleaned_data["quantity"]
    cart_id = session.require_cart_id(request)
    name = _line_name(request, line_id)
    service.set_quantity(cart_id, line_id, quantity, as_user=session.as_user(request))
    if quantity == 0:
        messages.success(request, f"Removed {name} from your cart.")
    else:
        messages.success(request, f"Updated {name}: quantity {quantity}.")
    return redirect("shop:cart")


def _line_action(command: Callable[..., service.Cart], done: str) -> View:
    """A POST that runs one line command on the session's cart, then says `done`."""

    @cart_action
    def view(request: HttpRequest, line_id: int) -> HttpResponse:
        cart_id = session.require_cart_id(request)
        name = _line_name(request, line_id)
        command(cart_id, line_id, as_user=session.as_user(request))
        messages.success(request, done.format(name=name))
        return redirect("shop:cart")

    return view


remove_line = _line_action(service.remove_line, "Removed {name} from your cart.")
remove_saved = _line_action(service.remove_line, "Removed {name} from your saved items.")
save_for_later = _line_action(service.save_for_later, "Saved {name} for later.")
move_to_cart = _line_action(service.move_to_cart, "Moved {name} back to your cart.")


@cart_action
def apply_discount(request: HttpRequest) -> HttpResponse:
    form = DiscountForm(request.POST)
    if not form.is_valid():
        return _invalid(request, form)
    cart_id = session.require_cart_id(request)
    cart = service.apply_discount(
        cart_id, form.cleaned_data["code"], as_user=session.as_user(request)
    )
    assert cart.discount is not None
    messages.success(request, f"Discount code {cart.discount.code} applied.")
    return redirect("shop:cart")


@cart_action
def remove_discount(request: HttpRequest) -> HttpResponse:
    cart_id = session.require_cart_id(request)
    service.remove_discount(cart_id, as_user=session.as_user(request))
    messages.success(request, "Discount code removed.")
    return redirect("shop:cart")


@cart_action
def checkout(request: HttpRequest) -> HttpResponse:
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        return _invalid(request, form)
    who = session.as_user(request)
    cart = session.current_cart(request)
    if cart is None or not cart.lines:
        messages.error(request, "Your cart is empty: add a product before checking out.")
        return redirect("shop:cart")
    cart, changes = service.refresh_prices(cart.id, as_user=who)
    if changes:
        _price_notices(request, cart, changes)
        messages.warning(request, "Please review the new prices before checking out.")
        return redirect("shop:cart")
    order = session.checkout(request, expected_version=form.cleaned_data["version"])
    # The session now holds the cart the saved-for-later items went to, if any. No thank-you
    # message: the order page itself says it.
    following = session.session_cart(request)
    if following is not None:
        count = len(following.saved)
        items = f"{count} saved item{'s' if count != 1 else ''}"
        messages.info(request, f"Your {items} will wait for you in your cart.")
    return redirect("shop:order", cart_id=order.id)


def _line_name(request: HttpRequest, line_id: int) -> str:
    cart = session.session_cart(request)
    if cart is not None:
        line = cart.line(line_id) or cart.saved_line(line_id)
        if line is not None:
            return line.name
    return "the item"


# ---------------------------------------------------------------- login and logout


class LoginView(auth_views.LoginView):
    """Django's login, then the visitor's cart merges into the user's cart, once."""

    template_name = "carts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: Any) -> HttpResponse:
        request = self.request
        visitor_id = session.session_cart_id(request)
        visitor = session.session_cart(request)
        brought = visitor.item_count if visitor and visitor.owner_id is None else 0
        # login() rotates the session key; the session's data (the cart id) moves along.
        response = super().form_valid(form)
        user = form.get_user()
        cart = session.login_merge(request, visitor_id, user.id)
        messages.success(request, f"Welcome, {user.get_username()}!")
        if brought and cart is not None:
            items = f"{brought} item{'s' if brought != 1 else ''}"
            if cart.id == visitor_id:
                messages.info(request, f"Your cart ({items}) is now saved to your account.")
            else:
                messages.info(
                    request,
                    f"We added the {items} you picked to your saved cart: "
                    f"it now holds {cart.item_count}.",
                )
        return response


class LogoutView(auth_views.LogoutView):
    """Django's logout (POST only): the session, and with it the cart binding, is flushed."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are logged out. See you soon!")
        return response
