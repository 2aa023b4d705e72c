"""The pure cart aggregate: decide, apply and fold, without a database."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import pytest

from cartsvc import domain as d

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
LIMITS = d.Limits()


def at(seconds: int = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def product(
    sku: str = "SKU-1", price: str = "10.00", stock: int = 1000, *, active: bool = True
) -> d.ProductInfo:
    return d.ProductInfo(sku, f"Product {sku}", Decimal(price), stock, active)


def run(cart: d.Cart | None, command: d.Command, limits: d.Limits = LIMITS) -> d.Cart:
    """Decide, then fold the events in; checks the version moves by one per event."""
    events = d.decide(cart, command, limits)
    after = d.fold(cart, events)
    assert after is not None
    assert after.version == (cart.version if cart else 0) + len(events)
    return after


def opened(cart_id: str = "cart-1", owner_id: int | None = None) -> d.Cart:
    return run(None, d.OpenCart(at(), cart_id, owner_id, "EUR"))


def add(
    cart: d.Cart,
    sku: str = "SKU-1",
    quantity: int = 1,
    options: dict[str, str] | None = None,
    limits: d.Limits = LIMITS,
    **product_kwargs,
) -> d.Cart:
    command = d.AddLine(
        at(1), product(sku, **product_kwargs), quantity, d.canonical_options(options)
    )
    return run(cart, command, limits)


def cart_with(*skus: str, quantity: int = 1) -> d.Cart:
    cart = opened()
    for sku in skus:
        cart = add(cart, sku, quantity)
    return cart


def closed(status: str) -> d.Cart:
    cart = run(cart_with("SKU-1", "SKU-2"), d.Claim(at(8), 7))
    command = {
        d.CHECKED_OUT: d.Checkout(at(9)),
        d.EXPIRED: d.Expire(at(9)),
        d.MERGED: d.MarkMerged(at(9), "cart-2"),
        d.CLOSED: d.ForgetOwner(at(9), 7),
    }[status]
    cart = run(cart, command)
    assert cart.status == status
    return cart


# ---------------------------------------------------------------- purity


def test_domain_imports_only_the_standard_library():
    source = Path(d.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in domain.py: line {node.lineno}"
            imported.add(node.module.split(".")[0])
    assert imported, "expected at least the dataclasses import"
    forbidden = {"django", "cartsvc", "carts", "config", "tests", "redis", "django_redis"}
    assert not imported & forbidden
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# ---------------------------------------------------------------- opening


def test_open_starts_an_empty_open_cart_at_version_one():
    cart = opened("cart-9", owner_id=7)
    assert cart.id == "cart-9" and cart.owner_id == 7 and cart.currency == "EUR"
    assert cart.version == 1 and cart.status == d.OPEN
    assert cart.lines == () and cart.discount is None and cart.next_line_id == 1
    assert cart.created_at == cart.updated_at == at()
    assert cart.subtotal == cart.total == Decimal("0") and cart.item_count == 0


def test_opening_an_existing_cart_is_refused():
    with pytest.raises(d.InvalidInput):
        d.decide(opened(), d.OpenCart(at(), "cart-1", None, "EUR"))


def test_commands_on_a_missing_cart_are_not_found():
    with pytest.raises(d.NotFound) as err:
        d.decide(None, d.AddLine(at(), product(), 1))
    assert err.value.code == "not_found"


def test_events_before_opening_are_refused_by_apply():
    with pytest.raises(ValueError):
        d.apply(None, d.LineRemoved(at(), 1))


def test_unknown_commands_and_events_are_type_errors():
    with pytest.raises(TypeError):
        d.decide(opened(), d.Command(at()))
    with pytest.raises(TypeError):
        d.apply(opened(), d.Event(at()))


def test_a_new_command_needs_only_its_class_and_its_decide():
    @dataclass(frozen=True, slots=True)
    class EmptyCart(d.Command):
        def decide(self, cart: d.Cart, limits: d.Limits) -> list[d.Event]:
            return [d.LineRemoved(self.at, line.id) for line in cart.lines]

    cart = run(cart_with("SKU-1", "SKU-2"), EmptyCart(at(9)))
    assert cart.lines == () and cart.version == 5
    with pytest.raises(d.NotFound):
        d.decide(None, EmptyCart(at(9)))


# ---------------------------------------------------------------- adding lines


def test_add_line_creates_a_line_with_the_product_price():
    cart = add(opened(), "SKU-1", 3, {"size": "M"}, price="2.50")
    (line,) = cart.lines
    assert (line.id, line.sku, line.name, line.quantity) == (1, "SKU-1", "Product SKU-1", 3)
    assert line.options == (("size", "M"),)
    assert line.unit_price == Decimal("2.50") and line.line_total == Decimal("7.50")
    assert cart.next_line_id == 2 and cart.version == 2 and cart.updated_at == at(1)
    assert cart.created_at == at()


def test_add_line_emits_line_added():
    events = d.decide(opened(), d.AddLine(at(1), product(), 2))
    assert events == [d.LineAdded(at(1), 1, "SKU-1", "Product SKU-1", (), 2, Decimal("10.00"))]


def test_same_sku_and_options_in_another_key_order_merge_into_one_line():
    assert d.canonical_options({"size": "M", "color": "red"}) == d.canonical_options(
        {"color": "red", "size": "M"}
    )
    cart = add(opened(), "SKU-1", 2, {"size": "M", "color": "red"})
    events = d.decide(
        cart,
        d.AddLine(at(2), product(), 3, d.canonical_options({"color": "red", "size": "M"})),
    )
    assert events == [d.QuantityChanged(at(2), 1, 5)]
    cart = d.fold(cart, events)
    assert len(cart.lines) == 1 and cart.lines[0].quantity == 5


def test_canonical_options_are_sorted_string_pairs():
    assert d.canonical_options(None) == ()
    assert d.canonical_options({}) == ()
    assert d.canonical_options({"b": "2", "a": "1"}) == (("a", "1"), ("b", "2"))
    assert d.canonical_options((("b", "2"), ("a", "1"))) == (("a", "1"), ("b", "2"))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"size": "M"}, {"size": "L"}),
        ({"size": "M"}, None),
        ({"size": "M"}, {"size": "M", "color": "red"}),
    ],
)
def test_different_options_make_separate_lines(first, second):
    cart = add(add(opened(), "SKU-1", 1, first), "SKU-1", 1, second)
    assert [line.id for line in cart.lines] == [1, 2]
    assert cart.item_count == 2


def test_another_sku_makes_another_line():
    cart = cart_with("SKU-1", "SKU-2")
    assert [line.sku for line in cart.lines] == ["SKU-1", "SKU-2"]


def test_line_ids_are_never_reused_after_a_removal():
    cart = cart_with("SKU-1", "SKU-2")
    cart = run(cart, d.RemoveLine(at(3), 2))
    cart = add(cart, "SKU-3")
    assert [line.id for line in cart.lines] == [1, 3]


# ---------------------------------------------------------------- quantity limits


def test_a_line_holds_at_most_max_line_quantity():
    limits = d.Limits(max_line_quantity=5)
    assert add(opened(), quantity=5, limits=limits).lines[0].quantity == 5
    with pytest.raises(d.QuantityLimit) as err:
        d.decide(opened(), d.AddLine(at(), product(), 6), limits)
    assert err.value.code == "quantity_limit"


def test_limit_and_stock_messages_name_the_product_and_say_what_still_fits():
    cart = add(opened(), "SKU-1", 2)
    with pytest.raises(d.QuantityLimit) as err:
        d.decide(cart, d.AddLine(at(), product("SKU-1"), 98))
    assert err.value.message == "at most 99 of one item per cart: you can add 97 more Product SKU-1"
    with pytest.raises(d.InsufficientStock) as err:
        d.decide(cart, d.AddLine(at(), product("SKU-1", stock=5), 4))
    assert err.value.message == "only 5 of Product SKU-1 in stock: you can add 3 more"
    with pytest.raises(d.InsufficientStock) as err:
        d.decide(cart, d.SetQuantity(at(), 1, 9, stock=5))
    assert err.value.message == "only 5 of Product SKU-1 in stock: this line can be at most 5"
    with pytest.raises(d.QuantityLimit) as err:
        d.decide(cart, d.SetQuantity(at(), 1, 100))
    assert err.value.message == "at most 99 of one item per cart"  # past the limit on its own


def test_the_default_line_limit_is_99():
    assert LIMITS.max_line_quantity == 99 and LIMITS.max_lines == 100
    with pytest.raises(d.QuantityLimit):
        d.decide(opened(), d.AddLine(at(), product(), 100))


def test_merging_into_an_existing_line_respects_the_line_limit():
    limits = d.Limits(max_line_quantity=5)
    cart = add(opened(), quantity=3, limits=limits)
    assert add(cart, quantity=2, limits=limits).lines[0].quantity == 5
    with pytest.raises(d.QuantityLimit):
        d.decide(cart, d.AddLine(at(), product(), 3), limits)


def test_a_cart_holds_at_most_100_lines():
    cart = opened()
    for i in range(100):
        cart = add(cart, f"SKU-{i}")
    assert len(cart.lines) == 100
    with pytest.raises(d.QuantityLimit) as err:
        d.decide(cart, d.AddLine(at(), product("SKU-NEW"), 1))
    assert err.value.code == "quantity_limit"
    # A full cart still takes more of a line it already has.
    assert add(cart, "SKU-0").line(1).quantity == 2


def test_max_lines_is_configurable():
    limits = d.Limits(max_lines=2)
    cart = add(add(opened(), "SKU-1", limits=limits), "SKU-2", limits=limits)
    with pytest.raises(d.QuantityLimit):
        d.decide(cart, d.AddLine(at(), product("SKU-3"), 1), limits)


BAD_QUANTITIES = [True, False, 1.0, 2.5, "2", None, Decimal("1"), 0, -1]


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_add_line_refuses_a_quantity_that_is_not_a_positive_int(quantity):
    with pytest.raises(d.InvalidInput) as err:
        d.decide(cart_with("SKU-1"), d.AddLine(at(), product(), quantity))
    assert err.value.code == "invalid" and err.value.field == "quantity"


@pytest.mark.parametrize("quantity", [q for q in BAD_QUANTITIES if q != 0])
def test_set_quantity_refuses_a_quantity_that_is_not_an_int_of_zero_or_more(quantity):
    with pytest.raises(d.InvalidInput) as err:
        d.decide(cart_with("SKU-1"), d.SetQuantity(at(), 1, quantity))
    assert err.value.field == "quantity"


def test_add_line_refuses_more_than_the_stock():
    with pytest.raises(d.InsufficientStock) as err:
        d.decide(opened(), d.AddLine(at(), product(stock=2), 3))
    assert err.value.code == "insufficient_stock"
    assert add(opened(), quantity=2, stock=2).lines[0].quantity == 2


def test_merging_into_a_line_counts_what_the_line_already_holds_against_stock():
    cart = add(opened(), quantity=2, stock=3)
    with pytest.raises(d.InsufficientStock):
        d.decide(cart, d.AddLine(at(), product(stock=3), 2))


def test_an_inactive_product_is_an_unknown_sku():
    with pytest.raises(d.UnknownSku) as err:
        d.decide(opened(), d.AddLine(at(), product(active=False), 1))
    assert err.value.code == "unknown_sku" and err.value.field == "sku"


# ---------------------------------------------------------------- set quantity, remove line


def test_set_quantity_changes_the_line():
    cart = cart_with("SKU-1", "SKU-2")
    events = d.decide(cart, d.SetQuantity(at(5), 2, 7))
    assert events == [d.QuantityChanged(at(5), 2, 7)]
    cart = d.fold(cart, events)
    assert cart.line(2).quantity == 7 and cart.line(1).quantity == 1 and cart.version == 4


def test_set_quantity_to_zero_removes_the_line():
    cart = cart_with("SKU-1", "SKU-2")
    events = d.decide(cart, d.SetQuantity(at(5), 1, 0))
    assert events == [d.LineRemoved(at(5), 1)]
    assert [line.id for line in d.fold(cart, events).lines] == [2]


def test_set_quantity_to_the_same_quantity_changes_nothing():
    cart = cart_with("SKU-1", quantity=3)
    assert d.decide(cart, d.SetQuantity(at(5), 1, 3)) == []


def test_set_quantity_respects_the_line_limit_and_stock():
    cart = cart_with("SKU-1")
    with pytest.raises(d.QuantityLimit):
        d.decide(cart, d.SetQuantity(at(), 1, 6), d.Limits(max_line_quantity=5))
    with pytest.raises(d.InsufficientStock):
        d.decide(cart, d.SetQuantity(at(), 1, 6, stock=5))
    assert d.decide(cart, d.SetQuantity(at(), 1, 5, stock=5)) == [d.QuantityChanged(at(), 1, 5)]
    # Unknown stock (None) skips the check.
    assert d.decide(cart, d.SetQuantity(at(), 1, 50)) == [d.QuantityChanged(at(), 1, 50)]


@pytest.mark.parametrize("command", [d.SetQuantity(at(), 99, 1), d.RemoveLine(at(), 99)])
def test_an_unknown_line_is_not_found(command):
    with pytest.raises(d.NotFound) as err:
        d.decide(cart_with("SKU-1"), command)
    assert err.value.code == "not_found" and err.value.field == "line_id"


def test_a_removed_line_is_not_found_afterwards():
    cart = run(cart_with("SKU-1"), d.RemoveLine(at(), 1))
    with pytest.raises(d.NotFound):
        d.decide(cart, d.RemoveLine(at(), 1))
    with pytest.raises(d.NotFound):
        d.decide(cart, d.SetQuantity(at(), 1, 2))


def test_remove_line():
    cart = cart_with("SKU-1", "SKU-2")
    events = d.decide(cart, d.RemoveLine(at(5), 1))
    assert events == [d.LineRemoved(at(5), 1)]
    cart = d.fold(cart, events)
    assert [line.sku for line in cart.lines] == ["SKU-2"] and cart.version == 4


# ---------------------------------------------------------------- discounts


def test_percent_discount():
    cart = add(opened(), quantity=3, price="3.35")  # subtotal 10.05
    cart = run(cart, d.ApplyDiscount(at(), "TEN", "percent", Decimal("10")))
    assert cart.discount == d.Discount("TEN", "percent", Decimal("10"))
    assert cart.subtotal == Decimal("10.05")
    assert cart.discount_amount == Decimal("1.01")  # 1.005 rounds half up
    assert cart.total == Decimal("9.04")


def test_fixed_discount():
    cart = add(opened(), quantity=2, price="10.00")
    cart = run(cart, d.ApplyDiscount(at(), "FIVE", "fixed", Decimal("5.00")))
    assert cart.discount_amount == Decimal("5.00") and cart.total == Decimal("15.00")


def test_a_fixed_discount_is_capped_at_the_subtotal():
    cart = add(opened(), quantity=1, price="3.00")
    cart = run(cart, d.ApplyDiscount(at(), "BIG", "fixed", Decimal("50.00")))
    assert cart.discount_amount == Decimal("3.00") and cart.total == Decimal("0.00")
    cart = run(cart, d.RemoveLine(at(), 1))
    assert cart.discount_amount == Decimal("0") and cart.total == Decimal("0")


def test_a_discount_needs_its_minimum_subtotal():
    cart = add(opened(), quantity=1, price="19.99")
    with pytest.raises(d.InvalidDiscount) as err:
        d.decide(cart, d.ApplyDiscount(at(), "MIN", "fixed", Decimal("5"), Decimal("20.00")))
    assert err.value.code == "invalid_discount" and err.value.field == "code"
    cart = add(cart, "SKU-2", price="0.01")  # subtotal exactly 20.00 is enough
    cart = run(cart, d.ApplyDiscount(at(), "MIN", "fixed", Decimal("5"), Decimal("20.00")))
    assert cart.discount.code == "MIN" and cart.total == Decimal("15.00")


def test_applying_the_same_discount_again_changes_nothing():
    command = d.ApplyDiscount(at(), "TEN", "percent", Decimal("10"))
    cart = run(cart_with("SKU-1"), command)
    assert d.decide(cart, command) == []
    assert d.decide(cart, d.ApplyDiscount(at(), "TEN", "percent", Decimal("10.00"))) == []


def test_another_discount_replaces_the_current_one():
    cart = run(cart_with("SKU-1"), d.ApplyDiscount(at(), "TEN", "percent", Decimal("10")))
    cart = run(cart, d.ApplyDiscount(at(), "FIVE", "fixed", Decimal("5")))
    assert cart.discount.code == "FIVE"


def test_remove_discount():
    cart = cart_with("SKU-1")
    assert d.decide(cart, d.RemoveDiscount(at())) == []
    cart = run(cart, d.ApplyDiscount(at(), "TEN", "percent", Decimal("10")))
    events = d.decide(cart, d.RemoveDiscount(at(3)))
    assert events == [d.DiscountRemoved(at(3))]
    cart = d.fold(cart, events)
    assert cart.discount is None and cart.total == cart.subtotal


def test_money_totals_are_decimal():
    cart = add(add(opened(), quantity=3, price="1.10"), "SKU-2", price="0.05")
    cart = run(cart, d.ApplyDiscount(at(), "TEN", "percent", Decimal("10")))
    for value in (cart.subtotal, cart.discount_amount, cart.total, cart.lines[0].line_total):
        assert type(value) is Decimal
    assert cart.subtotal == Decimal("3.35")
    assert cart.total == Decimal("3.01")
    assert type(opened().subtotal) is Decimal and type(opened().total) is Decimal
    assert type(cart.item_count) is int and cart.item_count == 4


def test_money_rounds_half_up_to_cents():
    assert d.money(Decimal("1.005")) == Decimal("1.01")
    assert d.money(Decimal("1.004")) == Decimal("1.00")
    assert str(d.money(Decimal("2"))) == "2.00"


# ---------------------------------------------------------------- checkout and status


def test_checkout_of_an_empty_cart_is_refused():
    with pytest.raises(d.InvalidInput) as err:
        d.decide(opened(), d.Checkout(at()))
    assert err.value.code == "invalid"


def test_checkout_freezes_the_cart():
    cart = cart_with("SKU-1")
    events = d.decide(cart, d.Checkout(at(4)))
    assert events == [d.CheckedOut(at(4))]
    cart = d.fold(cart, events)
    assert cart.status == d.CHECKED_OUT and cart.version == 3 and cart.updated_at == at(4)


MUTATIONS = [
    pytest.param(d.AddLine(at(), product("SKU-1"), 1), id="add_existing"),
    pytest.param(d.AddLine(at(), product("SKU-9"), 1), id="add_new"),
    pytest.param(d.AddLine(at(), product("SKU-9"), 0), id="add_bad_quantity"),
    pytest.param(d.SetQuantity(at(), 1, 5), id="set_quantity"),
    pytest.param(d.SetQuantity(at(), 1, 0), id="set_zero"),
    pytest.param(d.SetQuantity(at(), 99, 5), id="set_unknown_line"),
    pytest.param(d.RemoveLine(at(), 1), id="remove_line"),
    pytest.param(d.ApplyDiscount(at(), "TEN", "percent", Decimal("10")), id="apply_discount"),
    pytest.param(d.RemoveDiscount(at()), id="remove_discount"),
    pytest.param(d.Checkout(at()), id="checkout"),
    pytest.param(d.MarkMerged(at(), "cart-3"), id="mark_merged"),
    pytest.param(
        d.MergeLines(at(), (d.Line(1, "SKU-8", "P", (), 1, Decimal("1")),)), id="merge_lines"
    ),
]


@pytest.mark.parametrize("status", [d.CHECKED_OUT, d.EXPIRED, d.MERGED, d.CLOSED])
@pytest.mark.parametrize("command", MUTATIONS)
def test_a_cart_that_is_not_open_refuses_every_mutation(status, command):
    with pytest.raises(d.CartNotOpen) as err:
        d.decide(closed(status), command)
    assert err.value.code == "cart_not_open"


def test_expire_an_open_cart():
    cart = cart_with("SKU-1")
    events = d.decide(cart, d.Expire(at(7)))
    assert events == [d.CartExpired(at(7))]
    assert d.fold(cart, events).status == d.EXPIRED


@pytest.mark.parametrize("status", [d.CHECKED_OUT, d.EXPIRED, d.MERGED, d.CLOSED])
def test_expire_is_idempotent(status):
    assert d.decide(closed(status), d.Expire(at())) == []


@pytest.mark.parametrize("status", [d.OPEN, d.CHECKED_OUT, d.EXPIRED, d.MERGED])
def test_forget_owner_closes_the_cart_whatever_its_status_and_it_belongs_to_no_one(status):
    cart = run(cart_with("SKU-1"), d.Claim(at(8), 7))
    if status != d.OPEN:
        cart = closed(status)
    events = d.decide(cart, d.ForgetOwner(at(10), 7))
    assert events == [d.OwnerDeleted(at(10))]
    after = d.fold(cart, events)
    assert (after.status, after.owner_id) == (d.CLOSED, None)
    assert after.lines == cart.lines  # what it held stays in its history and state


def test_forget_owner_is_idempotent_and_leaves_other_owners_carts_alone():
    cart = run(cart_with("SKU-1"), d.Claim(at(8), 7))
    assert d.decide(cart, d.ForgetOwner(at(10), 8)) == []  # not theirs
    assert d.decide(cart_with("SKU-1"), d.ForgetOwner(at(10), 7)) == []  # a visitor's
    assert d.decide(closed(d.CLOSED), d.ForgetOwner(at(10), 7)) == []  # done already


def test_mark_merged_records_the_target():
    cart = run(cart_with("SKU-1"), d.MarkMerged(at(), "cart-2"))
    assert cart.status == d.MERGED and cart.merged_into == "cart-2"


# ---------------------------------------------------------------- merging lines


def incoming(sku: str, quantity: int, options: dict[str, str] | None = None) -> d.Line:
    return d.Line(0, sku, f"Product {sku}", d.canonical_options(options), quantity, Decimal("2"))


def test_merge_lines_adds_quantities_and_appends_new_lines():
    target = add(cart_with("SKU-1", quantity=2), "SKU-2", 1, {"size": "M"})
    merged = run(
        target,
        d.MergeLines(
            at(),
            (incoming("SKU-1", 3), incoming("SKU-2", 1, {"size": "L"}), incoming("SKU-3", 4)),
        ),
    )
    assert [(line.id, line.sku, line.options, line.quantity) for line in merged.lines] == [
        (1, "SKU-1", (), 5),
        (2, "SKU-2", (("size", "M"),), 1),
        (3, "SKU-2", (("size", "L"),), 1),
        (4, "SKU-3", (), 4),
    ]
    assert merged.version == target.version + 3
    assert merged.line(4).unit_price == Decimal("2")


def test_merge_lines_caps_quantities_at_the_line_limit():
    limits = d.Limits(max_line_quantity=5)
    target = add(opened(), "SKU-1", 4, limits=limits)
    events = d.decide(
        target, d.MergeLines(at(), (incoming("SKU-1", 3), incoming("SKU-2", 9))), limits
    )
    merged = d.fold(target, events)
    assert [(line.sku, line.quantity) for line in merged.lines] == [("SKU-1", 5), ("SKU-2", 5)]


def test_merge_lines_skips_a_line_already_at_the_limit():
    limits = d.Limits(max_line_quantity=5)
    target = add(opened(), "SKU-1", 5, limits=limits)
    assert d.decide(target, d.MergeLines(at(), (incoming("SKU-1", 2),)), limits) == []


def test_merge_lines_respects_max_lines():
    limits = d.Limits(max_lines=3)
    target = add(add(opened(), "SKU-1", limits=limits), "SKU-2", limits=limits)
    events = d.decide(
        target,
        d.MergeLines(
            at(),
            (incoming("SKU-3", 1), incoming("SKU-4", 1), incoming("SKU-1", 2)),
        ),
        limits,
    )
    merged = d.fold(target, events)
    assert [(line.sku, line.quantity) for line in merged.lines] == [
        ("SKU-1", 3),
        ("SKU-2", 1),
        ("SKU-3", 1),
    ]


def test_merge_lines_merges_duplicates_within_the_incoming_lines():
    target = opened()
    merged = run(target, d.MergeLines(at(), (incoming("SKU-1", 2), incoming("SKU-1", 3))))
    assert [(line.sku, line.quantity) for line in merged.lines] == [("SKU-1", 5)]


# ---------------------------------------------------------------- apply and fold


def test_apply_moves_the_version_by_exactly_one_per_event():
    events = [
        d.CartOpened(at(0), "c", None, "EUR"),
        d.LineAdded(at(1), 1, "A", "A", (), 1, Decimal("1")),
        d.LineAdded(at(2), 2, "B", "B", (), 1, Decimal("1")),
        d.QuantityChanged(at(3), 1, 4),
        d.DiscountApplied(at(4), "TEN", "percent", Decimal("10")),
        d.DiscountRemoved(at(5)),
        d.LineRemoved(at(6), 2),
        d.CheckedOut(at(7)),
    ]
    cart = None
    for number, event in enumerate(events, start=1):
        cart = d.apply(cart, event)
        assert cart.version == number
        assert cart.updated_at == event.at
    assert d.fold(None, events) == cart
    assert cart.created_at == at(0)
    assert [(line.id, line.quantity) for line in cart.lines] == [(1, 4)]
    assert cart.next_line_id == 3


def test_every_event_type_moves_the_version_by_one_and_sets_the_time():
    base = d.apply(cart_with("SKU-1", "SKU-2", "SKU-3"), d.LineSavedForLater(at(1), 3))
    when = at(60)
    examples = [
        d.CartOpened(when, "c2", 7, "USD"),
        d.LineAdded(when, 4, "SKU-4", "Four", (), 1, Decimal("4")),
        d.QuantityChanged(when, 1, 5),
        d.LineRemoved(when, 3),
        d.DiscountApplied(when, "TEN", "percent", Decimal("10")),
        d.DiscountRemoved(when),
        d.CheckedOut(when),
        d.CartExpired(when),
        d.CartMerged(when, "other"),
        d.LinePriceChanged(when, 1, Decimal("2.50"), Decimal("10.00")),
        d.LineSavedForLater(when, 2),
        d.LineMovedToCart(when, 3, None, 1),
        d.CartClaimed(when, 9),
        d.OwnerDeleted(when),
        d.SavedItemsCarriedOut(when, "next", (3,)),
        d.SavedItemsCarriedIn(when, "prev", (d.Line(4, "S", "N", (), 1, Decimal("1")),)),
    ]
    assert {type(event) for event in examples} == set(d.EVENT_TYPES.values())
    for event in examples:
        cart = d.apply(base, event)
        expected = 1 if isinstance(event, d.CartOpened) else base.version + 1
        assert (cart.version, cart.updated_at) == (expected, when), event.type


def test_a_new_event_type_needs_only_its_class_and_its_changes():
    @dataclass(frozen=True, slots=True)
    class Renamed(d.Event):
        type: ClassVar[str] = "renamed"
        currency: str

        def changes(self, cart: d.Cart) -> dict[str, object]:
            return {"currency": self.currency}

    cart = d.apply(opened(), Renamed(at(5), "CHF"))
    assert (cart.currency, cart.version, cart.updated_at) == ("CHF", 2, at(5))


def test_fold_of_nothing_is_the_same_cart():
    cart = cart_with("SKU-1")
    assert d.fold(cart, []) is cart
    assert d.fold(None, []) is None


def test_decide_does_not_change_the_cart():
    cart = cart_with("SKU-1", "SKU-2")
    before = (cart.version, cart.lines, cart.discount)
    d.decide(cart, d.SetQuantity(at(), 1, 9))
    d.decide(cart, d.MergeLines(at(), (incoming("SKU-1", 2), incoming("SKU-5", 1))))
    assert (cart.version, cart.lines, cart.discount) == before


def test_cart_state_is_frozen():
    cart = cart_with("SKU-1")
    with pytest.raises(AttributeError):
        cart.version = 9  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cart.lines[0].quantity = 9  # type: ignore[misc]


# ---------------------------------------------------------------- error codes

# The contract's error codes, one per refusal (the API maps each to its HTTP status:
# tests/api/test_error_statuses.py).
ERROR_CODES = {
    d.InvalidInput: "invalid",
    d.NotFound: "not_found",
    d.CartNotOpen: "cart_not_open",
    # Beyond the original error table: a checkout whose prices moved since the cart was shown.
    d.PricesChanged: "prices_changed",
    d.VersionConflict: "version_conflict",
    d.UnknownSku: "unknown_sku",
    d.InsufficientStock: "insufficient_stock",
    d.QuantityLimit: "quantity_limit",
    d.InvalidDiscount: "invalid_discount",
    d.IdempotencyKeyReused: "idempotency_key_reused",
    # Beyond the original error table: a cart locked by others past every retry (the API's 503).
    d.Busy: "busy",
    # Beyond the original table: the database connection lost (nothing applied / maybe applied).
    d.DatabaseUnavailable: "database_unavailable",
    d.OutcomeUnknown: "outcome_unknown",
}


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def test_every_domain_error_has_its_contract_code():
    assert all_subclasses(d.DomainError) == set(ERROR_CODES)


@pytest.mark.parametrize(
    ("cls", "expected"), list(ERROR_CODES.items()), ids=[cls.__name__ for cls in ERROR_CODES]
)
def test_domain_error_code(cls, expected):
    assert cls.code == expected
    error = cls("for humans", field="quantity")
    assert isinstance(error, d.DomainError)
    assert (error.code, error.message, error.field) == (expected, "for humans", "quantity")
    assert str(error) == "for humans"


def test_the_pure_domain_knows_no_http_status():
    assert not any(hasattr(cls, "status") for cls in {d.DomainError, *ERROR_CODES})


def test_a_code_can_be_overridden_per_instance_only():
    error = d.DomainError("busy", code="busy")
    assert error.code == "busy"
    assert d.DomainError.code == "invalid"
    assert d.DomainError("x").field is None


# ---------------------------------------------------------------- limits per item, across lines


def test_the_item_limit_counts_lines_of_the_same_sku_with_other_options():
    cart = add(opened(), "SKU-1", 99, {"size": "M"})
    with pytest.raises(d.QuantityLimit):
        add(cart, "SKU-1", 1, {"size": "L"})
    assert add(cart, "SKU-2", 1).item_count == 100  # another item is fine


def test_the_add_time_stock_check_counts_every_line_of_the_sku():
    cart = add(opened(), "SKU-1", 1, {"size": "S"}, stock=1)
    for size in ("M", "L", "XL"):
        with pytest.raises(d.InsufficientStock):
            add(cart, "SKU-1", 1, {"size": size}, stock=1)
    cart = add(opened(), "SKU-1", 1, {"size": "S"}, stock=2)
    assert add(cart, "SKU-1", 1, {"size": "M"}, stock=2).item_count == 2


def test_set_quantity_counts_the_skus_other_lines():
    cart = add(add(opened(), "SKU-1", 60, {"size": "M"}), "SKU-1", 30, {"size": "L"})
    line = cart.line_for("SKU-1", d.canonical_options({"size": "L"}))
    with pytest.raises(d.QuantityLimit):
        run(cart, d.SetQuantity(at(2), line.id, 40, None))
    assert run(cart, d.SetQuantity(at(2), line.id, 39, None)).item_count == 99
    with pytest.raises(d.InsufficientStock):
        run(cart, d.SetQuantity(at(2), line.id, 31, 90))
    # Lowering a line is always allowed, even when the item is over a limit lowered since.
    assert run(cart, d.SetQuantity(at(2), line.id, 5, 10)).item_count == 65


def test_moving_a_saved_item_back_is_capped_by_the_item_limit():
    cart = add(opened(), "SKU-1", 10, {"size": "M"})
    saved_id = cart.line_for("SKU-1", d.canonical_options({"size": "M"})).id
    cart = add(run(cart, d.SaveForLater(at(2), saved_id)), "SKU-1", 95, {"size": "L"})
    back = run(cart, d.MoveToCart(at(3), saved_id))
    assert back.item_count == 99  # 95 + the 4 that fit
    full = add(cart, "SKU-1", 4, {"size": "L"})
    with pytest.raises(d.QuantityLimit):
        run(full, d.MoveToCart(at(4), saved_id))


# ---------------------------------------------------------------- saved items carried along


def with_saved(*skus: str) -> d.Cart:
    """A cart holding SKU-1 and, saved for later, one of each of `skus`."""
    cart = cart_with("SKU-1", *skus)
    for line in [line for line in cart.lines if line.sku in skus]:
        cart = run(cart, d.SaveForLater(at(2), line.id))
    return cart


def test_checkout_with_a_next_cart_carries_the_saved_items_out():
    cart = with_saved("SKU-2", "SKU-3")
    events = d.decide(cart, d.Checkout(at(5), carry_saved_to="cart-2"))
    saved_ids = tuple(line.id for line in cart.saved)
    assert events == [d.SavedItemsCarriedOut(at(5), "cart-2", saved_ids), d.CheckedOut(at(5))]
    after = d.fold(cart, events)
    assert after.status == d.CHECKED_OUT and after.saved == ()
    assert [line.sku for line in after.lines] == ["SKU-1"]


def test_checkout_without_saved_items_carries_nothing():
    cart = cart_with("SKU-1")
    assert d.decide(cart, d.Checkout(at(5), carry_saved_to="cart-2")) == [d.CheckedOut(at(5))]


def test_carried_in_items_are_numbered_after_the_carts_lines():
    source = with_saved("SKU-2", "SKU-3")
    target = add(opened("cart-2"), "SKU-7", 1)
    events = d.decide(target, d.CarrySavedIn(at(6), source.id, source.saved))
    (carried,) = events
    assert isinstance(carried, d.SavedItemsCarriedIn) and carried.from_cart_id == source.id
    after = d.fold(target, events)
    assert [(line.id, line.sku) for line in after.saved] == [(2, "SKU-2"), (3, "SKU-3")]
    assert after.next_line_id == 4 and after.item_count == 1  # saved items are not counted
    # Each keeps what it was: name, options, quantity, price.
    assert [replace(line, id=0) for line in after.saved] == [
        replace(line, id=0) for line in source.saved
    ]


def test_an_item_saved_in_both_carts_adds_up_and_the_limit_holds():
    source = with_saved("SKU-2", "SKU-3", "SKU-4")
    target = with_saved("SKU-3")
    after = run(target, d.CarrySavedIn(at(6), source.id, source.saved))
    assert [(line.sku, line.quantity) for line in after.saved] == [
        ("SKU-3", 2),
        ("SKU-2", 1),
        ("SKU-4", 1),
    ]
    # At most max_lines saved entries: a new item past that is not taken (it stays where it
    # was); an item already saved here still adds up, to the per-item limit.
    capped = run(target, d.CarrySavedIn(at(6), source.id, source.saved), d.Limits(3, 2))
    assert [(line.sku, line.quantity) for line in capped.saved] == [("SKU-3", 2), ("SKU-2", 1)]
    again = run(capped, d.CarrySavedIn(at(7), source.id, source.saved), d.Limits(3, 2))
    assert [(line.sku, line.quantity) for line in again.saved] == [("SKU-3", 3), ("SKU-2", 2)]


def test_checkout_carries_out_only_what_the_next_cart_takes():
    cart = with_saved("SKU-2", "SKU-3", "SKU-4")
    events = d.decide(cart, d.Checkout(at(5), carry_saved_to="cart-2"), d.Limits(99, 2))
    carried_out = events[0]
    assert isinstance(carried_out, d.SavedItemsCarriedOut)
    assert [line.sku for line in d.fold(cart, events).saved] == ["SKU-4"]
    opened = run(None, d.OpenCart(at(5), "cart-2", None, "EUR"))
    following = run(opened, d.CarrySavedIn(at(5), cart.id, cart.saved), d.Limits(99, 2))
    assert len(following.saved) == len(carried_out.line_ids) == 2


def test_a_login_merge_brings_the_visitors_saved_items():
    visitor = with_saved("SKU-5")
    mine = cart_with("SKU-1")
    merging = d.MergeLines(at(8), visitor.lines, None, visitor.id, visitor.saved)
    after = run(mine, merging)
    assert [line.sku for line in after.saved] == ["SKU-5"]
    assert after.lines[0].quantity == 2  # SKU-1 from both
