"""The API's half of the error table: every domain error code has its HTTP status here."""

from __future__ import annotations

import orjson
import pytest

from cartsvc import domain as d
from cartsvc.api.errors import STATUS_BY_CODE, ApiError, from_domain_error
from tests.unit.test_domain import ERROR_CODES, all_subclasses

# The contract's error table: code -> status (the domain's codes are tests/unit/test_domain.py's).
STATUSES = {
    "invalid": 400,
    "not_found": 404,
    "cart_not_open": 409,
    "prices_changed": 409,
    "version_conflict": 412,
    "unknown_sku": 422,
    "insufficient_stock": 422,
    "quantity_limit": 422,
    "invalid_discount": 422,
    "idempotency_key_reused": 422,
    "busy": 503,
    "database_unavailable": 503,
    "outcome_unknown": 503,
}
# The API's own codes: the transport and the routing, never raised by the service.
API_STATUSES = {
    "malformed_json": 400,
    "not_authenticated": 401,
    "permission_denied": 403,
    "method_not_allowed": 405,
    "length_required": 411,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
}


def test_every_domain_error_code_has_a_status_in_the_api():
    codes = {cls.code for cls in all_subclasses(d.DomainError)}
    assert codes == set(ERROR_CODES.values()) == set(STATUSES)
    assert STATUS_BY_CODE == {**STATUSES, **API_STATUSES}


@pytest.mark.parametrize("cls", list(ERROR_CODES), ids=[cls.__name__ for cls in ERROR_CODES])
def test_the_api_answers_each_domain_error_with_its_status(cls):
    response = from_domain_error(cls("for humans", field="quantity"))
    assert response.status_code == STATUSES[cls.code]
    assert orjson.loads(response.content)["error"] == {
        "code": cls.code,
        "message": "for humans",
        "field": "quantity",
        **({"changes": []} if cls is d.PricesChanged else {}),
    }
    assert (response.get("Retry-After") == "1") == (response.status_code == 503)


def test_a_code_set_on_an_instance_gets_its_own_status():
    assert from_domain_error(d.DomainError("too busy", code="busy")).status_code == 503


@pytest.mark.parametrize("code", list(API_STATUSES))
def test_the_api_s_own_refusals_take_their_status_from_the_same_table(code):
    assert ApiError(code, "no").status == API_STATUSES[code]
