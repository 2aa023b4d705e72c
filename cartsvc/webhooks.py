"""Webhooks: cart events POSTed, signed, to the shop's endpoints; the one writer of their rows."""

# Two halves. `handle` is the subscription handler ("cartsvc.webhooks", cartsvc.subscriptions):
# inside the drain's transaction it writes one pending delivery per (active endpoint, matching
# event), so a delivery is owed exactly when the subscription's checkpoint moves past its
# event; redelivery of a batch adds nothing (unique endpoint + event id).
#
# `send_due` (the Celery task cartsvc.tasks.send_webhooks, on the beat schedule) POSTs the
# deliveries that are due. A delivery is claimed in a short transaction (SELECT ... FOR UPDATE
# SKIP LOCKED, then its next attempt moved a lease ahead), sent with no transaction open, and
# its outcome recorded in another short one. No transaction is held across the network on
# purpose: a transaction open (and holding a transaction id, as a claim does) holds back the
# subscriptions' horizon, the oldest such transaction in the database (cartsvc.store), so a slow
# receiver would stall every subscriber. Two senders never send one delivery at once
# (the row lock while claiming, then the lease); a sender that dies after claiming leaves the
# delivery to be sent again once the lease is over (at least once; the delivery id is the same,
# receivers deduplicate by it).
#
# HTTP is the standard library's http.client, not urllib or requests: it follows no redirect and
# reads no proxy setting by itself (a 3xx is a failed attempt, like any non-2xx), and it lets a
# watchdog cut the socket at WEBHOOK_TIMEOUT so that the timeout bounds the whole exchange, not
# each read (a receiver dripping one byte a second is cut off too). Nothing to add to
# requirements.txt.
#
# The signature (docs/use-in-your-shop.md, "Webhooks"): HMAC-SHA256 with the endpoint's secret
# over `<X-Cartimage-Timestamp>.<raw body>`, in `X-Cartimage-Signature: sha256=<hex>`. The
# timestamp is signed so that a captured request can not be replayed later as a fresh one.

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from cartsvc import domain as d
from cartsvc import events as codec
from cartsvc import metrics
from cartsvc.conf import conf
from cartsvc.models import WebhookDelivery, WebhookEndpoint
from cartsvc.subscriptions import Delivered

log = logging.getLogger("cartsvc.webhooks")

SCHEMES = ("http", "https")
USER_AGENT = "cartimage-webhooks/1"
# How much of a failed answer's body is kept as its error (enough to recognise it).
ERROR_SAMPLE = 300


# ---------------------------------------------------------------- endpoints


def check_url(url: str) -> str:
    """`url` if a webhook may be sent to it (http or https, a host, no credentials in it);
    else ValidationError."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ValidationError(f"only http and https URLs: not {parts.scheme or 'no scheme'!r}")
    try:
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError as exc:
        raise ValidationError(f"a bad port: {exc}") from exc
    if not parts.hostname:
        raise ValidationError("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("no credentials in the URL: the signature authenticates the sender")
    return url


def check_event_types(names: Iterable[str]) -> list[str]:
    """The event type names, sorted, each one the log knows; else ValidationError."""
    chosen = sorted(set(names))
    unknown = [name for name in chosen if name not in d.EVENT_TYPES]
    if unknown:
        raise ValidationError(f"unknown event types: {', '.join(unknown)}")
    return chosen


def new_secret() -> str:
    """A signing secret: 32 random bytes, URL-safe text."""
    return "whsec_" + secrets.token_urlsafe(32)


def save_endpoint(endpoint: WebhookEndpoint, rotate_secret: bool = False) -> str | None:
    """Write `endpoint` (new or changed) after checking it; returns its new secret when one
    was made (a new endpoint without one, or `rotate_secret`), to be shown once."""
    made = None
    if rotate_secret or not endpoint.secret:
        endpoint.secret = made = new_secret()
    endpoint.url = check_url(endpoint.url)
    endpoint.event_types = check_event_types(endpoint.event_types or [])
    if endpoint.created_at is None:
        endpoint.created_at = timezone.now()
    endpoint.full_clean()
    endpoint.save()
    return made


def create_endpoint(
    url: str, event_types: Iterable[str] = (), secret: str = "", active: bool = True
) -> WebhookEndpoint:
    """A new endpoint (its secret made when none is given: read it from the result)."""
    endpoint = WebhookEndpoint(url=url, secret=secret, event_types=list(event_types), active=active)
    save_endpoint(endpoint)
    return endpoint


# ---------------------------------------------------------------- the handler


def payload_of(event: Delivered) -> dict[str, Any]:
    """The body's fields for `event` (the delivery id is added when it is sent); its data in
    the type's current schema, whatever schema it was stored in."""
    current = d.EVENT_TYPES[event.type].schema if event.type in d.EVENT_TYPES else event.schema
    return {
        "event_id": event.id,
        "type": event.type,
        "cart_id": str(event.cart_id),
        "version": event.version,
        "schema": current,
        "data": codec.upcast(event.type, event.schema, event.data),
        "recorded_at": event.recorded_at.isoformat(),
    }


