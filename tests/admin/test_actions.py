"""Evict, rehydrate, rebuild rows, verify: from the list (selected carts) and from a cart's
page (a POST with CSRF); each goes through cartsvc.service only."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from django.test import Client

from cartsvc import admin as cart_admin
from cartsvc import operations, service
from cartsvc.models import CartLine
from tests.admin.conftest import CHANGELIST, detail_url, operate_url, page_text
from tests.factories import logged_in, make_cart

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("needs_redis")]


def messages_of(response) -> list[str]:
    return [" ".join(str(m).split()) for m in response.context["messages"]]


def run_action(client: Client, action: str, ids: list[str]):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": ids, "index": "0"},
        follow=True,
    )


@pytest.fixture
def csrf_client(staff) -> Client:
    return logged_in(staff, enforce_csrf_checks=True)


def operate(client: Client, cart_id: str, operation: str):
    """Press an operation's button on the cart's page: the form's CSRF token, then POST."""
    page = client.get(detail_url(cart_id)).content.decode()
    action = operate_url(cart_id, operation)
    form = re.search(rf'<form method="post" action="{re.escape(action)}">(.*?)</form>', page, re.S)
    assert form, f"no {operation} button"
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.group(1)).group(1)
    return client.post(action, {"csrfmiddlewaretoken": token}, follow=True)


# ---------------------------------------------------------------- from a cart's page


def test_the_page_offers_every_operation(staff_client, cart):
    buttons = re.findall(
        r'<button type="submit" class="op-button op-(\w+)"',
        staff_client.get(detail_url(cart.id)).content.decode(),
    )
    assert buttons == ["evict", "rehydrate", "rebuild", "verify"]


def test_evict_from_the_page(csrf_client, cart):
    response = operate(csrf_client, cart.id, "evict")
    assert response.redirect_chain[-1] == (detail_url(cart.id), 302)
    assert messages_of(response) == [f"Evicted cart {cart.id} from memory."]
    assert operations.in_memory([cart.id]) == set()
    assert "Not in memory" in page_text(response)  # the page after the redirect agrees

    again = operate(csrf_client, cart.id, "evict")
    assert messages_of(again) == [f"Cart {cart.id} was not in memory (or being written)."]


def test_rehydrate_from_the_page(csrf_client, cart):
    operations.evict_cart(cart.id)
    response = operate(csrf_client, cart.id, "rehydrate")
    assert messages_of(response) == [f"Rehydrated cart {cart.id} at version 4."]
    assert operations.in_memory([cart.id]) == {cart.id}
    assert operations.memory_image(cart.id) == service.get_cart(cart.id)


def test_verify_reports_a_tampered_row_and_rebuild_repairs_it(csrf_client, cart):
    CartLine.objects.filter(cart_id=cart.id, line_id=1).update(quantity=7)

    verified = operate(csrf_client, cart.id, "verify")
    found = messages_of(verified)
    assert found[0] == "Verify found 1 mismatch in 1 cart:"
    assert found[1] == (
        f"Cart {cart.id}: rows say quantity 7 for line 1 (Product SKU-1, SKU-1), the event log "
        "says 2: rebuild the rows from the log (the admin's “Rebuild rows from the event log”)"
    )

    rebuilt = operate(csrf_client, cart.id, "rebuild")
    assert messages_of(rebuilt) == [
        f"Rebuilt the rows of cart {cart.id} from its event log (version 4)."
    ]
    assert CartLine.objects.get(cart_id=cart.id, line_id=1).quantity == 2

    clean = operate(csrf_client, cart.id, "verify")
    assert messages_of(clean) == [
        f"Verified cart {cart.id}: rows, event log, snapshots and memory agree."
    ]
    operate(csrf_client, cart.id, "rehydrate")
    after = page_text(csrf_client.get(detail_url(cart.id)))
    assert "The rows match the event log (version 4)" in after
    assert "The memory image matches the event log (version 4)" in after


def test_the_page_shows_the_damage_until_rebuilt(staff_client, csrf_client, cart):
    CartLine.objects.filter(cart_id=cart.id, line_id=1).update(quantity=7)
    assert "The rows differ from the event log" in page_text(staff_client.get(detail_url(cart.id)))
    operate(csrf_client, cart.id, "rebuild")
    operate(csrf_client, cart.id, "rehydrate")
    assert "The rows match the event log" in page_text(staff_client.get(detail_url(cart.id)))


def test_each_operation_calls_the_service_only(staff_client, cart):
    calls = {
        "evict": "evict_cart",
        "rehydrate": "rehydrate_cart",
        "rebuild": "rebuild_rows",
        "verify": "verify_carts",
    }
    for operation, function in calls.items():
        with mock.patch.object(operations, function, wraps=getattr(operations, function)) as spy:
            response = staff_client.post(operate_url(cart.id, operation))
        assert response.status_code == 302, operation
        assert spy.call_count == 1, operation
        assert str(spy.call_args.args[0]) in (cart.id, str([cart.id]), repr([cart.id]))


def test_an_operation_needs_post_and_a_csrf_token(csrf_client, cart):
    assert csrf_client.get(operate_url(cart.id, "evict")).status_code == 405
    assert csrf_client.post(operate_url(cart.id, "evict")).status_code == 403  # no token
    assert operations.in_memory([cart.id]) == {cart.id}


