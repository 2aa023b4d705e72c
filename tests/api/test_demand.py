"""GET /api/v1/stats/demand: the demand read model, for staff only."""

from __future__ import annotations

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from cartsvc import demand
from tests.api.conftest import call, error_of
from tests.factories import logged_in, make_cart

pytestmark = pytest.mark.django_db

URL = "stats/demand"


@pytest.fixture
def as_staff(db) -> Client:
    return logged_in(get_user_model().objects.create_user("stock-planner", is_staff=True))


def test_staff_get_the_skus_in_open_carts_most_units_first(as_staff, catalog):
    make_cart({"SKU-1": 1, "SKU-2": 4})
    make_cart({"SKU-2": 1, "SKU-3": 2})
    demand.rebuild()  # as the subscription would have, from the log

    response = call(as_staff, "GET", URL)

    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    assert orjson.loads(response.content) == [
        {"sku": "SKU-2", "name": "Product SKU-2", "units": 5, "carts": 2},
        {"sku": "SKU-3", "name": "Product SKU-3", "units": 2, "carts": 1},
        {"sku": "SKU-1", "name": "Product SKU-1", "units": 1, "carts": 1},
    ]


def test_no_one_logged_in_is_401(cart, client):
    response = call(client, "GET", URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_a_shopper_is_403(as_alice):
    response = call(as_alice, "GET", URL)
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


def test_an_inactive_staff_user_is_refused(db):
    user = get_user_model().objects.create_user("gone", is_staff=True)
    client = logged_in(user)
    user.is_active = False
    user.save()
    assert call(client, "GET", URL).status_code in (401, 403)


def test_it_only_answers_get(as_staff):
    response = call(as_staff, "POST", URL, {})
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
