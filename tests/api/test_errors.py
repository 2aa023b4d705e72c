"""Every row of the error table and every bad body: the documented status and code, the JSON
error body, and the cart left exactly as it was (same version, same events, same prices)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from django.test import Client

from carts.models import Product
from cartsvc import service
from tests.api.conftest import API, call, error_of, events_of, version_of
from tests.factories import make_cart

pytestmark = pytest.mark.django_db

ADD = "carts/{cart}/lines"
LINE = "carts/{cart}/lines/{line}"
OK_ADD = {"sku": "SKU-1", "quantity": 1}


@dataclass
class Bad:
    method: str
    path: str
    body: Any = None
    status: int = 400
    code: str = "invalid"
    field: str | None = None
    raw: bytes | None = None
    content_type: str | None = "application/json"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    line: int = 1


BAD_BODIES = {
    # malformed JSON
    "not json": Bad("POST", ADD, raw=b"{sku: 1}", code="malformed_json"),
    "truncated json": Bad(
        "POST", ADD, raw=b'{"sku": "SKU-1", "quantity": 1', code="malformed_json"
    ),
    "NaN": Bad("POST", ADD, raw=b'{"sku": "SKU-1", "quantity": NaN}', code="malformed_json"),
    "empty body": Bad("POST", ADD, raw=b"", code="malformed_json"),
    "lone surrogate": Bad(
        "POST", ADD, raw=b'{"sku": "\\ud800", "quantity": 1}', code="malformed_json"
    ),
    "not utf-8": Bad("POST", ADD, raw=b'{"sku": "\xff", "quantity": 1}', code="malformed_json"),
    "patch not json": Bad("PATCH", LINE, raw=b"quantity=2", code="malformed_json"),
    # the body's shape
    "array body": Bad("POST", ADD, [OK_ADD], field="body"),
    "string body": Bad("POST", ADD, "SKU-1", field="body"),
    "null body": Bad("POST", ADD, raw=b"null", field="body"),
    "missing sku": Bad("POST", ADD, {"quantity": 1}, field="sku"),
    "missing quantity": Bad("POST", ADD, {"sku": "SKU-1"}, field="quantity"),
    "unit_price": Bad("POST", ADD, {**OK_ADD, "unit_price": "0.01"}, field="unit_price"),
    "price": Bad("POST", ADD, {**OK_ADD, "price": 0}, field="price"),
    "line_total on patch": Bad(
        "PATCH", LINE, {"quantity": 1, "line_total": "0"}, field="line_total"
    ),
    "fields on checkout": Bad("POST", "carts/{cart}/checkout", {"total": "0.00"}, field="total"),
    "fields on open": Bad("POST", "carts", {"owner_id": 1}, field="owner_id"),
    # wrong types and values of quantity
    **{
        f"add quantity {value!r}": Bad(
            "POST", ADD, {"sku": "SKU-1", "quantity": value}, field="quantity"
        )
        for value in ("2", 2.5, True, None, -1, 0, -0.0, [1], {"n": 1}, 1e-30)
    },
    **{
        f"patch quantity {value!r}": Bad("PATCH", LINE, {"quantity": value}, field="quantity")
        for value in ("2", 2.5, True, False, None, -1)
    },
    # other fields
    "sku number": Bad("POST", ADD, {"sku": 1, "quantity": 1}, field="sku"),
    "sku null": Bad("POST", ADD, {"sku": None, "quantity": 1}, field="sku"),
    "sku blank": Bad("POST", ADD, {"sku": "  ", "quantity": 1}, field="sku"),
    "sku too long": Bad("POST", ADD, {"sku": "S" * 65, "quantity": 1}, field="sku"),
    "options null": Bad("POST", ADD, {**OK_ADD, "options": None}, field="options"),
    "options list": Bad("POST", ADD, {**OK_ADD, "options": ["red"]}, field="options"),
    "options number value": Bad("POST", ADD, {**OK_ADD, "options": {"size": 4}}, field="options"),
    "options NUL": Bad("POST", ADD, {**OK_ADD, "options": {"size": "M\x00"}}, field="options"),
    "options too many": Bad(
        "POST", ADD, {**OK_ADD, "options": {str(i): "x" for i in range(11)}}, field="options"
    ),
    "options value too long": Bad(
        "POST", ADD, {**OK_ADD, "options": {"a": "x" * 65}}, field="options"
    ),
    "options empty name": Bad("POST", ADD, {**OK_ADD, "options": {"": "x"}}, field="options"),
    "code number": Bad("POST", "carts/{cart}/discount", {"code": 10}, field="code"),
    "code blank": Bad("POST", "carts/{cart}/discount", {"code": ""}, field="code"),
    "code missing": Bad("POST", "carts/{cart}/discount", {}, field="code"),
    # headers
    **{
        f"If-Match {value!r}": Bad(
            "POST", ADD, OK_ADD, field="If-Match", headers={"If-Match": value}
        )
        for value in ("3", 'W/"3"', '"three"', '"3", "4"', '""', '"-3"', '"12345678901"')
    },
    **{
        f"Idempotency-Key {value!r}": Bad(
            "POST", ADD, OK_ADD, field="Idempotency-Key", headers={"Idempotency-Key": value}
        )
        for value in ("", "k" * 129, "two words", "caf\u00e9")
    },
    # media type
    **{
        f"content type {value!r}": Bad(
            "POST", ADD, OK_ADD, 415, "unsupported_media_type", content_type=value
        )
        for value in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "application/json-patch+json",
            "",
        )
    },
    "no content type on a bodyless POST": Bad(
        "POST", "carts/{cart}/checkout", None, 415, "unsupported_media_type", content_type=None
    ),
    "no content type on PATCH": Bad(
        "PATCH", LINE, {"quantity": 1}, 415, "unsupported_media_type", content_type=None
    ),
    "form body on DELETE": Bad(
        "DELETE",
        LINE,
        raw=b"a=1",
        status=415,
        code="unsupported_media_type",
        content_type="application/x-www-form-urlencoded",
    ),
    # size: over 16 KiB is refused whatever it holds
    "17 KiB of JSON": Bad("POST", ADD, {**OK_ADD, "pad": "x" * 17_000}, 413, "payload_too_large"),
    "17 KiB of text": Bad(
        "POST",
        ADD,
        raw=b"x" * 17_000,
        status=413,
        code="payload_too_large",
        content_type="text/plain",
    ),
    # not found
    "unknown line patch": Bad("PATCH", LINE, {"quantity": 1}, 404, "not_found", line=9),
    "unknown line delete": Bad("DELETE", LINE, None, 404, "not_found", line=9),
    "line id not a number": Bad(
        "PATCH", "carts/{cart}/lines/abc", {"quantity": 1}, 404, "not_found"
    ),
    "unknown line save": Bad(
        "POST", "carts/{cart}/lines/{line}/save-for-later", None, 404, "not_found", line=9
    ),
    "line not saved": Bad("POST", "carts/{cart}/saved/{line}/move-to-cart", None, 404, "not_found"),
    # business rules
    "unknown sku": Bad(
        "POST", ADD, {"sku": "NOPE", "quantity": 1}, 422, "unknown_sku", field="sku"
    ),
    "sku with NUL": Bad(
        "POST", ADD, {"sku": "SKU-1\x00", "quantity": 1}, 422, "unknown_sku", field="sku"
    ),
    "inactive sku": Bad("POST", ADD, {"sku": "SKU-5", "quantity": 1}, 422, "unknown_sku"),
    "over stock": Bad(
        "POST", ADD, {"sku": "SKU-4", "quantity": 11}, 422, "insufficient_stock", field="quantity"
    ),
    "over stock on patch": Bad(
        "PATCH", LINE, {"quantity": 51}, 422, "insufficient_stock", field="quantity"
    ),
    "over the line limit": Bad(
        "POST", ADD, {"sku": "SKU-1", "quantity": 98}, 422, "quantity_limit", field="quantity"
    ),
    "over the limit on patch": Bad(
        "PATCH", LINE, {"quantity": 100}, 422, "quantity_limit", field="quantity"
    ),
    # the document's range of quantity is checked before any rule of the cart
    "huge integral float": Bad("POST", ADD, {"sku": "SKU-1", "quantity": 1e30}, field="quantity"),
    "huge quantity": Bad("POST", ADD, {"sku": "SKU-1", "quantity": 2**63}, field="quantity"),
    "quantity over the document": Bad(
        "POST", ADD, {"sku": "SKU-1", "quantity": 2**31}, field="quantity"
    ),
    "patch quantity over the document": Bad("PATCH", LINE, {"quantity": 2**31}, field="quantity"),
    "schema-invalid with a stale If-Match": Bad(
        "PATCH", LINE, {"quantity": 2**35}, field="quantity", headers={"If-Match": '"1"'}
    ),
    "quantity at the document's maximum": Bad(
        "POST",
        ADD,
        {"sku": "SKU-1", "quantity": 2**31 - 1},
        422,
        "quantity_limit",
        field="quantity",
    ),
    "unknown code": Bad(
        "POST", "carts/{cart}/discount", {"code": "NOPE"}, 422, "invalid_discount", field="code"
    ),
    "inactive code": Bad(
        "POST", "carts/{cart}/discount", {"code": "OLD"}, 422, "invalid_discount", field="code"
    ),
    "code under its minimum": Bad(
        "POST", "carts/{cart}/discount", {"code": "FIVER"}, 422, "invalid_discount", field="code"
    ),
    "stale If-Match": Bad(
        "POST", ADD, OK_ADD, 412, "version_conflict", headers={"If-Match": '"2"'}
    ),
    "stale If-Match on delete": Bad(
        "DELETE", LINE, None, 412, "version_conflict", headers={"If-Match": '"4"'}
    ),
}


@pytest.fixture
def shop(catalog):
    Product.objects.filter(sku="SKU-5").update(active=False)
    Product.objects.filter(sku="SKU-4").update(stock=10)
    Product.objects.filter(sku="SKU-1").update(stock=50)


@pytest.mark.parametrize("bad", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_requests_get_their_status_and_code_and_change_nothing(client, shop, bad):
    cart = make_cart({"SKU-1": 2, "SKU-2": 1})
    before = service.get_cart(cart.id)
    path = bad.path.format(cart=cart.id, line=bad.line)
    response = call(
        client,
        bad.method,
        path,
        bad.body,
        raw=bad.raw,
        content_type=bad.content_type,
        headers=bad.headers,
    )
    assert response.status_code == bad.status, response.content
    error = error_of(response)
    assert error["code"] == bad.code
    if bad.field is not None:
        assert error.get("field") == bad.field
    assert service.get_cart(cart.id) == before
    assert events_of(cart.id) == before.version == 3


def test_the_content_length_decides_413_before_the_body_is_read(client, cart):
    response = client.generic(
        "POST",
        f"{API}/carts/{cart.id}/lines",
        orjson.dumps(OK_ADD),
        content_type="application/json",
        CONTENT_LENGTH=str(16 * 1024 + 1),
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert version_of(cart.id) == 3


def test_exactly_16_kib_is_allowed(client, cart):
    body = {**OK_ADD, "options": {"pad": "x"}}
    raw = orjson.dumps(body)
    raw = raw[:-1] + b" " * (16 * 1024 - len(raw)) + b"}"
    assert len(raw) == 16 * 1024
    assert call(client, "POST", f"carts/{cart.id}/lines", raw=raw).status_code == 200


def test_unknown_fields_never_reach_a_price(client, cart):
    response = call(
        client,
        "POST",
        f"carts/{cart.id}/lines",
        {"sku": "SKU-3", "quantity": 1, "unit_price": "0.01", "name": "free"},
    )
    assert response.status_code == 400
    assert service.get_cart(cart.id).line_for("SKU-3", ()) is None


def test_a_cart_that_is_not_open_is_409_for_every_mutation(client, catalog):
    cart = make_cart({"SKU-1": 1, "SKU-2": 1})
    service.save_for_later(cart.id, 2)
    service.checkout(cart.id)
    frozen = service.get_cart(cart.id)
    for method, path, body in [
        ("POST", f"carts/{cart.id}/lines", OK_ADD),
        ("PATCH", f"carts/{cart.id}/lines/1", {"quantity": 3}),
        ("DELETE", f"carts/{cart.id}/lines/1", None),
        ("POST", f"carts/{cart.id}/lines/1/save-for-later", None),
        ("POST", f"carts/{cart.id}/saved/2/move-to-cart", None),
        ("POST", f"carts/{cart.id}/discount", {"code": "TEN"}),
        ("DELETE", f"carts/{cart.id}/discount", None),
        ("POST", f"carts/{cart.id}/checkout", None),
    ]:
        response = call(client, method, path, body)
        assert response.status_code == 409, (method, path, response.content)
        assert error_of(response)["code"] == "cart_not_open"
    assert service.get_cart(cart.id) == frozen


def test_checkout_short_of_stock_is_422_and_takes_nothing(client, cart):
    Product.objects.filter(sku="SKU-2").update(stock=0)
    response = call(client, "POST", f"carts/{cart.id}/checkout")
    assert response.status_code == 422
    assert error_of(response)["code"] == "insufficient_stock"
    assert Product.objects.get(sku="SKU-1").stock == 100
    assert version_of(cart.id) == 3


def test_an_empty_cart_can_not_be_checked_out(client, catalog):
    cart = make_cart()
    response = call(client, "POST", f"carts/{cart.id}/checkout")
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "invalid",
        "message": "an empty cart can not be checked out",
        "field": "lines",
    }
    assert version_of(cart.id) == 1


@pytest.mark.parametrize(
    "path",
    [
        "carts/00000000-0000-4000-8000-000000000000",
        "carts/not-a-uuid",
        "carts/00000000-0000-4000-8000-000000000000/events",
    ],
)
def test_unknown_carts_are_404(client, db, path):
    response = client.get(f"{API}/{path}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "carts/00000000-0000-4000-8000-000000000000/lines"),
        ("PATCH", "carts/00000000-0000-4000-8000-000000000000/lines/1"),
        ("POST", "carts/x/checkout"),
        ("DELETE", "carts/00000000-0000-4000-8000-000000000000/discount"),
    ],
)
def test_mutations_of_unknown_carts_are_404(client, catalog, method, path):
    body = {"quantity": 1} if method == "PATCH" else (OK_ADD if path.endswith("lines") else None)
    response = call(client, method, path, body)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    ["", "nope", "carts/", "products/", "carts/x/y/z/w", "carts/x/lines/1/nope", "v2/carts"],
)
def test_unknown_routes_under_the_api_are_json_404(client, db, path):
    for method in ("GET", "POST", "DELETE"):
        response = call(client, method, f"{API}/{path}")
        assert response.status_code == 404, (method, path)
        assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "method,path,allow",
    [
        ("DELETE", "products", "GET, HEAD"),
        ("GET", "carts", "POST"),
        ("PUT", "carts/{cart}", "GET, HEAD"),
        ("POST", "carts/{cart}", "GET, HEAD"),
        ("GET", "carts/{cart}/lines", "POST"),
        ("POST", "carts/{cart}/lines/1", "PATCH, DELETE"),
        ("PUT", "carts/{cart}/discount", "POST, DELETE"),
        ("GET", "carts/{cart}/checkout", "POST"),
        ("OPTIONS", "carts/{cart}/checkout", "POST"),
        ("POST", "carts/{cart}/events", "GET, HEAD"),
        # HEAD is GET without a body where there is a GET (tests/api/test_http_semantics.py)
        ("HEAD", "carts/{cart}/checkout", "POST"),
    ],
)
def test_wrong_methods_are_json_405_with_allow(client, cart, method, path, allow):
    response = call(client, method, path.format(cart=cart.id), {"quantity": 1})
    assert response.status_code == 405
    assert response["Allow"] == allow
    if method != "HEAD":
        assert error_of(response)["code"] == "method_not_allowed"
    assert version_of(cart.id) == 3


@pytest.mark.parametrize(
    "query,field",
    [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("after=", "after"),
        ("after=1.5", "after"),
        ("after=99999999999", "after"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("limit=%EF%BC%91", "limit"),  # a fullwidth digit
    ],
)
def test_bad_history_parameters_are_400(client, cart, query, field):
    response = client.get(f"{API}/carts/{cart.id}/events?{query}")
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid", field)


def test_errors_never_set_a_session_cookie(cart):
    client = Client()
    call(client, "POST", f"carts/{cart.id}/lines", {"sku": "NOPE", "quantity": 1})
    assert not client.cookies


def test_a_number_with_no_fraction_is_an_integer_as_in_json_schema(client, cart):
    headers = {"Idempotency-Key": "two"}
    first = call(
        client, "POST", f"carts/{cart.id}/lines", {"sku": "SKU-1", "quantity": 2.0}, headers=headers
    )
    assert first.status_code == 200
    again = call(
        client, "POST", f"carts/{cart.id}/lines", {"sku": "SKU-1", "quantity": 2}, headers=headers
    )
    assert again.content == first.content
    assert service.get_cart(cart.id).line(1).quantity == 4


def test_a_cart_too_busy_to_write_is_503_with_retry_after(client, cart, monkeypatch):
    def busy(*args, **kwargs):
        raise service.DomainError("cart is too busy, try again", code="busy")

    monkeypatch.setattr(service, "add_line", busy)
    response = call(client, "POST", f"carts/{cart.id}/lines", OK_ADD)
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert error_of(response)["code"] == "busy"
