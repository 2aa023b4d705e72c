"""The API's error body, {"error": {"code", "message", "field"?}}, and its JSON responses."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse

from cartsvc.service import DomainError

JSON = "application/json"


# Every error code of the contract and the HTTP status the API answers it with: the codes the
# service raises (its DomainError classes) and the API's own (transport, routing). The domain
# knows no HTTP; tests/api/test_error_statuses.py checks every domain code is here.
STATUS_BY_CODE: dict[str, int] = {
    "malformed_json": 400,
    "invalid": 400,
    "not_authenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "cart_not_open": 409,
    "prices_changed": 409,
    "length_required": 411,
    "version_conflict": 412,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "unknown_sku": 422,
    "insufficient_stock": 422,
    "quantity_limit": 422,
    "invalid_discount": 422,
    "idempotency_key_reused": 422,
    "busy": 503,
    "database_unavailable": 503,
    "outcome_unknown": 503,
}


class ApiError(Exception):
    """A request refused before it reaches the service (headers, media type, body shape)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = STATUS_BY_CODE[code]
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def invalid(field: str, message: str) -> ApiError:
    """400 `invalid`, naming the field (a body field, a query parameter or a header)."""
    return ApiError("invalid", message, field=field)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), content_type=JSON, status=status, headers=headers)


def error_response(
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    status = STATUS_BY_CODE[code]
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return json_response({"error": error}, status, headers)


def from_api_error(exc: ApiError) -> HttpResponse:
    return error_response(exc.code, exc.message, exc.field, exc.headers)


def from_domain_error(exc: DomainError) -> HttpResponse:
    status = STATUS_BY_CODE[exc.code]
    headers = {"Retry-After": "1"} if status == 503 else None
    response = error_response(exc.code, exc.message, exc.field, headers)
    changes = getattr(exc, "changes", None)
    if changes is not None:  # prices_changed: what moved, line by line
        body = orjson.loads(response.content)
        body["error"]["changes"] = changes
        response.content = orjson.dumps(body)
    return response
