"""Property: after any command sequence, rows = fold(events) = snapshot + replay = memory."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carts.models import Product
from cartsvc import domain, events, service, store
from cartsvc.models import CartEvent, CartSnapshot
from tests.factories import make_discount, make_product
from tests.hypothesis_profiles import examples

pytestmark = pytest.mark.django_db

SKUS = ["P-1", "P-2", "P-3", "P-4"]
OPTIONS = [
    None,
    {},
    {"size": "M"},
    {"size": "L"},
    {"size": "M", "color": "red"},
    {"color": "red", "size": "M"},  # the same line as the one above
]
CODES = ["TEN", "FIVE", "NOPE"]  # percent, fixed, unknown
BOGUS_LINE = 999
MAX_LINE_QUANTITY = 12
MAX_LINES = 8

add_line = st.tuples(
    st.just("add_line"),
    st.sampled_from(SKUS),
    st.integers(1, 5),
    st.sampled_from(range(len(OPTIONS))),
)
# A line pick: an index into the cart's current lines, or None for a line that never existed.
line_pick = st.one_of(st.none(), st.integers(0, 9))
set_quantity = st.tuples(st.just("set_quantity"), line_pick, st.integers(0, 6))
remove_line = st.tuples(st.just("remove_line"), line_pick)
apply_discount = st.tuples(st.just("apply_discount"), st.sampled_from(CODES))
remove_discount = st.tuples(st.just("remove_discount"))
save_for_later = st.tuples(st.just("save_for_later"), line_pick)
move_to_cart = st.tuples(st.just("move_to_cart"), line_pick)
# The catalog moves a price, then the cart is viewed: lines take the new price.
reprice = st.tuples(st.just("reprice"), st.sampled_from(SKUS), st.integers(1, 9))
claim = st.tuples(st.just("claim"))
# Another visitor cart with these lines merges into this one (several events at once).
merge_in = st.tuples(
    st.just("merge_in"), st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 5)), max_size=3)
)
command = st.one_of(
    add_line,
    add_line,
    set_quantity,
    remove_line,
    apply_discount,
    remove_discount,
    save_for_later,
    move_to_cart,
    reprice,
    claim,
    merge_in,
)

scenario = st.tuples(
    st.lists(command, max_size=22),
    st.booleans(),  # check out at the end?
    st.lists(command, max_size=3),  # after the checkout: all refused
)


@pytest.fixture
def shop(db):
    """The catalog, once per test function (examples share the test's transaction)."""
    for i, sku in enumerate(SKUS, start=1):
        make_product(sku, price=f"{i}.{i}5", stock=10_000)
    make_discount("TEN", "percent", "10", min_subtotal=Decimal("0"))
    make_discount("FIVE", "fixed", "5.00", min_subtotal=Decimal("0"))


def line_id(cart: domain.Cart, pick: int | None) -> int:
    if pick is None or not cart.lines:
        return BOGUS_LINE
    # Beyond the current lines: ids that were used and removed, or never used yet.
    if pick >= len(cart.lines):
        return pick + 1
    return cart.lines[pick].id


def saved_id(cart: domain.Cart, pick: int | None) -> int:
    if pick is None or not cart.saved:
        return BOGUS_LINE
    return cart.saved[pick % len(cart.saved)].id


def run(cart: domain.Cart, step: tuple) -> domain.Cart:
    kind, *args = step
    if kind == "add_line":
        sku, quantity, options = args
        return service.add_line(cart.id, sku, quantity, OPTIONS[options])
    if kind == "set_quantity":
        pick, quantity = args
        return service.set_quantity(cart.id, line_id(cart, pick), quantity)
    if kind == "remove_line":
        (pick,) = args
        return service.remove_line(cart.id, line_id(cart, pick))
    if kind == "apply_discount":
        (code,) = args
        return service.apply_discount(cart.id, code)
    if kind == "remove_discount":
        return service.remove_discount(cart.id)
    if kind == "checkout":
        return service.checkout(cart.id)
    if kind == "save_for_later":
        (pick,) = args
        return service.save_for_later(cart.id, line_id(cart, pick))
    if kind == "move_to_cart":
        (pick,) = args
        return service.move_to_cart(cart.id, saved_id(cart, pick))
    if kind == "reprice":
        sku, cents = args
        Product.objects.filter(sku=sku).update(price=Decimal(f"{cents}.{cents}0"))
        refreshed, _changes = service.refresh_prices(cart.id)
        return refreshed
    if kind == "claim":
        if cart.owner_id is not None:
            return cart
        # A fresh customer without a cart: the visitor's cart becomes theirs.
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(f"prop-{uuid.uuid4().hex[:12]}")
        mine = service.merge_on_login(cart.id, user.pk)
        if cart.status != domain.OPEN:
            # The contract: a cart that is not open is neither merged nor claimed; the user,
            # who has no open cart, gets None, and the visitor's cart stays as it was.
            assert mine is None, step
            return service.get_cart(cart.id)
        return mine
    if kind == "merge_in":
        (lines,) = args
        visitor = service.open_cart()
        for sku, quantity in lines:
            service.add_line(visitor.id, sku, quantity)
        return service.merge_carts(visitor.id, cart.id)
    raise AssertionError(kind)


def event_count(cart_id: str) -> int:
    return CartEvent.objects.filter(cart_id=cart_id).count()


def logged_events(cart_id: str) -> list[domain.Event]:
    rows = (
        CartEvent.objects.filter(cart_id=cart_id)
        .order_by("version")
        .values_list("version", "type", "schema", "data", "recorded_at")
    )
    decoded = []
    for number, (version, event_type, schema, data, recorded_at) in enumerate(rows, start=1):
        assert version == number, "versions in the log are gapless 1..n"
        decoded.append(events.decode_event(event_type, schema, data, recorded_at))
    return decoded


@settings(
    max_examples=examples(80),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenario)
def test_rows_events_snapshots_and_memory_agree(shop, scenario):
    steps, check_out, after_checkout = scenario
    if check_out:
        steps = [*steps, ("checkout",), *after_checkout]
    cartimage = {
        **django_settings.CARTIMAGE,
        "SNAPSHOT_EVERY": 3,
        "MAX_LINE_QUANTITY": MAX_LINE_QUANTITY,
        "MAX_LINES": MAX_LINES,
    }
    with override_settings(CARTIMAGE=cartimage):
        cart = service.open_cart()
        for step in steps:
            count = event_count(cart.id)
            try:
                after = run(cart, step)
            except domain.DomainError as error:
                # Bad input changes nothing: no event, same version, same state.
                assert event_count(cart.id) == count
                assert service.get_cart(cart.id) == cart
                # An unknown code is refused by the catalog before the cart is looked at.
                if cart.status != domain.OPEN and step != ("apply_discount", "NOPE"):
                    assert isinstance(error, domain.CartNotOpen), step
                continue
            if after.version != cart.version:
                assert cart.status == domain.OPEN, f"{step} changed a {cart.status} cart"
            assert after.version >= cart.version, step
            assert event_count(cart.id) == after.version
            cart = after

        log = logged_events(cart.id)
        assert len(log) == cart.version
        folded = domain.fold(None, log)
        assert store.load_from_rows(cart.id) == folded
        assert store.load_from_events(cart.id) == folded
        assert service.get_cart(cart.id) == folded
        assert cart == folded
        assert folded.status in (domain.OPEN, domain.CHECKED_OUT)
        assert all(line.quantity <= MAX_LINE_QUANTITY for line in folded.lines)
        assert len(folded.lines) <= MAX_LINES
        assert [line.id for line in folded.lines] == sorted(line.id for line in folded.lines)

        # Every snapshot is the fold at its version (one per commit crossing a multiple of
        # 3); replay from any point agrees.
        stored = CartSnapshot.objects.filter(cart_id=cart.id).values_list("version", "state")
        snapshots = []
        for version, state in stored:
            assert events.state_from_dict(state) == domain.fold(None, log[:version]), version
            snapshots.append(version)
        assert len(snapshots) == len({v // 3 for v in snapshots}) <= cart.version // 3
        for version in {1, 2, *snapshots, *(v + 1 for v in snapshots), cart.version // 2}:
            if 1 <= version <= cart.version:
                expected = domain.fold(None, log[:version])
                assert store.load_from_events(cart.id, up_to=version) == expected, version
                assert service.cart_at(cart.id, version) == expected
