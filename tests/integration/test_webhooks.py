"""Webhooks, on both databases: real receivers get every matching event signed, retries too."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from cartsvc import metrics, service, subscriptions, webhooks
from cartsvc.models import CartEvent, WebhookDelivery, WebhookEndpoint
from cartsvc.subscriptions import Delivered
from tests.factories import make_cart
from tests.webhook_receiver import Receiver, receiving, verify

pytestmark = [pytest.mark.contract, pytest.mark.django_db]
# The tests that drain the subscription: the events it is handed must be committed.
committed = pytest.mark.django_db(transaction=True)


def log_of(*cart_ids: str) -> list[Delivered]:
    """The carts' events as a subscription is handed them, in version order."""
    rows = CartEvent.objects.filter(cart_id__in=cart_ids).order_by("cart_id", "version")
    return [Delivered.of(row) for row in rows]


def deliver(*cart_ids: str) -> list[Delivered]:
    """Drain the webhooks' subscription (what the Celery worker does); the carts' events."""
    events = log_of(*cart_ids)
    assert subscriptions.drain("cartsvc.webhooks") == {"cartsvc.webhooks": len(events)}
    return events


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in receiver.requests]


@committed
def test_every_matching_event_arrives_with_a_valid_signature(products):
    with receiving(Receiver()) as receiver:
        endpoint = webhooks.create_endpoint(receiver.url)
        cart = make_cart({"SKU-1": 1, "SKU-2": 2})
        events = deliver(cart.id)
        assert webhooks.send_due() == {"delivered": 3, "retried": 0, "failed": 0}

    assert len(receiver.requests) == len(events) == 3
    for request, event in zip(receiver.requests, events, strict=True):
        assert request.method == "POST" and request.path == "/hook"
        assert request.headers["Content-Type"] == "application/json"
        assert verify(endpoint.secret, request.headers, request.body)
        assert not verify("another secret", request.headers, request.body)
        body = json.loads(request.body)
        assert body["delivery_id"] == request.headers["X-Cartimage-Delivery"]
        assert request.headers["X-Cartimage-Event"] == event.type
        assert (body["event_id"], body["type"], body["cart_id"], body["version"]) == (
            event.id, event.type, cart.id, event.version,
        )  # fmt: skip
        assert body["data"] == event.data and body["schema"] == event.schema
        assert datetime.fromisoformat(body["recorded_at"]) == event.recorded_at
    statuses = WebhookDelivery.objects.values_list("status", "attempts", "last_status_code")
    assert sorted(statuses) == [("delivered", 1, 200)] * 3
    assert metrics.value("webhook_deliveries", outcome="delivered") == 3
    # Nothing is due any more: nothing is sent twice.
    assert webhooks.send_due() == {"delivered": 0, "retried": 0, "failed": 0}


@committed
def test_a_receiver_failing_twice_gets_the_event_after_retries_with_the_same_delivery_id(db):
    with receiving(Receiver(answers=[500, 500])) as receiver:
        webhooks.create_endpoint(receiver.url)
        deliver(service.open_cart().id)
        start = timezone.now()
        assert webhooks.send_due(now=start)["retried"] == 1
        # Not due before its wait (10 s) is over; then 20 s more after the second failure.
        assert webhooks.send_due(now=start + timedelta(seconds=9)) == {
            "delivered": 0, "retried": 0, "failed": 0,
        }  # fmt: skip
        assert webhooks.send_due(now=start + timedelta(seconds=10))["retried"] == 1
        assert webhooks.send_due(now=start + timedelta(seconds=29))["retried"] == 0
        assert webhooks.send_due(now=start + timedelta(seconds=30))["delivered"] == 1

    ids = {request.headers["X-Cartimage-Delivery"] for request in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1
    assert {body["delivery_id"] for body in bodies(receiver)} == ids
    delivery = WebhookDelivery.objects.get()
    assert str(delivery.delivery_id) in ids
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)


@committed
def test_after_the_last_attempt_a_delivery_is_failed_and_retry_now_sends_it_again(db, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "WEBHOOK_MAX_ATTEMPTS": 2}
    with receiving(Receiver(answers=[503, 503])) as receiver:
        webhooks.create_endpoint(receiver.url)
        deliver(service.open_cart().id)
        start = timezone.now()
        assert webhooks.send_due(now=start)["retried"] == 1
        assert webhooks.send_due(now=start + timedelta(hours=1))["failed"] == 1
        assert webhooks.send_due(now=start + timedelta(days=1))["failed"] == 0
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.last_status_code) == ("failed", 503)
        assert "HTTP 503" in delivery.last_error

        assert webhooks.retry_now([delivery.pk]) == 1
        assert webhooks.send_due()["delivered"] == 1
    assert len({r.headers["X-Cartimage-Delivery"] for r in receiver.requests}) == 1
    assert WebhookDelivery.objects.get().status == "delivered"


