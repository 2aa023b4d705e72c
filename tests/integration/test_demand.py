"""The demand read model: live delivery = a fold of the log = rebuild; redelivery is a no-op."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections import Counter
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartsvc import demand, domain, events, service, subscriptions
from cartsvc.models import CartEvent, CartLine, DemandCart, DemandItem
from cartsvc.subscriptions import Delivered
from tests.factories import make_product
from tests.hypothesis_profiles import examples

# Transactions of their own: a drain delivers only what is committed.
pytestmark = pytest.mark.django_db(transaction=True)

NAME = "cartsvc.demand"

SKUS = ["D-1", "D-2", "D-3"]
OPTIONS = [None, {"size": "M"}]
CARTS = 3

# What a step does, weighted (a kind listed twice is drawn twice as often): mostly lines
# moving, now and then a cart leaving "open" (each way out takes its lines out of the sums).
KINDS = [*["add"] * 4, *["set", "save", "move"] * 2, "remove", "leave"]
LEAVING = ["checkout", "expire", "merge", "close"]
# (cart slot, kind, sku, quantity, options, a line pick, another cart slot)
step = st.tuples(
    st.integers(0, CARTS - 1),
    st.sampled_from(KINDS),
    st.sampled_from(SKUS),
    st.integers(0, 4),
    st.integers(0, len(OPTIONS) - 1),
    st.integers(0, 5),
    st.integers(0, CARTS - 1),
)


@pytest.fixture
def shop(db):
    for i, sku in enumerate(SKUS, start=1):
        make_product(sku, price=f"{i}.50", stock=100_000)


def logged(after_id: int = 0) -> list[Delivered]:
    """The log after `after_id` as a subscription hands it over (one writer here: the id
    order is the commit order)."""
    return [Delivered.of(row) for row in CartEvent.objects.filter(id__gt=after_id).order_by("id")]


def drain(batch: int = subscriptions.BATCH) -> int:
    """Deliver everything pending to the demand subscription, `batch` events at a time."""
    delivered = 0
    with mock.patch.object(subscriptions, "BATCH", batch):
        while count := subscriptions.drain(NAME)[NAME]:
            delivered += count
    return delivered


def projection() -> dict[str, tuple[int, int]]:
    return {i.sku: (i.units, i.carts) for i in DemandItem.objects.all()}


def fold_of_the_log() -> dict[str, tuple[int, int]]:
    """Per SKU (units, carts) over the open carts of the domain's own fold of the log."""
    by_cart: dict[str, list[domain.Event]] = {}
    for r in CartEvent.objects.order_by("cart_id", "version"):
        decoded = events.decode_event(r.type, r.schema, r.data, r.recorded_at)
        by_cart.setdefault(str(r.cart_id), []).append(decoded)
    units: Counter[str] = Counter()
    carts: Counter[str] = Counter()
    for cart_events in by_cart.values():
        cart = domain.fold(None, cart_events)
        if cart is not None and cart.status == domain.OPEN:
            held = Counter()
            for line in cart.lines:
                held[line.sku] += line.quantity
            units.update(held)
            carts.update(held.keys())
    return {sku: (units[sku], carts[sku]) for sku in units}


def from_the_rows() -> dict[str, tuple[int, int]]:
    """The same figures from the cart rows the store keeps (a third opinion)."""
    units: Counter[str] = Counter()
    carts: dict[str, set] = {}
    for line in CartLine.objects.filter(cart__status=domain.OPEN, saved=False):
        units[line.sku] += line.quantity
        carts.setdefault(line.sku, set()).add(line.cart_id)
    return {sku: (units[sku], len(carts[sku])) for sku in units}


class Shop:
    """A few carts driven through the service, each of its own customer; a slot whose cart
    left "open" gets the cart its checkout opened (saved items), or a new customer's."""

    def __init__(self) -> None:
        self.carts = [self.fresh() for _ in range(CARTS)]

    def fresh(self) -> service.Cart:
        user = get_user_model().objects.create_user(f"demand-{uuid.uuid4().hex[:12]}")
        return service.open_cart(owner_id=user.pk)

    def line(self, cart: service.Cart, index: int, saved: bool = False) -> int:
        lines = cart.saved if saved else cart.lines
        return lines[index % len(lines)].id if lines else 999

    def run(
        self, slot: int, kind: str, sku: str, quantity: int, options: int, pick: int, other: int
    ) -> None:
        cart = service.get_cart(self.carts[slot].id)
        if kind == "leave":
            kind = LEAVING[pick % len(LEAVING)]
        if kind == "add":
            service.add_line(cart.id, sku, quantity + 1, OPTIONS[options])
        elif kind == "set":
            service.set_quantity(cart.id, self.line(cart, pick), quantity)
        elif kind == "remove":
            service.remove_line(cart.id, self.line(cart, pick))
        elif kind == "save":
            service.save_for_later(cart.id, self.line(cart, pick))
        elif kind == "move":
            service.move_to_cart(cart.id, self.line(cart, pick, saved=True))
        elif kind == "checkout":
            service.checkout(cart.id)
        elif kind == "expire":
            service.expire_cart(cart.id)
        elif kind == "merge":
            service.merge_carts(cart.id, self.carts[other].id)
        elif kind == "close" and cart.owner_id is not None:
            service.close_user_carts(cart.owner_id)

    def step(self, command: tuple) -> None:
        with contextlib.suppress(domain.DomainError):  # refused: no event, nothing to count
            self.run(*command)
        for i, cart in enumerate(self.carts):
            try:
                now = service.get_cart(cart.id)
            except domain.NotFound:  # closed: its owner is gone
                self.carts[i] = self.fresh()
                continue
            if now.status != domain.OPEN:
                now = service.next_cart(cart.id) or self.fresh()
            self.carts[i] = now


