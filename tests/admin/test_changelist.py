"""The cart list: columns, one cache call per page, constant queries, filters, search."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cartsvc import operations, service
from cartsvc.admin import InMemoryFilter
from cartsvc.models import Cart
from tests.admin.conftest import CHANGELIST, listed, page_text
from tests.factories import make_cart, make_product
from tests.redis_spy import count_round_trips

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("needs_redis")]


def test_the_list_drops_the_app_sidebar_for_the_tables_width(staff_client, cart):
    response = staff_client.get(CHANGELIST)
    assert response.context["is_nav_sidebar_enabled"] is False
    assert 'id="nav-sidebar"' not in response.content.decode()


def test_the_list_shows_every_column(staff_client, cart, shopper, catalog):
    anonymous = make_cart({"SKU-3": 4})
    operations.evict_cart(anonymous.id)

    response = staff_client.get(CHANGELIST)

    assert set(listed(response)) == {cart.id, anonymous.id}
    body = response.content.decode()
    for column in (
        "cart_id",
        "owner_display",
        "status_display",
        "line_count",
        "total",
        "version",
        "last_activity",
        "in_memory",
    ):
        assert re.search(rf'<th scope="col" class="[^"]*\bcolumn-{column}\b', body), column
    headers = page_text(response)
    for label in ("Id", "Owner", "Status", "Lines", "Total", "Version", "Last activity"):
        assert label in headers, label
    text = page_text(response)
    # Short ids (the search takes them); the full id in the title and on the detail page.
    for shown in (cart, anonymous):
        assert shown.id[:8] in text and shown.id not in text
        assert f'<span class="cart-id" title="{shown.id}">{shown.id[:8]}</span>' in body
    assert "carol@customers.example" in text and "anonymous" in text
    # The total is the service's: subtotal 12.50 - 10% = 11.25; the anonymous cart 4 x 7.50.
    assert service.get_cart(cart.id).total == Decimal("11.25")
    assert service.get_cart(anonymous.id).total == Decimal("30.00")
    assert "€11.25" in text and "€30.00" in text
    rows = {str(c.pk): c for c in response.context["cl"].result_list}
    assert rows[cart.id].line_count == 2 and rows[anonymous.id].line_count == 1
    assert rows[cart.id].version == 4 and rows[anonymous.id].version == 2
    # In memory: Carol's cart yes, the evicted one no (the admin's boolean icons).
    assert rows[cart.id].in_memory_now is True
    assert rows[anonymous.id].in_memory_now is False
    assert 'alt="True"' in body and 'alt="False"' in body


def test_saved_for_later_lines_count_in_neither_lines_nor_total(staff_client, cart):
    service.save_for_later(cart.id, 2)  # SKU-2 (5.50) set aside: subtotal 7.00, -0.70
    response = staff_client.get(CHANGELIST)
    row = response.context["cl"].result_list[0]
    assert row.line_count == 1
    assert row.subtotal == Decimal("7.00")
    assert "€6.30" in page_text(response)
    assert service.get_cart(cart.id).total == Decimal("6.30")


def page_cost(client, n: int) -> tuple[int, int, int]:
    """(SQL queries, Redis round trips, operations.in_memory calls) of one changelist page."""
    calls = mock.Mock(wraps=operations.in_memory)
    with (
        mock.patch.object(operations, "in_memory", calls),
        CaptureQueriesContext(connection) as queries,
        count_round_trips() as trips,
    ):
        response = client.get(CHANGELIST)
    assert len(listed(response)) == n
    return len(queries), trips.count, calls.call_count


def test_a_page_costs_one_cache_call_and_a_constant_number_of_queries(staff_client, catalog):
    for i in range(3):
        made = make_cart({"SKU-1": 1, "SKU-2": i + 1})
        if i % 2:
            operations.evict_cart(made.id)
    staff_client.get(CHANGELIST)  # the session is loaded once outside the measurement
    small = page_cost(staff_client, 3)

    for i in range(12):
        made = make_cart({"SKU-3": 1, "SKU-4": 2, "SKU-5": i + 1})
        if i % 2:
            operations.evict_cart(made.id)
    large = page_cost(staff_client, 15)

    assert small[1:] == (1, 1), small  # ONE pipelined cache call for the whole page
    assert large[1:] == (1, 1), large
    assert small[0] == large[0], (small, large)  # queries do not grow with the page


def test_the_in_memory_column_is_right_for_every_row(staff_client, catalog):
    carts = [make_cart({"SKU-1": 1}) for _ in range(6)]
    for made in carts[::2]:
        operations.evict_cart(made.id)
    rows = staff_client.get(CHANGELIST).context["cl"].result_list
    assert {str(r.pk): r.in_memory_now for r in rows} == {
        c.id: i % 2 == 1 for i, c in enumerate(carts)
    }


# ---------------------------------------------------------------- filters


def test_filter_by_status(staff_client, catalog):
    open_cart = make_cart({"SKU-1": 1})
    done = make_cart({"SKU-2": 1})
    service.checkout(done.id)
    assert listed(staff_client.get(CHANGELIST, {"status": "checked_out"})) == [done.id]
    assert listed(staff_client.get(CHANGELIST, {"status": "open"})) == [open_cart.id]
    assert listed(staff_client.get(CHANGELIST, {"status": "expired"})) == []
    assert set(listed(staff_client.get(CHANGELIST))) == {open_cart.id, done.id}
    text = page_text(staff_client.get(CHANGELIST))
    for label in ("Open", "Checked out", "Expired", "Merged"):
        assert label in text


def test_filter_by_activity_age(staff_client, catalog):
    now = timezone.now()
    ages = {
        "minutes": timedelta(minutes=5),
        "hours": timedelta(hours=5),
        "days": timedelta(days=3),
        "weeks": timedelta(days=30),
    }
    carts = {}
    for name, age in ages.items():
        made = make_cart({"SKU-1": 1})
        Cart.objects.filter(id=made.id).update(last_activity_at=now - age)
        carts[name] = made.id

    def active(value: str) -> set[str]:
        return set(listed(staff_client.get(CHANGELIST, {"active": value})))

    assert active("hour") == {carts["minutes"]}
    assert active("day") == {carts["minutes"], carts["hours"]}
    assert active("week") == {carts["minutes"], carts["hours"], carts["days"]}
    assert active("older") == {carts["weeks"]}
    # Newest activity first by default.
    assert listed(staff_client.get(CHANGELIST)) == list(carts.values())


def test_filter_in_memory_yes_and_no(staff_client, catalog):
    warm = [make_cart({"SKU-1": 1}) for _ in range(2)]
    cold = [make_cart({"SKU-2": 1}) for _ in range(3)]
    for made in cold:
        operations.evict_cart(made.id)

    calls = mock.Mock(wraps=operations.in_memory)
    with mock.patch.object(operations, "in_memory", calls):
        yes = staff_client.get(CHANGELIST, {"in_memory": "yes"})
    assert set(listed(yes)) == {c.id for c in warm}
    assert all(r.in_memory_now for r in yes.context["cl"].result_list)
    assert calls.call_count == 1  # the column reuses the filter's answer

    no = staff_client.get(CHANGELIST, {"in_memory": "no"})
    assert set(listed(no)) == {c.id for c in cold}
    assert not any(r.in_memory_now for r in no.context["cl"].result_list)

    # Combined with another filter: the cache is asked about the remaining carts only.
    service.checkout(warm[0].id)
    operations.rehydrate_cart(warm[0].id)
    both = staff_client.get(CHANGELIST, {"in_memory": "yes", "status": "open"})
    assert listed(both) == [warm[1].id]


def test_the_in_memory_filter_is_bounded_and_says_so(staff_client, catalog, monkeypatch):
    carts = [make_cart({"SKU-1": 1}) for _ in range(4)]  # newest last
    operations.evict_cart(carts[0].id)  # the oldest: outside a window of 2
    operations.evict_cart(carts[3].id)  # the newest: inside it
    monkeypatch.setattr(InMemoryFilter, "scan_limit", 2)

    asked: list[list[str]] = []
    real = operations.in_memory

    def spy(ids):
        asked.append(list(ids))
        return real(ids)

    monkeypatch.setattr(operations, "in_memory", spy)
    no = staff_client.get(CHANGELIST, {"in_memory": "no"})
    yes = staff_client.get(CHANGELIST, {"in_memory": "yes"})

    assert listed(no) == [carts[3].id]
    assert listed(yes) == [carts[2].id]
    assert all(len(ids) <= 2 for ids in asked)
    assert "looked at the 2 most recently active carts only" in page_text(no)


def test_no_filter_value_leaves_the_list_alone(staff_client, catalog):
    made = make_cart({"SKU-1": 1})
    for params in ({"in_memory": "maybe"}, {"active": "century"}, {"status": "lost"}):
        response = staff_client.get(CHANGELIST, params)
        assert response.status_code == 200
        assert listed(response) == [made.id]


def test_no_facet_counts_even_when_asked(staff_client, catalog):
    make_cart({"SKU-1": 1})
    calls = mock.Mock(wraps=operations.in_memory)
    with mock.patch.object(operations, "in_memory", calls):
        response = staff_client.get(CHANGELIST, {"_facets": "True", "in_memory": "yes"})
    assert response.status_code == 200
    assert "Show counts" not in page_text(response)
    assert calls.call_count == 1


# ---------------------------------------------------------------- search


def search(client, term: str) -> list[str]:
    return listed(client.get(CHANGELIST, {"q": term}))


def test_search_by_full_id_and_by_its_first_digits(staff_client, cart, catalog):
    other = make_cart({"SKU-3": 1})
    assert search(staff_client, cart.id) == [cart.id]
    assert search(staff_client, cart.id.upper()) == [cart.id]
    assert search(staff_client, cart.id[:8]) == [cart.id]
    assert search(staff_client, cart.id.replace("-", "")[:13]) == [cart.id]
    assert search(staff_client, other.id[:6]) == [other.id]


def test_search_by_owner_email(staff_client, cart, catalog):
    make_cart({"SKU-3": 1})
    assert search(staff_client, "carol@customers.example") == [cart.id]
    assert search(staff_client, "CUSTOMERS.example") == [cart.id]
    assert search(staff_client, "nobody@") == []


def test_search_by_sku_lists_each_cart_once(staff_client, cart, catalog):
    make_product("SKU-10", price="1.00")
    other = make_cart({"SKU-10": 1, "SKU-3": 1})
    # Two lines of the same SKU (different options) in one cart: still one row.
    service.add_line(other.id, "SKU-3", 1, {"size": "L"})
    assert search(staff_client, "SKU-1") == [cart.id]  # exact: not SKU-10
    assert search(staff_client, "sku-10") == [other.id]
    assert search(staff_client, "SKU-3") == [other.id]
    assert sorted(search(staff_client, "SKU-9")) == []
    # Every word must match: a cart holding both SKUs.
    assert search(staff_client, "SKU-3 SKU-10") == [other.id]
    assert search(staff_client, "SKU-1 SKU-10") == []
    response = staff_client.get(CHANGELIST, {"q": "SKU-3"})
    assert response.context["cl"].result_count == 1


def test_search_survives_odd_input(staff_client, cart):
    for term in ("'", '"', "' '", "%", "0" * 40, "----", "\\", "<script>"):
        response = staff_client.get(CHANGELIST, {"q": term})
        assert response.status_code == 200, term


def test_the_search_box_says_what_it_searches(staff_client, cart):
    response = staff_client.get(CHANGELIST)
    assert "A cart id (or its first digits)" in page_text(response)


@pytest.mark.parametrize("order", ["1", "-1", "4", "-4", "5", "2", "3"])
def test_sorting_by_any_sortable_column(staff_client, cart, catalog, order):
    make_cart({"SKU-3": 1, "SKU-4": 1, "SKU-5": 1})
    response = staff_client.get(CHANGELIST, {"o": order})
    assert len(listed(response)) == 2
