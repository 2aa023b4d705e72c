"""The hot path: reading a warm cart over HTTP costs no SQL at all."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.factories import make_cart

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def long_lease(settings):
    # A lease renewal inside the measured request would add its own (rare, by design) query.
    settings.CARTIMAGE = {**settings.CARTIMAGE, "TRUST_LEASE": 60}


def test_get_cart_is_zero_sql_for_an_anonymous_client_without_a_session(catalog):
    cart = make_cart({"SKU-1": 1, "SKU-2": 2, "SKU-3": 1})
    client = Client()
    assert client.get(f"/api/v1/carts/{cart.id}").status_code == 200  # warm
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/api/v1/carts/{cart.id}")
    assert response.status_code == 200
    assert response["ETag"] == '"4"'
    assert [q["sql"] for q in queries.captured_queries] == []
    assert not client.cookies


def test_a_logged_in_read_costs_only_the_session_and_the_user(as_alice, alice, catalog):
    cart = make_cart({"SKU-1": 1}, owner_id=alice.id)
    as_alice.get(f"/api/v1/carts/{cart.id}")
    with CaptureQueriesContext(connection) as queries:
        response = as_alice.get(f"/api/v1/carts/{cart.id}")
    assert response.status_code == 200
    assert len(queries) == 2
