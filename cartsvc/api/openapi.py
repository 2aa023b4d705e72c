"""The OpenAPI 3.1 document of /api/v1/, kept in the repo and served at /api/v1/openapi.json.

Its paths are written here; its schemas are generated from the models of contract.py (the
request bodies the views check with them, the response bodies serialization.py writes), and
its error codes come from the API's status table (errors.py). tests/api/test_openapi.py
checks that it is valid OpenAPI and lists exactly the routes and methods of urls.py, and
schemathesis checks every response against it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from cartsvc.api import contract
from cartsvc.api.errors import STATUS_BY_CODE
from cartsvc.api.inputs import HISTORY_MAX_PAGE, HISTORY_PAGE, MAX_BODY, MAX_KEY, MAX_VERSION

JSON = "application/json"


def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


_ERRORS = {
    400: "Malformed JSON, or an invalid field, parameter or header (named by `field`).",
    401: "No one is logged in (the session cookie of a staff user is needed).",
    403: "The user logged in is not staff.",
    404: "Unknown cart or line, or a cart the caller may not see.",
    409: (
        "The cart is not open (checked out, expired or merged); or, at checkout, prices moved"
        " since the cart was shown (`prices_changed`, with `changes`): the cart is left"
        " re-priced, review it and check out again."
    ),
    412: "If-Match names a version the cart has moved on from.",
    413: f"The request body is over {MAX_BODY} bytes.",
    415: "POST and PATCH need Content-Type: application/json (charset utf-8 allowed).",
    503: (
        "Retry after Retry-After seconds. busy: the cart is too busy right now;"
        " database_unavailable: the database could not be reached, nothing was applied;"
        " outcome_unknown: the connection was lost while the change was committed, so it may"
        " have been applied (read the cart, or retry with the same Idempotency-Key: it answers"
        " the first outcome, or applies the change once)."
    ),
}


def _error_schema(codes: list[str]) -> dict[str, Any]:
    """The Error body, its code one of `codes`."""
    only = {"properties": {"code": {"enum": codes}}}
    return {"allOf": [ref("schemas", "Error"), {"properties": {"error": only}}]}


def _error(status: int, codes422: list[str] | None = None) -> dict[str, Any]:
    """An error response; its codes are the API's for the status, a 422's the operation's."""
    if status == 422:
        description, codes = "A business rule refused the command.", codes422 or []
    else:
        description = _ERRORS[status]
        codes = [code for code, answer in STATUS_BY_CODE.items() if answer == status]
    return {"description": description, "content": _json(_error_schema(codes))}


ETAG_HEADER = {
    "description": 'The cart\'s version as a strong entity tag: "<version>".',
    "required": True,
    "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
}


def _cart_ok(description: str, status: int = 200) -> dict[str, Any]:
    headers: dict[str, Any] = {"ETag": ETAG_HEADER}
    if status == 201:
        headers["Location"] = {
            "description": "The new cart's URL.",
            "required": True,
            "schema": {"type": "string"},
        }
    return {
        "description": description,
        "headers": headers,
        "content": _json(ref("schemas", "Cart")),
    }


def _body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": _json(schema)}


NO_FIELDS = _body(
    ref("schemas", "NoFields"),
    "No fields: send `{}` (an empty body is accepted too), with Content-Type: application/json"
    " as on every POST.",
)

MUTATION_HEADERS = [ref("parameters", "IfMatch"), ref("parameters", "IdempotencyKey")]


def _mutation(
    summary: str,
    codes422: list[str],
    body: dict[str, Any] | None = None,
    extra: tuple[int, ...] = (),
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _cart_ok("The cart after the command.")}
    for status in sorted({400, 404, 409, 412, 413, 415, 503, *extra}):
        responses[str(status)] = _error(status)
    responses["422"] = _error(422, [*codes422, "idempotency_key_reused"])
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": MUTATION_HEADERS,
        "responses": dict(sorted(responses.items())),
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


def _checkout() -> dict[str, Any]:
    operation = _mutation(
        "Check out: prices and stock are re-checked, stock is taken, the cart freezes"
        " (an empty cart is 400 `invalid`, field `lines`). Saved-for-later items are not"
        " bought: they move to a new open cart of the same owner, named by the `Link` header",
        ["unknown_sku", "insufficient_stock"],
        NO_FIELDS,
    )
    ok = dict(operation["responses"]["200"])
    ok["headers"] = {
        **ok.get("headers", {}),
        "Link": {
            "description": "Only when saved-for-later items were carried: `</api/v1/carts/"
            '{next_cart_id}>; rel="next"`, the cart that now holds them.',
            "schema": {"type": "string"},
        },
    }
    operation["responses"] = {**operation["responses"], "200": ok}
    return operation


