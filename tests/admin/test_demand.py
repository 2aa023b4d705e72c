"""The demand list: the read model, read-only, sortable, with the catalog's names."""

from __future__ import annotations

import pytest

from cartsvc import demand
from tests.admin.conftest import page_text
from tests.factories import logged_in, make_cart

pytestmark = pytest.mark.django_db

DEMAND = "/admin/cartsvc/demanditem/"


@pytest.fixture
def in_carts(catalog):
    make_cart({"SKU-1": 1, "SKU-2": 4})
    make_cart({"SKU-2": 1, "SKU-3": 2})
    demand.rebuild()


def skus(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return [item.sku for item in response.context["cl"].result_list]


def test_the_list_shows_units_carts_and_names_most_units_first(staff_client, in_carts):
    response = staff_client.get(DEMAND)

    assert skus(response) == ["SKU-2", "SKU-3", "SKU-1"]
    text = page_text(response)
    assert "SKU-2 Product SKU-2 5 2" in text
    assert "SKU-1 Product SKU-1 1 1" in text


@pytest.mark.parametrize(
    ("column", "expected"),
    [("0", ["SKU-1", "SKU-2", "SKU-3"]), ("2", ["SKU-1", "SKU-3", "SKU-2"])],
)
def test_the_list_sorts_by_a_column(staff_client, in_carts, column, expected):
    # o=0: by sku; o=2: by units, fewest first (columns from 0: sku, name, units, carts).
    response = staff_client.get(DEMAND, {"o": column})
    assert skus(response) == expected


def test_nothing_can_be_changed_or_added(staff_client, in_carts):
    body = staff_client.get(DEMAND).content.decode()
    assert 'href="/admin/cartsvc/demanditem/SKU-2/change/"' not in body
    assert staff_client.get(f"{DEMAND}add/").status_code == 403
    assert staff_client.post(f"{DEMAND}SKU-2/delete/").status_code in (403, 302)
    assert skus(staff_client.get(DEMAND)) == ["SKU-2", "SKU-3", "SKU-1"]


def test_a_shopper_does_not_get_the_list(shopper, in_carts):
    response = logged_in(shopper).get(DEMAND)
    assert response.status_code == 302  # to the admin's login