def handle(events: Sequence[Delivered]) -> None:
    """The subscription handler: a pending delivery for every active endpoint that wants
    the event (its types, and recorded since the endpoint was created: a replay of the log
    does not send a new endpoint the shop's whole history). Idempotent."""
    if not events:
        return
    endpoints = list(WebhookEndpoint.objects.filter(active=True))
    if not endpoints:
        return
    now = timezone.now()
    rows = []
    for event in events:
        payload = None
        for endpoint in endpoints:
            if endpoint.event_types and event.type not in endpoint.event_types:
                continue
            if event.recorded_at < endpoint.created_at:
                continue
            payload = payload or payload_of(event)
            rows.append(
                WebhookDelivery(
                    endpoint=endpoint,
                    delivery_id=uuid.uuid4(),
                    event_id=event.id,
                    cart_id=event.cart_id,
                    version=event.version,
                    event_type=event.type,
                    payload=payload,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
    # ON CONFLICT DO NOTHING: a redelivered batch finds its deliveries there, ids unchanged.
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)


# ---------------------------------------------------------------- sending


def body_of(delivery: WebhookDelivery) -> bytes:
    """The JSON body POSTed for `delivery` (the same on every attempt)."""
    fields = {"delivery_id": str(delivery.delivery_id), **delivery.payload}
    return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with `secret` over `<timestamp>.<body>`."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def retry_after(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: FIRST, doubled each time, capped."""
    first, cap = float(conf.WEBHOOK_RETRY_FIRST), float(conf.WEBHOOK_RETRY_MAX)
    return timedelta(seconds=min(cap, first * 2 ** min(attempts - 1, 32)))


def _lease() -> timedelta:
    """How long a claimed delivery is left alone: its POST is over long before."""
    return timedelta(seconds=float(conf.WEBHOOK_TIMEOUT) + 60)


def _claim(now: datetime) -> WebhookDelivery | None:
    """The next due delivery, its attempt counted and its next one a lease ahead (so that no
    other sender takes it while it is being sent); None when nothing is due."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(status=WebhookDelivery.PENDING, next_attempt_at__lte=now, endpoint__active=True)
            .order_by("next_attempt_at", "id")
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + _lease()
        delivery.updated_at = now
        delivery.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
    return delivery


def _record(delivery: WebhookDelivery, now: datetime, code: int | None, error: str) -> str:
    """Write the attempt's outcome (unless the claim was lost: another sender took the
    delivery after the lease); returns "delivered", "retried" or "failed"."""
    fields: dict[str, Any] = {"last_status_code": code, "last_error": error, "updated_at": now}
    if code is not None and 200 <= code < 300:
        outcome = "delivered"
        fields.update(status=WebhookDelivery.DELIVERED, delivered_at=now, last_error="")
    elif error.startswith("refused") or delivery.attempts >= int(conf.WEBHOOK_MAX_ATTEMPTS):
        outcome = "failed"
        fields["status"] = WebhookDelivery.FAILED
    else:
        outcome = "retried"
        fields["next_attempt_at"] = now + retry_after(delivery.attempts)
    WebhookDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, status=WebhookDelivery.PENDING
    ).update(**fields)
    metrics.inc("webhook_deliveries", outcome=outcome)
    if outcome != "delivered":
        log.warning(
            "webhook %s to %s attempt %d %s: %s",
            delivery.delivery_id,
            delivery.endpoint.url,
            delivery.attempts,
            outcome,
            error,
        )
    return outcome


def send_due(now: datetime | None = None, limit: int = 100, budget: float = 30.0) -> dict[str, int]:
    """POST the deliveries due at `now` (default: the clock), one at a time, at most `limit`
    of them and claiming none after `budget` seconds; counts by outcome."""
    now = now or timezone.now()
    counts = {"delivered": 0, "retried": 0, "failed": 0}
    stop_at = time.monotonic() + budget
    for _ in range(limit):
        if time.monotonic() > stop_at:
            break
        delivery = _claim(now)
        if delivery is None:
            break
        code, error = send(delivery)
        counts[_record(delivery, now, code, error)] += 1
    return counts


def send(delivery: WebhookDelivery) -> tuple[int | None, str]:
    """One POST of `delivery` to its endpoint: (the status code or None, an error or "").
    A URL that is not http(s) is refused without connecting ("refused: ...")."""
    endpoint = delivery.endpoint
    try:
        check_url(endpoint.url)
    except ValidationError as exc:
        return None, f"refused: {exc.messages[0]}"
    body = body_of(delivery)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Cartimage-Delivery": str(delivery.delivery_id),
        "X-Cartimage-Event": delivery.event_type,
        "X-Cartimage-Timestamp": timestamp,
        "X-Cartimage-Signature": signature(endpoint.secret, timestamp, body),
    }
    return post(endpoint.url, body, headers, float(conf.WEBHOOK_TIMEOUT))


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """POST `body` to `url` (http or https, checked by the caller), following no redirect,
    all of it within `timeout` seconds: (status code, "" or what went wrong)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    cut = threading.Event()

    def cut_off() -> None:
        # The socket timeout bounds each read; this bounds the whole exchange.
        cut.set()
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the exchange is over anyway

    watchdog = threading.Timer(timeout, cut_off)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        sample = response.read(ERROR_SAMPLE)
    except (OSError, http.client.HTTPException) as exc:
        if cut.is_set():
            return None, f"timed out after {timeout:g} s"
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        watchdog.cancel()
        connection.close()
    if 200 <= response.status < 300:
        return response.status, ""
    error = f"HTTP {response.status}"
    if 300 <= response.status < 400:
        error += f" (redirects are not followed; Location: {response.getheader('Location')})"
    text = sample.decode("utf-8", "replace").strip()
    return response.status, f"{error}: {text}" if text else error


def retry_now(ids: Iterable[Any], now: datetime | None = None) -> int:
    """Make the deliveries `ids` (primary keys) due now, failed ones included (each gets one
    attempt more); delivered ones are left alone. Returns how many."""
    now = now or timezone.now()
    return WebhookDelivery.objects.filter(
        pk__in=list(ids),
        status__in=[WebhookDelivery.PENDING, WebhookDelivery.FAILED],
    ).update(status=WebhookDelivery.PENDING, next_attempt_at=now, updated_at=now)
