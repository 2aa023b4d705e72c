"""cart_subscriptions: the list with lag; replay, resume, drain; a stopped one exits 2."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from cartsvc import subscriptions
from cartsvc.models import CartEvent, Subscription
from tests import subscribers
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def feeds(settings):
    subscribers.RECORDED.clear()
    subscribers.FAIL_ON.clear()
    settings.CARTIMAGE = {
        **settings.CARTIMAGE,
        "SUBSCRIBERS": {"probe": "tests.subscribers.record", "picky": "tests.subscribers.failing"},
        "SUBSCRIPTION_MAX_FAILURES": 1,
    }
    yield subscribers.RECORDED
    subscribers.RECORDED.clear()
    subscribers.FAIL_ON.clear()


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("cart_subscriptions", *args, stdout=out)
    return out.getvalue()


def row(text: str, name: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return line.split()


def test_the_list_shows_each_subscription_behind_then_caught_up(products, feeds):
    make_cart({"SKU-1": 1})
    events = CartEvent.objects.count()
    text = run()
    assert row(text, "probe")[2:4] == ["0", str(events)]  # delivered, behind
    assert row(text, "cartsvc.abandoned")[-1] == "running"
    text = run("--drain")
    assert f"probe: delivered {events} events" in text
    assert row(text, "probe")[2:4] == [str(events), "0"]
    assert len(feeds) == 2 * events  # probe and picky record alike


def test_reset_replays_and_to_now_skips(products, feeds):
    make_cart({"SKU-1": 1})
    run("--drain")
    feeds.clear()
    assert "probe: checkpoint moved to beginning" in run("--reset", "probe", "--drain")
    assert len(feeds) == CartEvent.objects.count()
    make_cart({"SKU-2": 1})
    run("--reset", "probe", "--to", "now")
    assert row(run(), "probe")[3] == "0"


def test_a_stopped_subscription_is_shown_and_exits_2_until_resumed(products, feeds):
    make_cart({"SKU-1": 1})
    first = CartEvent.objects.order_by("id").first()
    subscribers.FAIL_ON.add(first.id)
    subscriptions.drain("picky")
    with pytest.raises(CommandError) as failed:
        run()
    assert failed.value.returncode == 2
    subscribers.FAIL_ON.clear()
    text = run("--resume", "picky", "--drain")
    assert "picky: resumed" in text and row(text, "picky")[3] == "0"
    assert Subscription.objects.get(name="picky").stopped is False


def test_unknown_names_are_an_error(feeds):
    with pytest.raises(CommandError, match="no subscription named 'nope'"):
        run("--reset", "nope")
    with pytest.raises(CommandError, match="no read model"):
        run("--rebuild", "probe")


def test_metrics_show_the_lag_per_subscription(products, feeds):
    make_cart({"SKU-1": 1})
    subscriptions._scraped = (0.0, None)  # no answer cached from an earlier scrape
    body = Client().get("/metrics").content.decode()
    events = CartEvent.objects.count()
    assert f'cartimage_subscription_lag_events{{subscription="probe"}} {float(events)}' in body
    assert 'cartimage_subscription_stopped{subscription="probe"} 0.0' in body
