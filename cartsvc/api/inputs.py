"""What the API reads from a request: the JSON body, If-Match, Idempotency-Key, ids, queries."""

from __future__ import annotations

import re
from typing import Any

import orjson
from django.http import HttpRequest

from cartsvc import service
from cartsvc.api.errors import ApiError, invalid

MAX_BODY = 16 * 1024
MAX_VERSION = 2**31 - 1
MAX_KEY = 128
HISTORY_PAGE = 50
HISTORY_MAX_PAGE = 200
_DIGITS = frozenset("0123456789")


def not_found(what: str = "cart", field: str | None = None) -> ApiError:
    return ApiError("not_found", f"{what} not found", field=field)


# ---------------------------------------------------------------- ids in the path


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def cart_id(raw: str) -> str:
    """A cart id in its one canonical spelling (lowercase, hyphenated, as the API writes
    it and the storefront's URLs accept it); any other spelling is an unknown cart."""
    if not _CANONICAL_UUID.fullmatch(raw):
        raise not_found()
    return raw


def no_chunked_body(request: HttpRequest) -> None:
    """411 for a body sent without Content-Length (Transfer-Encoding: chunked): Django reads
    only Content-Length bytes, so such a body would be taken for an empty one."""
    if "HTTP_TRANSFER_ENCODING" in request.META and not request.META.get("CONTENT_LENGTH"):
        raise ApiError(
            "length_required",
            "send the request body with a Content-Length header, not chunked",
            field="Content-Length",
        )


def line_id(raw: str) -> int:
    if not raw or len(raw) > 18 or not _DIGITS.issuperset(raw):
        raise not_found("line", "line_id")
    return int(raw)


# ---------------------------------------------------------------- the body


def _media_type_is_json(header: str) -> bool:
    media_type, *params = header.split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset":
            return False
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _content_length(request: HttpRequest) -> int:
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        return max(int(raw), 0)
    except ValueError:
        return 0


def json_body(request: HttpRequest, *, required: bool) -> dict[str, Any]:
    """The request's JSON object, checked in this order: size (413, before anything is read),
    media type (415), syntax (400 malformed_json), an object (400 invalid); its fields are
    the contract's models' to check (contract.parse).

    POST and PATCH always need `Content-Type: application/json`, even with an empty body
    (see the views' note on CSRF); an endpoint that takes no fields accepts an empty body.
    """
    length = _content_length(request)
    if length > MAX_BODY:
        raise ApiError("payload_too_large", f"request bodies are limited to {MAX_BODY} bytes")
    content_type = request.META.get("CONTENT_TYPE", "")
    if (length or request.method != "DELETE") and not _media_type_is_json(content_type):
        raise ApiError(
            "unsupported_media_type",
            "send the request body as application/json (UTF-8)",
            field="Content-Type",
        )
    raw = request.body if length else b""
    if len(raw) > MAX_BODY:
        raise ApiError("payload_too_large", f"request bodies are limited to {MAX_BODY} bytes")
    if not raw.strip():
        if required:
            raise ApiError("malformed_json", "the request body must be a JSON object")
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError("malformed_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("body", "the request body must be a JSON object")
    return body


# ---------------------------------------------------------------- headers and queries


def expected_version(request: HttpRequest) -> int | None:
    """`If-Match: "<version>"` as the version the client expects; `*` or none: no check."""
    raw = request.META.get("HTTP_IF_MATCH")
    if raw is None:
        return None
    value = raw.strip()
    if value == "*":
        return None
    digits = value[1:-1]
    if (
        len(value) < 3
        or value[0] != '"'
        or value[-1] != '"'
        or len(digits) > 10
        or not _DIGITS.issuperset(digits)
    ):
        raise invalid("If-Match", 'If-Match must be one entity tag: "<version>" (or *)')
    return int(digits)


def idempotency_key(request: HttpRequest) -> str | None:
    """The Idempotency-Key header, checked: 1 to MAX_KEY visible ASCII characters."""
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is not None and (
        not 1 <= len(key) <= MAX_KEY or not all("!" <= char <= "~" for char in key)
    ):
        raise invalid(
            "Idempotency-Key", f"Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"
        )
    return key


def idempotency(
    request: HttpRequest, key: str, scope: str, body: dict[str, Any]
) -> service.Idempotency:
    """`key` within `scope`; the fingerprint is the method, the path and the parsed body, so a
    retry must repeat all three."""
    described = {"method": request.method, "path": request.path, "body": body}
    try:
        return service.idempotency(scope, key, described)
    except service.DomainError as exc:
        raise invalid("Idempotency-Key", exc.message) from None


def query_int(request: HttpRequest, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    if not raw or len(raw) > 10 or not _DIGITS.issuperset(raw):
        raise invalid(name, f"{name} must be an integer from {minimum} to {maximum}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise invalid(name, f"{name} must be an integer from {minimum} to {maximum}")
    return value
