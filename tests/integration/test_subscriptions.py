"""Subscriptions: every event once, in order per cart, from a durable checkpoint; a failing
handler stops at its event; replay; on both databases (the contract run)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from cartsvc import health, service, subscriptions
from cartsvc.models import CartEvent, Subscription
from tests import subscribers
from tests.factories import make_cart

pytestmark = [pytest.mark.contract, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def recording(settings):
    subscribers.RECORDED.clear()
    subscribers.FAIL_ON.clear()
    settings.CARTIMAGE = {
        **settings.CARTIMAGE,
        "SUBSCRIBERS": {
            "probe": "tests.subscribers.record",
            "picky": "tests.subscribers.failing",
            "late": {"handler": "tests.subscribers.record", "start": "now"},
        },
        "SUBSCRIPTION_MAX_FAILURES": 2,
    }
    yield subscribers.RECORDED
    subscribers.RECORDED.clear()
    subscribers.FAIL_ON.clear()


def log_order() -> list[tuple[str, int, int]]:
    rows = CartEvent.objects.order_by("id").values_list("cart_id", "version", "id")
    return [(str(cart), version, event_id) for cart, version, event_id in rows]


def test_every_event_once_in_order_then_nothing_then_a_replay(products, recording):
    carts = [make_cart({"SKU-1": 1}) for _ in range(3)]
    service.add_line(carts[0].id, "SKU-2", 2)
    assert subscriptions.drain("probe") == {"probe": len(log_order())}
    assert sorted(recording, key=lambda r: r[2]) == log_order()
    assert subscriptions.drain("probe") == {"probe": 0}

    subscriptions.reset("probe")
    recording.clear()
    assert subscriptions.drain("probe")["probe"] == len(log_order())
    assert sorted(recording, key=lambda r: r[2]) == log_order()
    (status,) = [s for s in subscriptions.status() if s.name == "probe"]
    assert (status.behind, status.stopped, status.delivered) == (0, False, 2 * len(log_order()))


def test_a_subscription_from_now_skips_the_history(products, recording):
    make_cart({"SKU-1": 1})
    assert subscriptions.drain("late") == {"late": 0}
    cart = make_cart({"SKU-2": 1})
    subscriptions.drain("late")
    assert {r[0] for r in recording} == {cart.id}


def test_the_lag_counts_what_is_not_delivered_yet(products, recording):
    make_cart({"SKU-1": 1})
    subscriptions.drain("probe")
    cart = make_cart({"SKU-2": 1})
    (status,) = [s for s in subscriptions.status() if s.name == "probe"]
    assert status.behind == cart.version and status.behind_seconds >= 0


def test_a_failing_handler_stops_at_its_event_and_resumes_there_once_fixed(products, recording):
    carts = [make_cart({"SKU-1": 1}) for _ in range(3)]
    order = log_order()
    bad = order[3][2]
    subscribers.FAIL_ON.add(bad)

    assert subscriptions.drain("picky") == {"picky": 0}
    assert [r[2] for r in recording] == [event_id for _c, _v, event_id in order[:3]]
    sub = Subscription.objects.get(name="picky")
    assert (sub.failures, sub.failing_event_id, sub.stopped) == (1, bad, False)
    assert sub.retry_at > timezone.now() and "handler bug" in sub.last_error
    assert subscriptions.drain("picky") == {"picky": 0}  # waits out its backoff

    Subscription.objects.filter(name="picky").update(retry_at=None)  # the backoff is over
    subscriptions.drain("picky")
    sub.refresh_from_db()
    assert (sub.failures, sub.stopped) == (2, True)  # SUBSCRIPTION_MAX_FAILURES
    assert subscriptions.stopped() == ["picky"]
    assert health.health()["subscriptions"] == {
        "ok": False,
        "state": "stopped",
        "stopped": ["picky"],
    }
    assert health.health()["status"] == "degraded"

    # The others go on.
    probe = subscriptions.drain("probe")["probe"]
    assert probe == len(order)

    subscribers.FAIL_ON.clear()  # the fix is deployed
    recording.clear()
    assert subscriptions.drain("picky") == {"picky": 0}  # still stopped until resumed
    subscriptions.resume("picky")
    subscriptions.drain("picky")
    assert [r[2] for r in recording] == [event_id for _c, _v, event_id in order[3:]]
    assert subscriptions.stopped() == [] and health.health()["subscriptions"]["ok"] is True
    assert carts


def test_unknown_names_and_resets_are_refused(recording):
    from cartsvc.domain import InvalidInput

    with pytest.raises(InvalidInput):
        subscriptions.drain("nope")
    with pytest.raises(InvalidInput):
        subscriptions.reset("probe", to="yesterday")
    with pytest.raises(InvalidInput):
        subscriptions.resume("nope")
    with pytest.raises(InvalidInput):
        subscriptions.rebuild("probe")  # no read model beside its handler
    assert not Subscription.objects.filter(name="nope").exists()
