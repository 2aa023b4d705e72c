"""Bench-only views: the framework's ceiling (a constant JSON body) and the naive ORM cart.

They answer the way the API's views do (orjson body, same middleware, same money strings), so
the benchmark compares where the cart state comes from, not how the answer is encoded.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bench.naivecart import service

CONSTANT = orjson.dumps(
    {
        "id": "00000000-0000-4000-8000-000000000000",
        "version": 4,
        "status": "open",
        "lines": [],
        "total": "0.00",
    }
)


def _default(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.quantize(Decimal("0.01")), "f")
    raise TypeError(type(value).__name__)


def _json(body: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(body, default=_default), content_type="application/json", status=status
    )


@require_GET
def constant(request: HttpRequest) -> HttpResponse:
    """The ceiling: the same middleware and the same kind of response, with no work at all."""
    return HttpResponse(CONSTANT, content_type="application/json")


@require_GET
def naive_cart(request: HttpRequest, cart_id: str) -> HttpResponse:
    return _json(service.get_cart(cart_id))


@csrf_exempt
@require_POST
def naive_add(request: HttpRequest, cart_id: str) -> HttpResponse:
    body = orjson.loads(request.body)
    return _json(service.add_line(cart_id, body["sku"], body["quantity"]))


@csrf_exempt
@require_POST
def naive_open(request: HttpRequest) -> HttpResponse:
    return _json(service.get_cart(service.open_cart()), status=201)


@csrf_exempt
@require_http_methods(["PATCH"])
def naive_set_quantity(request: HttpRequest, cart_id: str, line_id: int) -> HttpResponse:
    body = orjson.loads(request.body)
    return _json(service.set_quantity(cart_id, line_id, body["quantity"]))


@csrf_exempt
@require_POST
def naive_discount(request: HttpRequest, cart_id: str) -> HttpResponse:
    body = orjson.loads(request.body)
    return _json(service.apply_discount(cart_id, body["code"]))


@csrf_exempt
@require_POST
def naive_checkout(request: HttpRequest, cart_id: str) -> HttpResponse:
    return _json(service.checkout(cart_id))