@settings(
    max_examples=examples(20),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(step, min_size=10, max_size=25),
    split=st.integers(0, 25),
    batch=st.integers(1, 9),
)
def test_live_delivery_equals_a_fold_of_the_log_and_a_rebuild(shop, steps, split, batch):
    # Examples share the database (and the subscription's checkpoint): each goes on from
    # the last one's state, rebuilt or not.
    shop_carts = Shop()
    for command in steps[:split]:
        shop_carts.step(command)
    drain(batch)
    for command in steps[split:]:
        shop_carts.step(command)
    drain(batch)

    live = projection()
    assert live == fold_of_the_log()
    assert live == from_the_rows()
    assert all(units > 0 and carts > 0 for units, carts in live.values())
    trackers = {str(t.cart_id): t.version for t in DemandCart.objects.all()}

    assert demand.rebuild() == CartEvent.objects.count()
    assert projection() == live
    assert {str(t.cart_id): t.version for t in DemandCart.objects.all()} == trackers

    # Everything handed again, at once: nothing moves.
    demand.handle(logged())
    assert projection() == live


def test_a_redelivered_batch_changes_nothing(shop):
    cart = service.open_cart()
    service.add_line(cart.id, "D-1", 2)
    service.add_line(cart.id, "D-2", 1)
    assert drain() == 3
    assert projection() == {"D-1": (2, 1), "D-2": (1, 1)}
    batch = logged()
    demand.handle(batch)
    demand.handle(batch[1:])
    # A replay of the whole log (reset to the beginning) is a redelivery too.
    subscriptions.reset(NAME)
    assert drain(batch=2) == 3
    assert projection() == {"D-1": (2, 1), "D-2": (1, 1)}


def test_the_subscription_s_rebuild_gives_the_live_table(shop):
    for lines in ({"D-1": 1, "D-2": 5}, {"D-2": 1}):
        cart = service.open_cart()
        for sku, quantity in lines.items():
            service.add_line(cart.id, sku, quantity)
    drain()
    live = projection()
    DemandItem.objects.filter(sku="D-2").update(units=99)  # a damaged table
    out = io.StringIO()
    call_command("cart_subscriptions", "--rebuild", NAME, stdout=out)
    assert "cartsvc.demand: read model rebuilt from the log" in out.getvalue()
    assert projection() == live == {"D-1": (1, 1), "D-2": (6, 2)}
    assert drain() == 0  # the checkpoint stayed: nothing is delivered twice


def test_checkout_and_saved_items_leave_the_sums(shop):
    first = service.open_cart()
    line = service.add_line(first.id, "D-1", 3).lines[0]
    service.add_line(first.id, "D-2", 2)
    service.save_for_later(first.id, line.id)
    other = service.open_cart()
    service.add_line(other.id, "D-2", 5)
    drain()
    assert projection() == {"D-2": (7, 2)}

    service.checkout(first.id)  # D-1, saved, goes to the next cart, still saved
    drain()
    assert projection() == {"D-2": (5, 1)}
    following = service.next_cart(first.id)
    service.move_to_cart(following.id, following.saved[0].id)
    drain()
    assert projection() == {"D-1": (3, 1), "D-2": (5, 1)}


def test_a_cart_met_mid_history_is_caught_up_from_the_log(shop):
    """A subscription that started "now" hands a cart's later events only: the earlier ones
    are read from the log, so the cart's contribution is still whole."""
    cart = service.open_cart()
    service.add_line(cart.id, "D-1", 4)
    service.add_line(cart.id, "D-3", 1)
    demand.handle(logged()[-1:])
    assert projection() == {"D-1": (4, 1), "D-3": (1, 1)}


def test_rows_come_sorted_with_names(shop):
    for lines in ({"D-1": 1, "D-2": 5}, {"D-2": 1, "D-3": 2}):
        cart = service.open_cart()
        for sku, quantity in lines.items():
            service.add_line(cart.id, sku, quantity)
    drain()
    rows = demand.demand_rows()
    assert [(r.sku, r.name, r.units, r.carts) for r in rows] == [
        ("D-2", "Product D-2", 6, 2),
        ("D-3", "Product D-3", 2, 1),
        ("D-1", "Product D-1", 1, 1),
    ]
    assert [r.sku for r in demand.demand_rows("sku")] == ["D-1", "D-2", "D-3"]
    assert [r.sku for r in demand.demand_rows("-carts")] == ["D-2", "D-1", "D-3"]
    with pytest.raises(ValueError):
        demand.demand_rows("name; drop table")
