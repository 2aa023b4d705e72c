"""Bench-only views over django-oscar's basket, answering as the naive cart's views do."""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from bench.naivecart.views import _json
from bench.oscarbasket import service


@require_GET
def basket(request: HttpRequest, basket_id: int) -> HttpResponse:
    return _json(service.get_basket(basket_id, request))


@csrf_exempt
@require_POST
def add(request: HttpRequest, basket_id: int) -> HttpResponse:
    body = orjson.loads(request.body)
    try:
        return _json(service.add_line(basket_id, body["sku"], body["quantity"], request))
    except service.NotPermitted as exc:
        return _json({"error": str(exc)}, status=409)