CART_PATH = [ref("parameters", "CartId")]
LINE_PATH = [ref("parameters", "CartId"), ref("parameters", "LineId")]

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "cartimage cart API",
        "version": "1.0.0",
        "description": (
            "Shopping carts kept as a memory image. Errors are"
            ' `{"error": {"code", "message", "field"?}}`. Every mutation takes the optional'
            ' headers `If-Match: "<version>"` (412 when the cart has moved on) and'
            " `Idempotency-Key` (a retry with the same key, method, path and body returns the"
            " first answer and applies nothing twice; the same key with another request is 422"
            " `idempotency_key_reused`). A logged-in user's carts are visible to that user only"
            " (404 for anyone else); an anonymous cart's id is its bearer capability."
        ),
    },
    "servers": [{"url": "/api/v1"}],
    "paths": {
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": _json({"type": "object"}),
                    }
                },
            }
        },
        "/products": {
            "get": {
                "summary": "The catalog (active products)",
                "responses": {
                    "200": {
                        "description": "Products, by sku.",
                        "content": _json({"type": "array", "items": ref("schemas", "Product")}),
                    }
                },
            }
        },
        "/stats/demand": {
            "get": {
                "summary": "Demand: per SKU, units and carts in open carts now (staff only)",
                "description": (
                    "The demand read model, kept from the event log by the `cartsvc.demand`"
                    " subscription (so it may lag the carts by the subscription's delay)."
                    " Lines saved for later do not count. Sorted by units, most first (ties"
                    " by sku). Needs the session of a logged-in staff user."
                ),
                "responses": {
                    "200": {
                        "description": "Every SKU some open cart holds.",
                        "content": _json({"type": "array", "items": ref("schemas", "DemandItem")}),
                    },
                    "401": _error(401),
                    "403": _error(403),
                },
            }
        },
        "/carts": {
            "post": {
                "summary": "Open a cart (owned by the caller when logged in)",
                "description": (
                    "The Idempotency-Key of this request is scoped to the caller: the user when"
                    " logged in, else the visitor's session. A caller with no session gets none"
                    " made for it (a retry of a lost answer would not carry its cookie): the"
                    " key alone is the scope, and must be at least 32 characters (a random"
                    " UUID), else 400 invalid."
                ),
                "parameters": [ref("parameters", "OpenIdempotencyKey")],
                "requestBody": NO_FIELDS,
                "responses": {
                    "201": _cart_ok("The new cart.", 201),
                    "400": _error(400),
                    "413": _error(413),
                    "415": _error(415),
                    "422": _error(422, ["idempotency_key_reused"]),
                    "503": _error(503),
                },
            }
        },
        "/carts/{cart_id}": {
            "parameters": CART_PATH,
            "get": {
                "summary": "A cart",
                "parameters": [ref("parameters", "IfNoneMatch")],
                "responses": {
                    "200": _cart_ok("The cart."),
                    "304": {
                        "description": "If-None-Match matched the cart's ETag.",
                        "headers": {"ETag": ETAG_HEADER},
                    },
                    "404": _error(404),
                },
            },
        },
        "/carts/{cart_id}/lines": {
            "parameters": CART_PATH,
            "post": _mutation(
                "Add a product (the same sku and options merge into one line)",
                ["unknown_sku", "insufficient_stock", "quantity_limit"],
                _body(ref("schemas", "AddLine"), "What to add."),
            ),
        },
        "/carts/{cart_id}/lines/{line_id}": {
            "parameters": LINE_PATH,
            "patch": _mutation(
                "Set a line's quantity (0 removes the line)",
                ["insufficient_stock", "quantity_limit"],
                _body(ref("schemas", "SetQuantity"), "The new quantity."),
            ),
            "delete": _mutation(
                "Remove a line or a saved-for-later item (line ids are unique across both)", []
            ),
        },
        "/carts/{cart_id}/lines/{line_id}/save-for-later": {
            "parameters": LINE_PATH,
            "post": _mutation(
                "Move a line to the saved-for-later list (out of the totals)",
                ["quantity_limit"],
                NO_FIELDS,
            ),
        },
        "/carts/{cart_id}/saved/{line_id}/move-to-cart": {
            "parameters": LINE_PATH,
            "post": _mutation(
                "Bring a saved item back into the cart (merging with a line of the same sku and"
                " options)",
                ["quantity_limit"],
                NO_FIELDS,
            ),
        },
        "/carts/{cart_id}/discount": {
            "parameters": CART_PATH,
            "post": _mutation(
                "Apply a discount code",
                ["invalid_discount"],
                _body(ref("schemas", "ApplyDiscount"), "The code."),
            ),
            "delete": _mutation("Remove the discount", []),
        },
        "/carts/{cart_id}/checkout": {
            "parameters": CART_PATH,
            "post": _checkout(),
        },
        "/carts/{cart_id}/events": {
            "parameters": CART_PATH,
            "get": {
                "summary": "The cart's history, oldest first, a page at a time",
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "description": "Only events after this version (default 0).",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": f"Page size (default {HISTORY_PAGE}).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": HISTORY_MAX_PAGE},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "A page of events.",
                        "content": _json(ref("schemas", "EventPage")),
                    },
                    "400": _error(400),
                    "404": _error(404),
                },
            },
        },
    },
    "components": {
        "schemas": contract.schemas(),
        "parameters": {
            "CartId": {
                "name": "cart_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            },
            "LineId": {
                "name": "line_id",
                "in": "path",
                "required": True,
                "schema": {"type": "integer"},
            },
            "IfMatch": {
                "name": "If-Match",
                "in": "header",
                "description": 'The version the client expects: "<version>" (or *).',
                "schema": {"type": "string", "pattern": '^(\\*|"[0-9]{1,10}")$'},
            },
            "IfNoneMatch": {
                "name": "If-None-Match",
                "in": "header",
                "description": "304 when it lists the cart's current ETag (or is *).",
                "schema": {"type": "string"},
            },
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "description": f"1 to {MAX_KEY} visible ASCII characters; kept 24 h or more.",
                "schema": {"type": "string", "pattern": f"^[!-~]{{1,{MAX_KEY}}}$"},
            },
            "OpenIdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "description": (
                    f"32 to {MAX_KEY} visible ASCII characters (a random UUID): without a"
                    " session or a login the key alone is the scope. A caller with a session"
                    f" (or logged in) may use 1 to {MAX_KEY}. Kept 24 h or more."
                ),
                "schema": {"type": "string", "pattern": f"^[!-~]{{32,{MAX_KEY}}}$"},
            },
        },
    },
}


@cache
def document_bytes() -> bytes:
    return orjson.dumps(DOCUMENT)
