"""HTTP details of the API: HEAD, Cache-Control, chunked bodies, one spelling of a cart id."""

from __future__ import annotations

import json

import pytest

from cartsvc.api import views
from tests.factories import make_cart

pytestmark = pytest.mark.django_db
API = "/api/v1"


@pytest.fixture
def cart(products):
    return make_cart({"SKU-1": 2})


@pytest.mark.parametrize(
    "path", ["/carts/{id}", "/carts/{id}/events", "/products", "/openapi.json"]
)
def test_head_is_get_without_the_body(client, cart, path):
    url = API + path.format(id=cart.id)
    got, head = client.get(url), client.head(url)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head["Content-Length"] == str(len(got.content))
    for header in ("Content-Type", "ETag", "Cache-Control"):
        assert head.get(header) == got.get(header), header


def test_head_where_there_is_no_get_is_405_with_allow(client, cart):
    answer = client.head(f"{API}/carts/{cart.id}/checkout")
    assert answer.status_code == 405
    assert answer["Allow"] == "POST"
    assert "HEAD" in client.post(f"{API}/carts/{cart.id}", content_type="application/json")["Allow"]


def test_personalised_answers_are_private_and_not_stored(client, cart):
    answers = [
        client.get(f"{API}/carts/{cart.id}"),
        client.post(
            f"{API}/carts/{cart.id}/lines",
            json.dumps({"sku": "SKU-1", "quantity": 1}),
            content_type="application/json",
        ),
        client.get(f"{API}/carts/00000000-0000-4000-8000-000000000000"),  # a 404 too
        client.post(f"{API}/carts", content_type="application/json"),
    ]
    for answer in answers:
        assert answer["Cache-Control"] == "private, no-store", answer.status_code


def test_a_chunked_body_is_refused_with_411_and_changes_nothing(rf, cart):
    request = rf.post(
        f"{API}/carts/{cart.id}/lines",
        json.dumps({"sku": "SKU-1", "quantity": 1}),
        content_type="application/json",
    )
    del request.META["CONTENT_LENGTH"]
    request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    answer = views.lines(request, cart_id=cart.id)
    assert answer.status_code == 411
    assert json.loads(answer.content)["error"]["code"] == "length_required"
    from cartsvc import service

    assert service.get_cart(cart.id) == cart


@pytest.mark.parametrize("spell", [str.upper, lambda s: s.replace("-", ""), lambda s: f"{{{s}}}"])
def test_a_cart_id_has_one_spelling(client, cart, spell):
    assert client.get(f"{API}/carts/{cart.id}").status_code == 200
    answer = client.get(f"{API}/carts/{spell(cart.id)}")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def details(client, **extra):
    answer = client.get("/healthz", **extra)
    assert answer.status_code == 200
    return answer.json()


def test_healthz_tells_outsiders_only_up_or_down(client):
    body = details(client, REMOTE_ADDR="203.0.113.7")
    assert set(body) == {"status", "database", "cache", "broker", "subscriptions"}
    for part in ("database", "cache", "broker", "subscriptions"):
        assert set(body[part]) == {"ok", "state"}, body[part]
    relayed = details(client, HTTP_X_FORWARDED_FOR="203.0.113.7")  # from loopback, via a proxy
    assert set(relayed["cache"]) == {"ok", "state"}


def test_healthz_details_for_staff_and_internal_probes(client, django_user_model):
    internal = details(client, REMOTE_ADDR="10.1.2.3")
    assert "ms" in internal["database"]
    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    client.force_login(staff)
    outside_but_staff = details(client, REMOTE_ADDR="203.0.113.7")
    assert "ms" in outside_but_staff["database"]
