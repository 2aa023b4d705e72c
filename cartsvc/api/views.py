"""The JSON API, /api/v1/ (its contract: contract.py, openapi.py): lean views over the service.

Who the caller is: Django's session (the cookie the storefront sets) when there is one; a user
logged in that way owns the carts they open and nobody else sees them (404). An anonymous
cart's id is its bearer capability. Reading a cart with no session cookie costs no SQL: the
anonymous user is known without loading a session, and the cart comes from memory.

CSRF. The views are exempt from Django's token check, and are still CSRF-safe because every
request that could change state is one a browser will not send across origins without a CORS
preflight, and the API answers no preflight (no CORS headers, no OPTIONS):

* POST and PATCH are refused with 415 unless `Content-Type: application/json`, even with an
  empty body. An HTML form can only send `application/x-www-form-urlencoded`,
  `multipart/form-data` or `text/plain`, and a cross-origin `fetch` without a preflight may
  only use those too (or send no Content-Type at all, which is also refused); any other
  media type makes the browser ask first, and the answer does not allow it.
* PATCH and DELETE are not "simple" methods: a browser always preflights them cross-origin.

So a page on another origin can not make a visitor's browser mutate their cart, with or
without the session cookie. If CORS is ever enabled for /api/v1/, this argument no longer
holds and the views must check Django's CSRF token for session-authenticated requests.

Idempotency-Key scopes: a cart mutation's key is scoped to the cart; POST /carts, which has no
cart yet, scopes it to the caller: "user:<id>" when logged in, else "session:<key>" of the
visitor's existing session. A caller with no session gets none made for it: a retry sent
because the first answer was lost never carries the cookie that answer set, so a session
made for the purpose could never match a retry, and would only be one more row per call.
For such a caller the key alone is the scope, and so it must be unguessable (at least
ANONYMOUS_KEY_MIN characters, as a random UUID is): a key known to another client would
give them the cart, as its id would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from cartsvc import demand, service
from cartsvc.api import inputs
from cartsvc.api.contract import AddLine, ApplyDiscount, NoFields, SetQuantity, parse
from cartsvc.api.errors import (
    JSON,
    ApiError,
    error_response,
    from_api_error,
    from_domain_error,
    invalid,
    json_response,
)
from cartsvc.api.openapi import document_bytes
from cartsvc.api.serialization import cart_json, etag, event_body, product_body
from cartsvc.catalog import catalog
from cartsvc.domain import DatabaseUnavailable, InvalidDiscount, UnknownSku
from cartsvc.service import Cart, DomainError

log = logging.getLogger("cartsvc.api")

Handler = Callable[..., HttpResponse]


def endpoint(**handlers: Handler) -> Callable[..., HttpResponse]:
    """One URL, a handler per method; every refusal (ApiError, DomainError) becomes the JSON
    error body, and a method not listed is 405 with Allow."""
    documented = handlers
    if "GET" in handlers:
        # HEAD is GET without the body (RFC 9110), with the same status and headers.
        handlers = {**handlers, "HEAD": handlers["GET"]}
    allow = ", ".join(handlers)

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        response = _answer(request, kwargs)
        # Every answer is about one caller's carts (or says who may not see them): no shared
        # cache may keep it, and the browser need not either (ETag revalidation still works).
        response.headers.setdefault("Cache-Control", "private, no-store")
        if request.method == "HEAD":
            length = len(response.content)
            response.content = b""
            response["Content-Length"] = str(length)
        return response

    def _answer(request: HttpRequest, kwargs: dict[str, Any]) -> HttpResponse:
        handler = handlers.get(request.method or "")
        if handler is None:
            return error_response(
                "method_not_allowed",
                f"{request.method} is not allowed here; use {allow}",
                headers={"Allow": allow},
            )
        try:
            inputs.no_chunked_body(request)
            return handler(request, **kwargs)
        except DomainError as exc:
            return from_domain_error(exc)
        except ApiError as exc:
            return from_api_error(exc)
        except (OperationalError, InterfaceError):
            # Outside the service (the caller's session or user): the service retries and
            # maps its own losses, and none of this is a change.
            log.warning("database connection lost in %s %s", request.method, request.path)
            if not connection.in_atomic_block:
                connection.close()  # the next request opens a fresh one
            return from_domain_error(
                DatabaseUnavailable("the database can not be reached right now; retry")
            )

    view.handlers = documented  # type: ignore[attr-defined]  # for the OpenAPI test
    return view


def _user(request: HttpRequest) -> int | None:
    """The logged-in user's id, or None. Without a session cookie there is no session and so
    no user: say so without building either (the hot path reads no session)."""
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return None
    user = request.user
    return user.id if user.is_authenticated else None


def _cart_response(cart: Cart, status: int = 200, **headers: str) -> HttpResponse:
    # Vary: the answer depends on who asks (a session may own the cart), even when the
    # session was not read because there was no cookie.
    return HttpResponse(
        cart_json(cart),
        content_type=JSON,
        status=status,
        headers={"ETag": etag(cart), "Vary": "Cookie", **headers},
    )


def _door(request: HttpRequest, cart_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a cart mutation passes to the service's door: If-Match and Idempotency-Key."""
    door: dict[str, Any] = {"expected_version": inputs.expected_version(request)}
    key = inputs.idempotency_key(request)
    if key is not None:
        # The service checks that the caller may see the cart before it replays an answer.
        door["idempotency"] = inputs.idempotency(request, key, cart_id, body)
    return door


