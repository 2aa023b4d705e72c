"""A command's catalog lookup runs while its cart's lock is requested (image.execute's
`meanwhile`): the lookup's error is the answer, and no lock is left held."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from carts.catalog import DemoCatalog
from cartsvc import domain as d
from cartsvc import image, service
from tests.factories import make_cart, make_discount
from tests.redis_spy import count_round_trips, record_requests_and_replies

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("needs_redis")]

LOOKUPS = {
    "add_line": lambda cart: service.add_line(cart.id, "SKU-2", 1),
    "apply_discount": lambda cart: service.apply_discount(cart.id, "TEN"),
}


@pytest.fixture(autouse=True)
def long_lease(settings):
    # A lease renewal inside a measured call would add its own round trips and queries.
    settings.CARTIMAGE = {**settings.CARTIMAGE, "TRUST_LEASE": 60}


@pytest.fixture
def warm_cart(products):
    make_discount("TEN", "percent", "10")
    cart = make_cart({"SKU-1": 1})
    service.get_cart(cart.id)  # scripts loaded, lease granted, entry cached
    return cart


@pytest.mark.parametrize("command", LOOKUPS.values(), ids=LOOKUPS)
def test_the_lookup_waits_together_with_the_lock_request(warm_cart, command):
    def querying(execute, sql, params, many, context):
        steps.append("commit" if sql.lstrip().startswith("WITH") else "lookup")
        return execute(sql, params, many, context)

    with record_requests_and_replies([]) as steps, connection.execute_wrapper(querying):
        cart = command(warm_cart)
    assert cart.version == warm_cart.version + 1
    # The lock's request, the catalog's query while Redis answers, then the lock's reply;
    # the commit, and the publish.
    assert steps == ["send", "lookup", "read", "commit", "send", "read"]


@pytest.mark.parametrize(
    "command, refusal",
    [
        (lambda cart: service.add_line(cart.id, "NOPE", 1), d.UnknownSku),
        (lambda cart: service.apply_discount(cart.id, "NOPE"), d.InvalidDiscount),
    ],
    ids=["unknown sku", "unknown code"],
)
def test_a_refused_lookup_releases_the_lock_and_keeps_the_cart_in_memory(
    warm_cart, command, refusal
):
    with pytest.raises(refusal):
        command(warm_cart)
    assert not image.write_in_flight(warm_cart.id)
    with CaptureQueriesContext(connection) as queries:
        assert service.get_cart(warm_cart.id) == warm_cart
    assert len(queries) == 0  # still served from memory: the entry was kept, not dropped


def test_a_failing_catalog_releases_the_lock_and_its_error_is_the_answer(warm_cart, monkeypatch):
    def broken(self, sku):
        raise ConnectionError("the catalog service is down")

    monkeypatch.setattr(DemoCatalog, "product", broken)
    with pytest.raises(ConnectionError, match="catalog service is down"):
        service.add_line(warm_cart.id, "SKU-2", 1)
    assert not image.write_in_flight(warm_cart.id)
    with CaptureQueriesContext(connection) as queries:
        assert service.get_cart(warm_cart.id) == warm_cart
    assert len(queries) == 0


def test_a_busy_cart_still_answers_the_lookups_refusal_at_once(warm_cart, settings):
    """The lock held by another writer: the lookup's refusal is the answer, without waiting
    for the lock (nothing was taken)."""
    settings.CARTIMAGE = {**settings.CARTIMAGE, "LOCK_WAIT": 2}
    other = image._Locks("another-writer")
    other.take([warm_cart.id])
    try:
        with count_round_trips() as trips, pytest.raises(d.UnknownSku):
            service.add_line(warm_cart.id, "NOPE", 1)
        assert trips.count == 1  # the lock's request (BUSY), and no wait for its release
        assert image.write_in_flight(warm_cart.id)  # still the other writer's
    finally:
        other.settle("keep")
    assert not image.write_in_flight(warm_cart.id)


def test_a_replayed_command_does_not_look_the_product_up(warm_cart):
    key = service.Idempotency("client-1", "add-once", "fingerprint")
    first = service.add_line(warm_cart.id, "SKU-2", 1, idempotency=key)
    with CaptureQueriesContext(connection) as queries:
        again = service.add_line(warm_cart.id, "SKU-2", 1, idempotency=key)
    assert again == first
    assert not [q for q in queries.captured_queries if "carts_product" in q["sql"]]


@pytest.mark.parametrize("viewer", ["another user", "an id beyond the script's numbers"])
def test_a_foreign_callers_unknown_sku_is_refused_before_the_cart_is_looked_at(warm_cart, viewer):
    """Whoever asks, an unknown sku is the answer (it says nothing about the cart), with
    nothing held; the script-checked caller and the read-checked one answer alike."""
    from django.contrib.auth import get_user_model

    from cartsvc.backends.base import VIEWER_ID_LIMIT

    users = get_user_model().objects
    alice = users.create_user("alice-l")
    owned = make_cart({"SKU-1": 1}, owner_id=alice.pk)
    service.get_cart(owned.id)
    who = users.create_user("bob-l").pk
    who = who if viewer == "another user" else VIEWER_ID_LIMIT + who
    with pytest.raises(d.UnknownSku):
        service.add_line(owned.id, "NOPE", 1, as_user=who)
    with pytest.raises(service.NotFound):
        service.add_line(owned.id, "SKU-2", 1, as_user=who)
    assert not image.write_in_flight(owned.id)


@pytest.fixture
def lookups(monkeypatch):
    """The skus the demo catalog was asked for, in order."""
    asked: list[str] = []
    product = DemoCatalog.product

    def counting(self, sku):
        asked.append(sku)
        return product(self, sku)

    monkeypatch.setattr(DemoCatalog, "product", counting)
    return asked


def test_with_the_cache_skipped_the_lookup_runs_once_and_its_refusal_stands(
    warm_cart, lookups, monkeypatch, settings
):
    """The breaker open (a recent cache error): no lock request runs the lookup, so the
    command runs it before deciding; the add is written to the database all the same."""
    # A write without the cache's lock waits out TRUST_LEASE after its commit: keep it short.
    settings.CARTIMAGE = {**settings.CARTIMAGE, "TRUST_LEASE": 0.05}
    monkeypatch.setattr(image.breaker, "open_until", 10**12)  # open for the whole test
    with pytest.raises(d.UnknownSku):
        service.add_line(warm_cart.id, "NOPE", 1)
    cart = service.add_line(warm_cart.id, "SKU-2", 1)
    assert lookups == ["NOPE", "SKU-2"]
    assert cart.version == warm_cart.version + 1
    assert [line.sku for line in cart.lines] == ["SKU-1", "SKU-2"]


def test_a_command_retried_after_a_conflict_looks_the_product_up_once(
    warm_cart, lookups, monkeypatch
):
    from cartsvc import store

    commit = store.commit
    conflicts = []

    def conflicting_once(*args, **kwargs):
        if not conflicts:
            conflicts.append(1)
            raise store.Conflict("the version moved")
        return commit(*args, **kwargs)

    monkeypatch.setattr(store, "commit", conflicting_once)
    cart = service.add_line(warm_cart.id, "SKU-2", 1)
    assert conflicts == [1]
    assert lookups == ["SKU-2"]
    assert cart.version == warm_cart.version + 1


def test_a_read_through_the_door_runs_the_work_it_is_given_too(warm_cart):
    ran: list[str] = []
    read = image.safe_process_action(read=True)(lambda cart: cart)
    assert read(warm_cart.id, meanwhile=lambda: ran.append("ran")) == warm_cart
    assert ran == ["ran"]
