"""Who may see and operate carts in the admin: staff only; nobody adds, changes or deletes."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from cartsvc import operations
from cartsvc.models import Cart
from tests.admin.conftest import CHANGELIST, detail_url, operate_url
from tests.factories import logged_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("needs_redis")]


def pages(cart_id: str) -> list[str]:
    return [CHANGELIST, detail_url(cart_id), f"{CHANGELIST}?q=SKU-1", "/admin/"]


def assert_sent_to_login(response, path: str) -> None:
    assert response.status_code == 302, path
    assert response["Location"].startswith("/admin/login/?next="), response["Location"]


def test_anonymous_visitors_are_sent_to_the_login_page(cart):
    client = Client()
    for path in pages(cart.id):
        assert_sent_to_login(client.get(path), path)
    assert_sent_to_login(client.post(operate_url(cart.id, "evict")), "operate")
    assert operations.in_memory([cart.id]) == {cart.id}


def test_a_logged_in_customer_who_is_not_staff_is_refused(cart, shopper):
    client = logged_in(shopper)
    for path in pages(cart.id):
        assert_sent_to_login(client.get(path), path)
    assert_sent_to_login(client.post(operate_url(cart.id, "evict")), "operate")
    response = client.post(
        CHANGELIST, {"action": "evict_selected", "_selected_action": [cart.id], "index": "0"}
    )
    assert_sent_to_login(response, "action")
    assert operations.in_memory([cart.id]) == {cart.id}  # nothing ran
    # The login page refuses the customer's own credentials too.
    login = Client().post(
        "/admin/login/?next=/admin/",
        {"username": "carol", "password": "carol-pw-2026", "next": "/admin/"},
    )
    assert login.status_code == 200 and "staff account" in login.content.decode()


def test_staff_without_the_view_permission_do_not_see_carts(cart):
    user = get_user_model().objects.create_user("temp", password="pw-temp-2026", is_staff=True)
    client = logged_in(user)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(detail_url(cart.id)).status_code == 403
    assert client.post(operate_url(cart.id, "evict")).status_code == 403


def test_view_only_staff_inspect_but_can_not_operate(cart):
    user = get_user_model().objects.create_user("viewer", password="pw-viewer-2026", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_cart"))
    client = logged_in(user)

    listing = client.get(CHANGELIST)
    assert listing.status_code == 200 and cart.id in listing.content.decode()
    assert 'name="action"' not in listing.content.decode()  # no actions offered
    detail = client.get(detail_url(cart.id))
    assert detail.status_code == 200
    assert 'data-testid="operations"' not in detail.content.decode()
    assert client.post(operate_url(cart.id, "evict")).status_code == 403
    response = client.post(
        CHANGELIST, {"action": "evict_selected", "_selected_action": [cart.id], "index": "0"}
    )
    assert response.status_code in (200, 302)
    assert operations.in_memory([cart.id]) == {cart.id}


def test_staff_with_the_operate_permission_may_operate(cart):
    user = get_user_model().objects.create_user("ops", password="pw-ops-2026", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_cart", "change_cart"]))
    client = logged_in(user)
    assert client.post(operate_url(cart.id, "evict")).status_code == 302
    assert operations.in_memory([cart.id]) == set()


def test_nobody_adds_changes_or_deletes_a_cart(staff_client, cart):
    assert staff_client.get(f"{CHANGELIST}add/").status_code == 403
    assert staff_client.post(f"{CHANGELIST}add/", {"status": "open"}).status_code == 403
    assert staff_client.get(f"{CHANGELIST}{cart.id}/delete/").status_code == 403
    assert staff_client.post(f"{CHANGELIST}{cart.id}/delete/", {"post": "yes"}).status_code == 403
    changed = staff_client.post(detail_url(cart.id), {"status": "expired", "version": "99"})
    assert changed.status_code == 405
    row = Cart.objects.get(id=cart.id)
    assert (row.status, row.version) == ("open", 4)
    listing = staff_client.get(CHANGELIST).content.decode()
    assert f"{CHANGELIST}add/" not in listing
    detail = staff_client.get(detail_url(cart.id)).content.decode()
    assert "/delete/" not in detail and 'name="_save"' not in detail
