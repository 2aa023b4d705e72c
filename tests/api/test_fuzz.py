"""Schemathesis against the live app, from the OpenAPI document it serves: no 5xx, and every
response (status, content type, headers, body) conforms to the document.

Random cart ids would only ever find 404s, so most generated cases are pointed at real carts
(fresh for each operation: three lines, a saved item, a discount), real line ids and real skus
and codes; the rest stay as generated. Positive cases must be accepted unless a business rule
(404/409/412/422) or the one documented 400 (checking out an empty cart) says otherwise;
negative cases must be refused with a 4xx.
"""

from __future__ import annotations

import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cartsvc import service
from tests import hypothesis_profiles
from tests.factories import make_discount, make_products

pytestmark = pytest.mark.django_db(transaction=True)

# Generated cases per operation and mode; GET /products and GET /stats/demand take no input,
# so each has one positive case and no negative one: 11 x (32 + 20) + 2 = 574.
EXAMPLES = {GenerationMode.POSITIVE: 32, GenerationMode.NEGATIVE: 20}
MINIMUM_CASES = 500
# Operations that take no input: no negative cases.
NO_INPUT = ("GET /products", "GET /stats/demand")
# Operations for a staff user only (tests/api/test_demand.py).
STAFF_ONLY = ("GET /stats/demand",)
SKUS = ["SKU-1", "SKU-2", "SKU-3", "SKU-4", "SKU-5"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]
CONFIG = {
    "checks": {
        # A well-formed request may still be refused by the cart's rules, or, on a staff
        # operation, for want of a staff login (the fuzzer has none): 401.
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "304", "401", "404", "409", "412", "422"]
        },
    }
}


def fresh_carts() -> list[str]:
    """Three open carts, lines 1-2 in the cart and 3-4 saved for later, with a discount; and
    one cart checked out."""
    carts = []
    for _ in range(3):
        cart = service.open_cart()
        for sku in SKUS[:4]:
            service.add_line(cart.id, sku, 1)
        service.save_for_later(cart.id, 3)
        service.save_for_later(cart.id, 4)
        service.apply_discount(cart.id, "TEN")
        carts.append(cart.id)
    done = service.open_cart()
    service.add_line(done.id, "SKU-1", 1)
    service.checkout(done.id)
    return [*carts, done.id]


def likely(data: st.DataObject) -> bool:
    return data.draw(st.integers(0, 9)) < 8


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def line_ids(case: Any, cart_id: Any) -> list[int]:
    """Ids of the cart's lines the operation acts on (saved items for move-to-cart)."""
    try:
        cart = service.get_cart(cart_id)
    except service.DomainError:
        return [1, 2, 3, 4]
    lines = cart.saved if case.path.endswith("move-to-cart") else cart.lines
    return [line.id for line in lines] or [1, 2, 3, 4]


def aim(case: Any, data: st.DataObject, carts: list[str]) -> None:
    """Point most cases at real things; leave the rest as generated."""
    params = case.path_parameters or {}
    if is_uuid(params.get("cart_id")) and likely(data):
        params["cart_id"] = data.draw(st.sampled_from(carts))
    if type(params.get("line_id")) is int and likely(data):
        # A fixed-shape draw: what the cart holds changes as the run goes on.
        ids = line_ids(case, params["cart_id"])
        params["line_id"] = ids[data.draw(st.integers(0, 3)) % len(ids)]
    if not case.meta.generation.mode.is_positive:
        return
    body = case.body
    if isinstance(body, dict):
        if isinstance(body.get("sku"), str) and likely(data):
            body["sku"] = data.draw(st.sampled_from(SKUS))
        if isinstance(body.get("code"), str) and likely(data):
            body["code"] = data.draw(st.sampled_from(["TEN", "FIVER", "ten"]))
        if type(body.get("quantity")) is int and likely(data):
            body["quantity"] = data.draw(st.integers(0 if case.method == "PATCH" else 1, 5))
    headers = case.headers
    if headers and "If-Match" in headers and likely(data):
        del headers["If-Match"]


def fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    carts: list[str],
    base_url: str,
    session: requests.Session,
    statuses: Counter[tuple[str, int]],
    modes: Counter[str],
) -> Any:
    """A Hypothesis test of one operation in one mode, `examples` cases long."""

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=hypothesis_profiles.examples(examples),
        deadline=None,
        database=None,
        # Shrinking on: a failure comes back minimal (the `ci` profile is derandomized, so
        # the shrunk case is the same on every run).
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, data: st.DataObject) -> None:
        aim(case, data, carts)
        session.cookies.clear()
        response = case.call(base_url=base_url, session=session)
        case.validate_response(response, checks=CHECKS)
        statuses[(operation.label, response.status_code)] += 1
        modes[mode.value] += 1

    return run


def test_schemathesis_finds_no_5xx_and_no_response_outside_the_schema(live_server):
    make_products(5, stock=1_000_000)
    make_discount("TEN", "percent", "10")
    make_discount("FIVER", "fixed", "5", min_subtotal="50")
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/v1/openapi.json", config=SchemathesisConfig.from_dict(CONFIG)
    )
    base_url = f"{live_server.url}/api/v1"
    statuses: Counter[tuple[str, int]] = Counter()
    modes: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    # Schemathesis leaves out the document's own path: 13 operations.
    assert len(operations) == 13
    with requests.Session() as session:  # closed: the live server's thread lets go of the DB
        for operation in operations:
            carts = fresh_carts()
            for mode, examples in EXAMPLES.items():
                if mode == GenerationMode.NEGATIVE and operation.label in NO_INPUT:
                    continue
                fuzz(operation, mode, examples, carts, base_url, session, statuses, modes)()
    total = sum(statuses.values())
    print(f"\nschemathesis: {total} cases ({dict(modes)})")
    for (label, status), count in sorted(statuses.items()):
        print(f"  {label}: {status} x {count}")
    assert total >= MINIMUM_CASES
    # Both the happy paths and the refusals were exercised, on every operation.
    for operation in operations:
        seen = {status for (label, status) in statuses if label == operation.label}
        if operation.label not in STAFF_ONLY:  # the fuzzer is no one: 401 only
            assert any(200 <= s < 300 for s in seen), (operation.label, seen)
        if operation.method != "get" or "{" in operation.path:
            assert any(400 <= s < 500 for s in seen), (operation.label, seen)


def test_a_failing_case_is_shrunk():
    """The fuzz test's settings let Hypothesis shrink what it found (a minimal failure)."""
    operation = SimpleNamespace(as_strategy=lambda generation_mode: st.integers())
    run = fuzz(operation, GenerationMode.POSITIVE, 1, [], "", None, Counter(), Counter())
    assert Phase.shrink in run._hypothesis_internal_use_settings.phases
    assert hypothesis_profiles.PROFILE != "ci" or settings.default.derandomize
