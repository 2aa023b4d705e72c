"""Costs counted, not timed: SQL queries, transactions and Redis round trips per operation."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cartsvc import image, service
from tests.factories import make_cart
from tests.redis_spy import count_round_trips

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("needs_redis")]


@pytest.fixture(autouse=True)
def long_lease(settings):
    # A lease renewal inside a measured call would add its own (rare, by design) queries.
    settings.CARTIMAGE = {**settings.CARTIMAGE, "TRUST_LEASE": 60}


def writes(queries: list[dict]) -> list[str]:
    return [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]


@pytest.fixture
def warm_cart(products):
    cart = make_cart({"SKU-1": 1, "SKU-2": 2, "SKU-3": 1})
    service.get_cart(cart.id)  # scripts loaded, lease granted, entry cached
    return cart


def test_hot_read_is_zero_sql_and_one_round_trip(warm_cart):
    with CaptureQueriesContext(connection) as queries, count_round_trips() as trips:
        cart = service.get_cart(warm_cart.id)
    assert cart == warm_cart
    assert len(queries) == 0
    assert trips.count == 1


def test_command_on_a_warm_cart_is_one_transaction_and_two_round_trips(warm_cart):
    line = warm_cart.lines[0]
    with CaptureQueriesContext(connection) as queries, count_round_trips() as trips:
        cart = service.add_line(warm_cart.id, line.sku, 1)
    assert cart.line(line.id).quantity == line.quantity + 1
    # One catalog lookup (price and stock, while the lock is requested), then one statement
    # that is the whole transaction: events appended, rows updated, version bumped.
    assert len(queries) == 2
    (write,) = writes(queries.captured_queries)
    assert write.startswith("WITH h AS (UPDATE cartsvc_cart")
    assert "INSERT INTO cartsvc_cartevent" in write
    assert trips.count <= 3


@pytest.mark.parametrize("caller", ["a visitor", "its owner"])
@pytest.mark.parametrize(
    "command",
    [
        lambda c, who: service.add_line(c.id, "SKU-1", 1, as_user=who),
        lambda c, who: service.remove_line(c.id, c.lines[0].id, as_user=who),
        lambda c, who: service.apply_discount(c.id, "TEN", as_user=who),
        lambda c, who: service.set_quantity(c.id, c.lines[0].id, 3, as_user=who),
    ],
    ids=["add_line", "remove_line", "apply_discount", "set_quantity"],
)
def test_a_callers_command_is_checked_in_the_locks_own_round_trip(products, caller, command):
    """The caller's right to the cart is checked by the lock script itself: two round trips
    (lock, publish), as for a command run by the shop's own code."""
    from django.contrib.auth import get_user_model

    from tests.factories import make_discount

    make_discount("TEN", "percent", "10")
    owner = get_user_model().objects.create_user("owner-c").pk if caller == "its owner" else None
    cart = make_cart({"SKU-1": 1, "SKU-2": 1}, owner_id=owner)
    service.get_cart(cart.id)
    with count_round_trips() as trips:
        command(cart, owner)
    assert trips.count == 2


@pytest.mark.parametrize(
    "command",
    [
        lambda c: service.set_quantity(c.id, c.lines[0].id, 5),
        lambda c: service.remove_line(c.id, c.lines[0].id),
        lambda c: service.add_line(c.id, "SKU-4", 1),
        lambda c: service.save_for_later(c.id, c.lines[0].id),
    ],
)
def test_every_command_is_one_write_statement_and_at_most_three_round_trips(warm_cart, command):
    with CaptureQueriesContext(connection) as queries, count_round_trips() as trips:
        command(warm_cart)
    assert len(writes(queries.captured_queries)) == 1
    assert trips.count <= 3


@pytest.mark.parametrize("extra_events", [0, 120])
@pytest.mark.parametrize("source", ["rows", "events"])
def test_cold_read_is_at_most_two_queries_whatever_the_history(
    products, settings, source, extra_events
):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "REHYDRATE_FROM": source, "SNAPSHOT_EVERY": 50}
    cart = make_cart({"SKU-1": 1, "SKU-2": 1})
    for i in range(extra_events):
        cart = service.set_quantity(cart.id, cart.lines[0].id, 2 + i % 5)
    service.get_cart(cart.id)
    assert image.evict(cart.id)
    with CaptureQueriesContext(connection) as queries:
        assert service.get_cart(cart.id) == cart
    assert len(queries) <= 2


def test_checkout_takes_stock_and_commits_in_one_transaction(warm_cart):
    with CaptureQueriesContext(connection) as queries, count_round_trips() as trips:
        cart = service.checkout(warm_cart.id)
    assert cart.status == "checked_out"
    sql = [q["sql"] for q in queries.captured_queries]
    assert sql.count("BEGIN") == 1 and sql.count("COMMIT") == 1
    begin, commit = sql.index("BEGIN"), sql.index("COMMIT")
    inside = sql[begin:commit]
    assert sum(s.startswith('UPDATE "carts_product"') for s in inside) == 3
    assert sum(s.startswith("WITH h AS (UPDATE cartsvc_cart") for s in inside) == 1
    assert not writes(queries.captured_queries[:begin] + queries.captured_queries[commit + 1 :])
    assert trips.count <= 3


def test_a_read_of_an_absent_cart_costs_what_a_cold_read_costs_every_time(products):
    """The first reader of an unknown id must not leave its single-flight claim behind: the
    readers after it would poll the cache for the whole fill wait (hundreds of commands)."""
    import uuid

    service.get_cart(make_cart({"SKU-1": 1}).id)  # lease granted
    with pytest.raises(service.NotFound):
        service.get_cart(str(uuid.uuid4()))  # every script of the path loaded into Redis
    absent = str(uuid.uuid4())
    for _ in range(3):
        with (
            CaptureQueriesContext(connection) as queries,
            count_round_trips() as trips,
            pytest.raises(service.NotFound),
        ):
            service.get_cart(absent)
        assert trips.count == 2, trips.count  # the read (claims the miss), the release
        assert len(queries) == 1, queries.captured_queries  # the row load, finding nothing


@pytest.mark.parametrize(("quantity", "lookups"), [(5, 1), (1, 0), (0, 0)])
def test_set_quantity_looks_the_stock_up_only_when_the_quantity_goes_up(
    warm_cart, quantity, lookups
):
    line = warm_cart.lines[1]  # SKU-2, quantity 2
    with CaptureQueriesContext(connection) as queries:
        service.set_quantity(warm_cart.id, line.id, quantity)
    catalog = [q for q in queries.captured_queries if "carts_product" in q["sql"]]
    assert len(catalog) == lookups
    assert len(writes(queries.captured_queries)) == 1