@committed
def test_a_redirect_is_not_followed(db):
    with receiving(Receiver(answers=[302])) as receiver:
        webhooks.create_endpoint(receiver.url)
        deliver(service.open_cart().id)
        assert webhooks.send_due()["retried"] == 1

    assert [(r.method, r.path) for r in receiver.requests] == [("POST", "/hook")]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("pending", 302)
    assert "redirects are not followed" in delivery.last_error


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/hook", "file:///etc/passwd", "gopher://127.0.0.1:70/", "/relative/hook",
     "http://user:pass@127.0.0.1/hook", "http://127.0.0.1:99999/hook", "https:///hook"],
)  # fmt: skip
def test_a_url_that_is_not_plain_http_or_https_is_refused(db, url):
    with pytest.raises(ValidationError):
        webhooks.create_endpoint(url)
    assert not WebhookEndpoint.objects.exists()


@committed
def test_a_non_http_url_is_refused_at_send_time_too(db):
    """A row changed behind the service's back (by hand in SQL, say) is still not sent."""
    with receiving(Receiver()) as receiver:
        endpoint = webhooks.create_endpoint(receiver.url)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url="file:///etc/passwd")
        deliver(service.open_cart().id)
        assert webhooks.send_due()["failed"] == 1
    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and delivery.last_error.startswith("refused")


@committed
def test_an_endpoint_filtered_by_event_types_gets_only_those(products):
    with receiving(Receiver()) as everything, receiving(Receiver()) as lines_only:
        webhooks.create_endpoint(everything.url)
        webhooks.create_endpoint(lines_only.url, event_types=["line_added", "checked_out"])
        cart = make_cart({"SKU-1": 1, "SKU-2": 1})
        service.remove_line(cart.id, service.get_cart(cart.id).lines[0].id)
        events = deliver(cart.id)
        assert webhooks.send_due()["delivered"] == len(events) + 2

    assert [b["type"] for b in bodies(everything)] == [e.type for e in events]
    assert [b["type"] for b in bodies(lines_only)] == ["line_added", "line_added"]


def test_unknown_event_types_are_refused(db):
    with pytest.raises(ValidationError, match="no_such_event"):
        webhooks.create_endpoint("https://shop.example/hook", event_types=["no_such_event"])


@committed
def test_redelivery_of_a_batch_creates_no_duplicate_deliveries(products):
    first = webhooks.create_endpoint("https://one.example/hook")
    webhooks.create_endpoint("https://two.example/hook", event_types=["line_added"])
    cart = make_cart({"SKU-1": 1})
    events = deliver(cart.id)
    before = sorted(WebhookDelivery.objects.values_list("endpoint_id", "event_id", "delivery_id"))
    assert len(before) == len(events) + 1
    # The batch again (a worker killed before its checkpoint committed), and a part of it.
    webhooks.handle(events)
    webhooks.handle(events[1:])
    # The whole log again: the subscription replayed from the beginning.
    subscriptions.reset("cartsvc.webhooks", to="beginning")
    assert subscriptions.drain("cartsvc.webhooks")["cartsvc.webhooks"] >= len(events)
    after = sorted(WebhookDelivery.objects.values_list("endpoint_id", "event_id", "delivery_id"))
    assert after == before
    assert {row[0] for row in after if row[1] == events[0].id} == {first.pk}


@committed
def test_inactive_endpoints_and_events_from_before_an_endpoint_get_nothing(products):
    old_cart = make_cart({"SKU-1": 1})
    webhooks.create_endpoint("https://new.example/hook")
    webhooks.create_endpoint("https://off.example/hook", active=False)
    deliver(old_cart.id)
    assert not WebhookDelivery.objects.exists()


@committed
def test_a_receiver_that_does_not_answer_is_cut_off_at_the_timeout(db, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "WEBHOOK_TIMEOUT": 0.5}
    with receiving(Receiver(stall=threading.Event())) as receiver:
        webhooks.create_endpoint(receiver.url)
        deliver(service.open_cart().id)
        assert webhooks.send_due()["retried"] == 1
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get().last_error == "timed out after 0.5 s"


@committed
def test_the_task_sends_what_is_due(db):
    from cartsvc.tasks import send_webhooks

    with receiving(Receiver()) as receiver:
        webhooks.create_endpoint(receiver.url)
        deliver(service.open_cart().id)
        assert send_webhooks.apply().get() == {"delivered": 1, "retried": 0, "failed": 0}
    assert len(receiver.requests) == 1


@committed
def test_a_delivery_another_sender_holds_is_skipped_not_sent_twice():
    """FOR UPDATE SKIP LOCKED: while one sender holds a delivery's row (claiming it), another
    passes it by instead of waiting for it or sending it too."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    with receiving(Receiver()) as receiver:
        webhooks.create_endpoint(receiver.url)
        deliver(service.open_cart().id)
        holding, release = threading.Event(), threading.Event()

        def other_sender() -> None:
            try:
                with transaction.atomic():
                    WebhookDelivery.objects.select_for_update().get()
                    holding.set()
                    release.wait(30)
            finally:
                connection.close()

        thread = threading.Thread(target=other_sender)
        thread.start()
        try:
            assert holding.wait(30)
            assert webhooks.send_due() == {"delivered": 0, "retried": 0, "failed": 0}
        finally:
            release.set()
            thread.join(30)
        assert webhooks.send_due()["delivered"] == 1
    assert len(receiver.requests) == 1