def test_an_unknown_operation_or_cart(staff_client, cart):
    assert staff_client.post(operate_url(cart.id, "explode")).status_code == 404
    missing = "2b1f1f7e-0000-4000-8000-000000000000"
    response = staff_client.post(operate_url(missing, "evict"), follow=True)
    assert "doesn\u2019t exist" in page_text(response)


# ---------------------------------------------------------------- from the list


def test_the_list_offers_the_four_actions_and_no_delete(staff_client, cart):
    body = staff_client.get(CHANGELIST).content.decode()
    actions = re.findall(r'<option value="(\w+)">', body)
    assert actions == [
        "evict_selected",
        "rehydrate_selected",
        "rebuild_selected",
        "verify_selected",
    ]
    assert "delete_selected" not in body


def test_evict_and_rehydrate_selected(staff_client, catalog):
    carts = [make_cart({"SKU-1": 1}).id for _ in range(3)]
    response = run_action(staff_client, "evict_selected", carts[:2])
    assert messages_of(response) == ["Evicted 2 carts from memory."]
    assert operations.in_memory(carts) == {carts[2]}

    response = run_action(staff_client, "evict_selected", carts)
    assert messages_of(response) == [
        f"Evicted cart {carts[2]} from memory.",
        "2 carts were not in memory (or being written).",
    ]

    response = run_action(staff_client, "rehydrate_selected", carts)
    assert messages_of(response) == ["Rehydrated 3 carts into memory."]
    assert operations.in_memory(carts) == set(carts)


def test_rebuild_and_verify_selected(staff_client, catalog):
    carts = [make_cart({"SKU-1": 1, "SKU-2": 2}).id for _ in range(3)]
    CartLine.objects.filter(cart_id=carts[0], line_id=2).update(quantity=9)
    CartLine.objects.filter(cart_id=carts[2], line_id=1).delete()

    response = run_action(staff_client, "verify_selected", carts)
    found = messages_of(response)
    assert found[0] == "Verify found 2 mismatches in 2 carts:"
    assert {m.split(":")[0] for m in found[1:]} == {f"Cart {carts[0]}", f"Cart {carts[2]}"}

    response = run_action(staff_client, "rebuild_selected", carts)
    assert messages_of(response) == ["Rebuilt the rows of 3 carts from their logs."]
    response = run_action(staff_client, "verify_selected", carts)
    assert messages_of(response) == [
        "Verified 3 carts: rows, event log, snapshots and memory agree."
    ]


def test_many_mismatches_are_capped(staff_client, catalog, monkeypatch):
    monkeypatch.setattr(cart_admin, "MAX_MISMATCH_MESSAGES", 2)
    carts = [make_cart({"SKU-1": 1}).id for _ in range(4)]
    CartLine.objects.filter(cart_id__in=carts).update(quantity=5)
    found = messages_of(run_action(staff_client, "verify_selected", carts))
    assert found[0] == "Verify found 4 mismatches in 4 carts:"
    assert len(found) == 4
    assert found[-1].startswith("… and 2 more")


def test_an_action_on_too_many_carts_is_refused(staff_client, catalog, monkeypatch):
    monkeypatch.setattr(cart_admin, "ACTION_LIMIT", 2)
    carts = [make_cart({"SKU-1": 1}).id for _ in range(3)]
    response = run_action(staff_client, "evict_selected", carts)
    assert messages_of(response) == [
        "Select at most 2 carts for one action (the management commands handle any number)."
    ]
    assert operations.in_memory(carts) == set(carts)


def test_select_all_is_offered_only_up_to_what_an_action_takes(staff_client, catalog, monkeypatch):
    """Django offers "Select all N carts" below a page of results; an action refused that
    past ACTION_LIMIT. Now the link is there only when the action will take N carts."""
    monkeypatch.setattr(cart_admin, "ACTION_LIMIT", 3)
    monkeypatch.setattr(cart_admin.CartAdmin, "list_per_page", 2)
    carts = [make_cart({"SKU-1": 1}).id for _ in range(3)]

    body = staff_client.get(CHANGELIST).content.decode()
    assert "Select all 3 carts" in body and 'data-testid="action-limit"' not in body
    response = staff_client.post(
        CHANGELIST,
        {"action": "evict_selected", "_selected_action": carts[:1], "select_across": "1"},
        follow=True,
    )
    assert messages_of(response) == ["Evicted 3 carts from memory."]

    carts.append(make_cart({"SKU-1": 1}).id)
    body = staff_client.get(CHANGELIST).content.decode()
    assert "Select all 4 carts" not in body and 'data-testid="action-limit"' in body
    note = page_text(staff_client.get(CHANGELIST))
    assert (
        "An action takes at most 3 carts, so all 4 can not be selected: narrow the list with "
        "the filters or the search" in note
    )
    # A select-across sent anyway (an old page) is still refused, changing nothing.
    operations.rehydrate_cart(carts[0])
    response = staff_client.post(
        CHANGELIST,
        {"action": "evict_selected", "_selected_action": carts[:1], "select_across": "1"},
        follow=True,
    )
    assert messages_of(response)[0].startswith("Select at most 3 carts for one action")
    assert operations.in_memory(carts) >= {carts[0], carts[3]}
