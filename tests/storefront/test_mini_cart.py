"""The mini-cart: one service.get_cart per page at most, no SQL when the cart is warm, no
call at all when the session holds no cart."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from cartsvc import context_processors, service
from cartsvc.shop import CART_SESSION_KEY
from tests.storefront.conftest import add, cart_id_of, login, minicart

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def long_lease(settings):
    # A lease renewal inside a measured call would add its own (rare, by design) query.
    settings.CARTIMAGE = {**settings.CARTIMAGE, "TRUST_LEASE": 60}


def request_for(cart_id: str | None, user=None):
    request = RequestFactory().get("/")
    request.session = SessionStore()
    if cart_id:
        request.session[CART_SESSION_KEY] = cart_id
    request.user = user or AnonymousUser()
    return request


@pytest.fixture
def calls(monkeypatch):
    made: list[str] = []
    real = service.get_cart

    def counting(cart_id, **kwargs):
        made.append(str(cart_id))
        return real(cart_id, **kwargs)

    monkeypatch.setattr(service, "get_cart", counting)
    return made


def test_a_warm_cart_costs_no_sql_and_one_read(shopper, calls):
    cart_id = cart_id_of(shopper)
    service.get_cart(cart_id)  # warm
    calls.clear()
    request = request_for(cart_id)
    with CaptureQueriesContext(connection) as queries:
        assert context_processors.mini_cart(request) == {"cart_count": 3}
    assert len(queries) == 0
    assert calls == [cart_id]


def test_a_logged_in_users_warm_cart_costs_no_sql(client, products, alice):
    login(client, "alice")
    add(client, "SKU-1", 2)
    cart_id = cart_id_of(client)
    service.get_cart(cart_id)
    request = request_for(cart_id, user=alice)
    with CaptureQueriesContext(connection) as queries:
        assert context_processors.mini_cart(request) == {"cart_count": 2}
    assert len(queries) == 0


def test_no_cart_in_the_session_means_no_call_at_all(db, calls):
    with CaptureQueriesContext(connection) as queries:
        assert context_processors.mini_cart(request_for(None)) == {"cart_count": 0}
    assert len(queries) == 0
    assert calls == []


def test_a_page_with_a_warm_cart_touches_no_cart_table(shopper, calls):
    service.get_cart(cart_id_of(shopper))
    calls.clear()
    with CaptureQueriesContext(connection) as queries:
        response = shopper.get("/")
    assert minicart(response.content.decode()) == 3
    assert calls == [cart_id_of(shopper)]  # one read for the whole page
    assert not [q["sql"] for q in queries.captured_queries if "cartsvc_" in q["sql"]]


def test_browsing_without_a_cart_never_calls_the_service(client, products, calls):
    for path in ("/", "/cart/", "/login/"):
        assert minicart(client.get(path).content.decode()) == 0
    assert calls == []


def test_the_cart_page_reads_the_cart_once(shopper, calls):
    calls.clear()
    shopper.get("/cart/")
    # refresh_prices reads it (through get_cart); the mini-cart reuses that state.
    assert len(calls) == 1


def test_a_cart_that_is_gone_or_closed_counts_zero(shopper):
    service.checkout(cart_id_of(shopper))
    assert minicart(shopper.get("/").content.decode()) == 0
    stale = Client()
    session = stale.session
    session[CART_SESSION_KEY] = "not-a-cart"
    session.save()
    stale.cookies["sessionid"] = session.session_key
    assert minicart(stale.get("/").content.decode()) == 0