def _checked(cart: Cart, request: HttpRequest) -> Cart:
    # A replayed answer is the state recorded then; it must still be the caller's to see.
    if cart.owner_id is not None and cart.owner_id != _user(request):
        raise inputs.not_found()
    return cart


# ---------------------------------------------------------------- catalog and documents


def list_products(request: HttpRequest) -> HttpResponse:
    return json_response(
        [product_body(p.sku, p.name, p.price, p.stock) for p in catalog().listing()]
    )


def openapi_document(request: HttpRequest) -> HttpResponse:
    return HttpResponse(document_bytes(), content_type=JSON)


def _staff(request: HttpRequest) -> None:
    """Only a logged-in staff user (the session cookie) gets through: 401 for no one, 403
    for a user who is not staff."""
    user = request.user if settings.SESSION_COOKIE_NAME in request.COOKIES else None
    if user is None or not user.is_authenticated:
        raise ApiError("not_authenticated", "log in as a staff user to see this")
    if not (user.is_active and user.is_staff):
        raise ApiError("permission_denied", "only staff users may see this")


def demand_report(request: HttpRequest) -> HttpResponse:
    _staff(request)
    rows = demand.demand_rows("-units")
    response = json_response(
        [{"sku": r.sku, "name": r.name, "units": r.units, "carts": r.carts} for r in rows]
    )
    response["Vary"] = "Cookie"
    return response


# ---------------------------------------------------------------- carts


def open_cart(request: HttpRequest) -> HttpResponse:
    body = inputs.json_body(request, required=False)
    parse(NoFields, body)
    user = _user(request)
    key = inputs.idempotency_key(request)
    idem = None
    if key is not None:
        idem = inputs.idempotency(request, key, _caller_scope(request, user, key), body)
    cart = service.open_cart(owner_id=user, idempotency=idem)
    location = reverse("cartimage_api:cart", kwargs={"cart_id": cart.id})
    return _cart_response(_checked(cart, request), 201, Location=location)


ANONYMOUS_KEY_MIN = 32


def _caller_scope(request: HttpRequest, user: int | None, key: str) -> str:
    if user is not None:
        return f"user:{user}"
    if settings.SESSION_COOKIE_NAME in request.COOKIES:
        session = request.session
        session.get("api_client")  # loads it: an unknown cookie leaves it without a key
        if session.session_key is not None:
            return f"session:{session.session_key}"
    if len(key) < ANONYMOUS_KEY_MIN:
        raise invalid(
            "Idempotency-Key",
            f"without a session, an Idempotency-Key opening a cart is its only scope: use at"
            f" least {ANONYMOUS_KEY_MIN} random characters (a UUID is 36)",
        )
    return "anonymous"


def get_cart(request: HttpRequest, cart_id: str) -> HttpResponse:
    cart = service.get_cart(inputs.cart_id(cart_id), as_user=_user(request))
    tag = etag(cart)
    match = request.META.get("HTTP_IF_NONE_MATCH")
    if match is not None and _matches(match, tag):
        return HttpResponse(status=304, headers={"ETag": tag, "Vary": "Cookie"})
    return _cart_response(cart)


def _matches(header: str, tag: str) -> bool:
    """If-None-Match's weak comparison: any listed tag, W/ or not, or *."""
    for item in header.split(","):
        item = item.strip()
        if item == "*" or item.removeprefix("W/") == tag:
            return True
    return False


