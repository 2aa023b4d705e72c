"""Webhooks in the admin: endpoints added and changed (secret shown once), deliveries read-only."""

from __future__ import annotations

import pytest
from django.utils import timezone

from cartsvc import service, webhooks
from cartsvc.models import WebhookDelivery, WebhookEndpoint
from tests.integration.test_webhooks import deliver

pytestmark = pytest.mark.django_db

ENDPOINTS = "/admin/cartsvc/webhookendpoint/"
DELIVERIES = "/admin/cartsvc/webhookdelivery/"


def messages_of(response) -> list[str]:
    return [" ".join(str(m).split()) for m in response.context["messages"]]


def test_adding_an_endpoint_shows_its_secret_once(staff_client):
    answer = staff_client.post(
        f"{ENDPOINTS}add/",
        {"url": "https://crm.example/hooks/cart", "event_types": ["line_added"], "active": "on"},
        follow=True,
    )
    assert answer.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == ["line_added"] and endpoint.active
    assert endpoint.secret.startswith("whsec_")
    assert any(endpoint.secret in m for m in messages_of(answer))
    page = staff_client.get(f"{ENDPOINTS}{endpoint.pk}/change/").content.decode()
    assert endpoint.secret[:10] in page and endpoint.secret not in page


def test_rotating_the_secret_makes_a_new_one(staff_client):
    endpoint = webhooks.create_endpoint("https://crm.example/hook")
    answer = staff_client.post(
        f"{ENDPOINTS}{endpoint.pk}/change/",
        {"url": "https://crm.example/hook", "active": "on", "rotate_secret": "on"},
        follow=True,
    )
    assert answer.status_code == 200
    rotated = WebhookEndpoint.objects.get().secret
    assert rotated != endpoint.secret and any(rotated in m for m in messages_of(answer))


@pytest.mark.parametrize("url", ["ftp://crm.example/hook", "file:///etc/passwd"])
def test_the_form_refuses_a_url_that_is_not_http(staff_client, url):
    answer = staff_client.post(f"{ENDPOINTS}add/", {"url": url, "active": "on"})
    assert answer.status_code == 200  # the form again, with its error
    assert answer.context["adminform"].form.errors["url"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db(transaction=True)  # drained: its events must be committed
def test_deliveries_are_listed_read_only_and_failed_ones_can_be_retried_now(staff_client):
    endpoint = webhooks.create_endpoint("https://crm.example/hook")
    cart = service.open_cart()
    deliver(cart.id)
    # A URL changed by hand in SQL: refused when sent, so the delivery fails at once.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url="file:///x")
    assert webhooks.send_due()["failed"] == 1
    delivery = WebhookDelivery.objects.get()

    listing = staff_client.get(DELIVERIES, {"status__exact": "failed"})
    assert listing.status_code == 200
    assert str(delivery.delivery_id) in listing.content.decode()
    page = staff_client.get(f"{DELIVERIES}{delivery.pk}/change/")
    assert page.status_code == 200 and "refused" in page.content.decode()
    assert staff_client.get(f"{DELIVERIES}add/").status_code == 403

    answer = staff_client.post(
        DELIVERIES,
        {"action": "retry_now", "_selected_action": [delivery.pk], "index": "0"},
        follow=True,
    )
    assert any("1 delivery due now" in m for m in messages_of(answer))
    again = WebhookDelivery.objects.get()
    assert again.status == "pending" and again.next_attempt_at <= timezone.now()
    assert again.delivery_id == delivery.delivery_id
