"""Ownership and the login merge through real login POSTs: the visitor's cart merges into
the user's open cart once, the session key rotates and the cart survives it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from cartsvc import service
from tests.factories import make_cart
from tests.storefront.conftest import (
    add,
    cart_id_of,
    cart_of,
    login,
    minicart,
    post,
    quantities,
    texts,
)

pytestmark = pytest.mark.django_db

VISITOR = {"none": None, "empty": {}, "full": {"SKU-1": 2, "SKU-2": 1}}
USER = {"none": None, "empty": {}, "full": {"SKU-1": 1, "SKU-3": 4}}


def visitor_with(client: Client, lines: dict[str, int] | None) -> str | None:
    """Give the anonymous session a cart through the pages (None: no cart at all)."""
    if lines is None:
        return None
    if not lines:
        add(client, "SKU-5", 1)
        post(client, f"/cart/lines/{cart_of(client).lines[0].id}/remove/")
        assert cart_of(client).lines == ()
    for sku, quantity in lines.items():
        add(client, sku, quantity)
    return cart_id_of(client)


@pytest.mark.parametrize("user_has", list(USER))
@pytest.mark.parametrize("visitor_has", list(VISITOR))
def test_the_login_merge_matrix(client, products, alice, visitor_has, user_has):
    visitor_id = visitor_with(client, VISITOR[visitor_has])
    mine = make_cart(USER[user_has], owner_id=alice.id) if USER[user_has] is not None else None
    before = client.session.session_key

    response = login(client, "alice", next="/cart/")

    assert response.status_code == 302 and response.url == "/cart/"
    assert client.session.session_key != before  # rotated
    expected: dict[str, int] = {}
    for lines in (USER[user_has] or {}, VISITOR[visitor_has] or {}):
        for sku, quantity in lines.items():
            expected[sku] = expected.get(sku, 0) + quantity
    bound = cart_id_of(client)
    if mine is None and visitor_id is None:
        assert bound is None  # nothing to bind until the first add
        assert service.cart_for_user(alice.id) is None
    else:
        cart = service.get_cart(bound, as_user=alice.id)
        assert cart.owner_id == alice.id and cart.status == "open"
        assert quantities(cart) == expected
        assert service.cart_for_user(alice.id).id == bound
        # The user's own cart wins; without one, the visitor's cart becomes theirs.
        assert bound == (mine.id if mine else visitor_id)
    if mine is not None and visitor_id is not None:
        assert service.get_cart(visitor_id).status == "merged"
    page = client.get("/cart/")
    assert minicart(page.content.decode()) == sum(expected.values())
    for sku in expected:
        assert f"Product {sku}" in page.content.decode()


def test_the_session_key_rotates_and_the_cart_survives(client, products, alice):
    add(client, "SKU-1", 2)
    visitor_id = cart_id_of(client)
    old_key = client.session.session_key
    response = login(client, "alice")
    assert client.session.session_key != old_key
    assert cart_id_of(client) == visitor_id
    assert service.get_cart(visitor_id).owner_id == alice.id  # claimed
    page = client.get(response.url)
    assert minicart(page.content.decode()) == 2
    assert "Welcome, alice!" in texts(page)
    # The old session key is dead: it carries neither the login nor the cart.
    stale = Client()
    stale.cookies["sessionid"] = old_key
    assert minicart(stale.get("/").content.decode()) == 0


def test_the_merge_says_what_happened(client, products, alice):
    make_cart({"SKU-3": 1}, owner_id=alice.id)
    add(client, "SKU-1", 2)
    response = client.post(
        "/login/", {"username": "alice", "password": "pw-alice-123"}, follow=True
    )
    assert texts(response) == [
        "Welcome, alice!",
        "We added the 2 items you picked to your saved cart: it now holds 3.",
    ]


def test_a_cart_checked_out_through_the_pages_is_not_merged(client, products, alice):
    mine = make_cart({"SKU-3": 1}, owner_id=alice.id)
    add(client, "SKU-1", 2)
    order_id = cart_id_of(client)
    post(client, "/cart/checkout/")
    login(client, "alice")
    assert cart_id_of(client) == mine.id
    assert quantities(service.get_cart(mine.id)) == {"SKU-3": 1}
    assert service.get_cart(order_id).status == "checked_out"


def test_a_session_cart_checked_out_elsewhere_is_never_merged(client, products, alice):
    mine = make_cart({"SKU-3": 1}, owner_id=alice.id)
    add(client, "SKU-1", 2)
    visitor_id = cart_id_of(client)
    service.checkout(visitor_id)  # in another tab, through the API
    login(client, "alice")
    assert cart_id_of(client) == mine.id
    assert quantities(service.get_cart(mine.id)) == {"SKU-3": 1}
    visitor = service.get_cart(visitor_id)
    assert visitor.status == "checked_out" and visitor.owner_id is None


def test_a_checked_out_cart_without_a_user_cart_leaves_nothing_bound(client, products, alice):
    add(client, "SKU-1", 2)
    service.checkout(cart_id_of(client))
    login(client, "alice")
    assert cart_id_of(client) is None
    assert service.cart_for_user(alice.id) is None


def test_a_wrong_password_merges_nothing(client, products, alice):
    mine = make_cart({"SKU-3": 1}, owner_id=alice.id)
    add(client, "SKU-1", 2)
    visitor_id = cart_id_of(client)
    login(client, "alice", "wrong")
    assert cart_id_of(client) == visitor_id
    assert service.get_cart(visitor_id).owner_id is None
    assert quantities(service.get_cart(mine.id)) == {"SKU-3": 1}


def test_logging_in_twice_merges_once(client, products, alice):
    make_cart({"SKU-3": 1}, owner_id=alice.id)
    add(client, "SKU-1", 2)
    login(client, "alice")
    # Already logged in: the login page sends them on, nothing merges again.
    response = login(client, "alice")
    assert response.status_code == 302
    assert quantities(cart_of(client)) == {"SKU-3": 1, "SKU-1": 2}


def test_a_logged_in_user_posting_the_login_form_stays_themselves(client, products, alice, bob):
    login(client, "bob")
    add(client, "SKU-1", 2)
    bobs = cart_id_of(client)
    response = login(client, "alice")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(bob.id)
    assert cart_id_of(client) == bobs
    assert service.cart_for_user(alice.id) is None
    assert service.get_cart(bobs).owner_id == bob.id


def test_after_logout_the_user_cart_comes_back_on_the_next_login(client, products, alice):
    login(client, "alice")
    add(client, "SKU-1", 2)
    mine = cart_id_of(client)
    post(client, "/logout/")
    assert cart_id_of(client) is None
    assert minicart(client.get("/").content.decode()) == 0
    login(client, "alice")
    assert cart_id_of(client) == mine
    assert minicart(client.get("/").content.decode()) == 2


def test_a_visitor_can_not_act_on_a_users_cart(client, products, alice, bob):
    theirs = make_cart({"SKU-1": 1}, owner_id=bob.id)
    session = client.session
    session["cartimage_cart_id"] = theirs.id  # a forged or stale session binding
    session.save()
    assert minicart(client.get("/").content.decode()) == 0
    response = post(client, f"/cart/lines/{theirs.lines[0].id}/quantity/", {"quantity": 5})
    assert response.status_code == 200
    assert quantities(service.get_cart(theirs.id)) == {"SKU-1": 1}
    add(client, "SKU-2", 1)  # a new cart of their own
    assert cart_id_of(client) != theirs.id
    assert quantities(service.get_cart(theirs.id)) == {"SKU-1": 1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("has_cart", [False, True])
def test_two_racing_logins_of_one_session_merge_once(alice, has_cart):
    from tests.factories import make_products

    make_products(3)
    first = Client()
    add(first, "SKU-1", 2)
    visitor_id = cart_id_of(first)
    if has_cart:
        make_cart({"SKU-1": 1}, owner_id=alice.id)
    second = Client()
    second.cookies = first.cookies  # the same browser, two tabs: one session cookie
    go = threading.Barrier(2)
    statuses: list[int] = []

    def log_in(browser: Client) -> None:
        go.wait()
        try:
            statuses.append(login(browser, "alice").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=log_in, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [302, 302]
    final = service.cart_for_user(alice.id)
    assert quantities(final) == {"SKU-1": 3 if has_cart else 2}
    if has_cart:
        assert final.id != visitor_id and service.get_cart(visitor_id).status == "merged"
    else:
        assert final.id == visitor_id