def add_line(request: HttpRequest, cart_id: str) -> HttpResponse:
    key = inputs.cart_id(cart_id)
    body = inputs.json_body(request, required=True)
    command = parse(AddLine, body)
    sku, options = command.sku, command.options
    # The idempotency fingerprint reads the body as parsed: 2.0 and 2 are one request.
    quantity = body["quantity"] = command.quantity
    door = _door(request, key, body)
    if "\x00" in sku:  # no product has one (and PostgreSQL text can not hold it)
        raise UnknownSku(f"unknown sku {sku!r}", field="sku")
    cart = service.add_line(key, sku, quantity, options, as_user=_user(request), **door)
    return _cart_response(_checked(cart, request))


def set_quantity(request: HttpRequest, cart_id: str, line_id: str) -> HttpResponse:
    key, line = inputs.cart_id(cart_id), inputs.line_id(line_id)
    body = inputs.json_body(request, required=True)
    quantity = body["quantity"] = parse(SetQuantity, body).quantity
    door = _door(request, key, body)
    cart = service.set_quantity(key, line, quantity, as_user=_user(request), **door)
    return _cart_response(_checked(cart, request))


def _line_command(command: Callable[..., Cart]) -> Handler:
    """A command on one line (or saved item) that takes no fields."""

    def handle(request: HttpRequest, cart_id: str, line_id: str) -> HttpResponse:
        key, line = inputs.cart_id(cart_id), inputs.line_id(line_id)
        body = inputs.json_body(request, required=False)
        parse(NoFields, body)
        door = _door(request, key, body)
        return _cart_response(_checked(command(key, line, as_user=_user(request), **door), request))

    return handle


def _cart_command(command: Callable[..., Cart]) -> Handler:
    """A command on the whole cart that takes no fields."""

    def handle(request: HttpRequest, cart_id: str) -> HttpResponse:
        key = inputs.cart_id(cart_id)
        body = inputs.json_body(request, required=False)
        parse(NoFields, body)
        door = _door(request, key, body)
        return _cart_response(_checked(command(key, as_user=_user(request), **door), request))

    return handle


def apply_discount(request: HttpRequest, cart_id: str) -> HttpResponse:
    key = inputs.cart_id(cart_id)
    body = inputs.json_body(request, required=True)
    code = parse(ApplyDiscount, body).code
    door = _door(request, key, body)
    if "\x00" in code:
        raise InvalidDiscount(f"unknown discount code {code!r}", field="code")
    cart = service.apply_discount(key, code, as_user=_user(request), **door)
    return _cart_response(_checked(cart, request))


def checkout(request: HttpRequest, cart_id: str) -> HttpResponse:
    """The checked-out cart; `Link: <.../carts/{next}>; rel="next"` names the cart that now
    holds the saved-for-later items, when the checkout carried some there."""
    key = inputs.cart_id(cart_id)
    body = inputs.json_body(request, required=False)
    parse(NoFields, body)
    door = _door(request, key, body)
    who = _user(request)
    cart = _checked(service.checkout(key, as_user=who, **door), request)
    following = service.next_cart(cart.id, as_user=who)
    if following is None:
        return _cart_response(cart)
    url = reverse("cartimage_api:cart", args=[following.id])
    return _cart_response(cart, Link=f'<{url}>; rel="next"')


def history(request: HttpRequest, cart_id: str) -> HttpResponse:
    after = inputs.query_int(request, "after", 0, 0, inputs.MAX_VERSION)
    limit = inputs.query_int(request, "limit", inputs.HISTORY_PAGE, 1, inputs.HISTORY_MAX_PAGE)
    rows = service.history(inputs.cart_id(cart_id), after, limit + 1, as_user=_user(request))
    page = rows[:limit]
    next_after = page[-1]["version"] if len(rows) > limit else None
    return json_response({"events": [event_body(row) for row in page], "next_after": next_after})


def unknown_route(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response("not_found", f"no such endpoint: {request.path}")


# ---------------------------------------------------------------- the URLs' views

products = endpoint(GET=list_products)
openapi = endpoint(GET=openapi_document)
carts = endpoint(POST=open_cart)
demand_stats = endpoint(GET=demand_report)
cart = endpoint(GET=get_cart)
lines = endpoint(POST=add_line)
line = endpoint(PATCH=set_quantity, DELETE=_line_command(service.remove_line))
save_for_later = endpoint(POST=_line_command(service.save_for_later))
move_to_cart = endpoint(POST=_line_command(service.move_to_cart))
discount = endpoint(POST=apply_discount, DELETE=_cart_command(service.remove_discount))
checkout = endpoint(POST=checkout)
events = endpoint(GET=history)
not_found = csrf_exempt(unknown_route)
