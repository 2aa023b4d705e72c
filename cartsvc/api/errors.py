"""The API's error body, {"error": {"code", "message", "field"?}}, and its JSON responses."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse

from cartsvc.service import DomainError

JSON = "application/json"


class ApiError(Exception):
    """A request refused before it reaches the service (headers, media type, body shape)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def invalid(field: str, message: str) -> ApiError:
    """400 `invalid`, naming the field (a body field, a query parameter or a header)."""
    return ApiError(400, "invalid", message, field=field)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), content_type=JSON, status=status, headers=headers)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return json_response({"error": error}, status, headers)


# Codes the service raises whose exception class does not carry the status the API answers.
_STATUS_BY_CODE = {"busy": 503, "database_unavailable": 503, "outcome_unknown": 503}


def from_api_error(exc: ApiError) -> HttpResponse:
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


def from_domain_error(exc: DomainError) -> HttpResponse:
    status = _STATUS_BY_CODE.get(exc.code, exc.status)
    headers = {"Retry-After": "1"} if status == 503 else None
    response = error_response(status, exc.code, exc.message, exc.field, headers)
    changes = getattr(exc, "changes", None)
    if changes is not None:  # prices_changed: what moved, line by line
        body = orjson.loads(response.content)
        body["error"]["changes"] = changes
        response.content = orjson.dumps(body)
    return response
