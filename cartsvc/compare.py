"""Cart states side by side (the admin's rows and memory against the event log), field by field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from cartsvc.domain import Cart, Line
from cartsvc.templatetags.cartimage import money, options, status_label

# (attribute of the state, label): the header rows of a panel, in display order.
HEADER = (
    ("version", "Version"),
    ("status", "Status"),
    ("currency", "Currency"),
    ("owner_id", "Owner id"),
    ("discount", "Discount"),
    ("merged_into", "Merged into"),
    ("next_line_id", "Next line id"),
    ("created_at", "Created"),
    ("updated_at", "Updated"),
    ("item_count", "Items"),
    ("subtotal", "Subtotal"),
    ("total", "Total"),
)
LINE_FIELDS = ("sku", "name", "options", "quantity", "unit_price", "line_total")


@dataclass(frozen=True)
class Slot:
    """One line position of a panel: the line on this side (None: absent here) and the
    fields that differ from the same line on the other side."""

    saved: bool
    line_id: int
    line: Line | None
    changed: frozenset[str]
    only_here: bool  # present on this side, absent on the other

    @property
    def missing(self) -> bool:
        return self.line is None

    @property
    def differs(self) -> bool:
        return self.missing or self.only_here or bool(self.changed)


@dataclass(frozen=True)
class HeaderRow:
    name: str
    label: str
    value: str
    changed: bool


@dataclass(frozen=True)
class Panel:
    """What one side shows: its header rows and its line slots (aligned with the other's)."""

    state: Cart
    header: tuple[HeaderRow, ...]
    lines: tuple[Slot, ...]
    saved: tuple[Slot, ...]


@dataclass(frozen=True)
class Comparison:
    left: Panel
    right: Panel | None  # None: nothing to compare with (not in memory)
    differences: tuple[str, ...]  # for people: "line 2 (SKU-1): quantity 3 vs 5"

    @property
    def same(self) -> bool:
        return self.right is not None and not self.differences


def _lines(cart: Cart | None) -> dict[tuple[bool, int], Line]:
    if cart is None:
        return {}
    found = {(False, line.id): line for line in cart.lines}
    found.update(((True, line.id), line) for line in cart.saved)
    return found


def _value(line: Line, field: str) -> Any:
    return getattr(line, field)


def _show(line: Line, field: str, currency: str) -> str:
    value = _value(line, field)
    if field == "options":
        return options(value) or "none"
    if field in ("unit_price", "line_total"):
        return money(value, currency)
    return str(value)


def format_value(cart: Cart, name: str) -> str:
    """A header value of a state, as the admin shows it."""
    value = getattr(cart, name)
    if name in ("subtotal", "total"):
        return money(value, cart.currency)
    if name == "status":
        return status_label(value)
    if name == "discount":
        if value is None:
            return "none"
        if not isinstance(value.value, Decimal) or value.kind not in ("percent", "fixed"):
            return f"{value.code} (damaged: {value.kind or 'no kind'}, {value.value or 'no value'})"
        amount = money(cart.discount_amount, cart.currency)
        rate = f"{value.value.normalize():f}% off" if value.kind == "percent" else "fixed"
        return f"{value.code} ({rate}, \u2212{amount})"
    if isinstance(value, datetime):
        local = timezone.localtime(value)
        return f"{local.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} {local.tzname()}"
    return "—" if value is None else str(value)


def _header(
    cart: Cart, other: Cart | None, names: tuple[str, str]
) -> tuple[tuple[HeaderRow, ...], list[str]]:
    rows, differences = [], []
    for name, label in HEADER:
        changed = other is not None and getattr(cart, name) != getattr(other, name)
        rows.append(HeaderRow(name, label, format_value(cart, name), changed))
        if changed and other is not None:
            differences.append(
                f"{label.lower()}: {names[0]} {format_value(cart, name)}, "
                f"{names[1]} {format_value(other, name)}"
            )
    return tuple(rows), differences


def _describe(line: Line) -> str:
    return f"line {line.id} ({line.sku})"


def compare(
    left: Cart, right: Cart | None, names: tuple[str, str] = ("rows", "memory")
) -> Comparison:
    """Align two states by line id (cart lines, then saved ones) and mark every difference;
    `names` name the two sides in the differences. With `right` None, the left panel is shown
    alone and nothing is marked."""
    mine, theirs = _lines(left), _lines(right)
    keys = sorted(set(mine) | set(theirs) if right is not None else set(mine))
    left_slots: list[Slot] = []
    right_slots: list[Slot] = []
    differences: list[str] = []
    for key in keys:
        a, b = mine.get(key), theirs.get(key)
        changed: frozenset[str] = frozenset()
        if a is not None and b is not None:
            changed = frozenset(f for f in LINE_FIELDS if _value(a, f) != _value(b, f))
            differences += [
                f"{_describe(a)} {f.replace('_', ' ')}: "
                f"{names[0]} {_show(a, f, left.currency)}, "
                f"{names[1]} {_show(b, f, right.currency if right else left.currency)}"
                for f in LINE_FIELDS
                if f in changed
            ]
        elif right is not None:
            where = "saved " if key[0] else ""
            line, side = (b, names[1]) if a is None else (a, names[0])
            assert line is not None
            differences.append(f"{where}{_describe(line)}: in {side} only")
        left_slots.append(Slot(key[0], key[1], a, changed, right is not None and b is None))
        right_slots.append(Slot(key[0], key[1], b, changed, a is None))
    header, header_differences = _header(left, right, names)
    left_panel = Panel(
        left,
        header,
        tuple(s for s in left_slots if not s.saved),
        tuple(s for s in left_slots if s.saved),
    )
    right_panel = None
    if right is not None:
        right_header, _ = _header(right, left, (names[1], names[0]))
        right_panel = Panel(
            right,
            right_header,
            tuple(s for s in right_slots if not s.saved),
            tuple(s for s in right_slots if s.saved),
        )
    # The lines first: a header difference (items, totals) usually follows from them.
    return Comparison(left_panel, right_panel, tuple(differences + header_differences))


def _named(line: Line, saved: bool) -> str:
    where = "saved line" if saved else "line"
    return f"{where} {line.id} ({line.name}, {line.sku})"


def in_words(left: Cart | None, right: Cart | None, says: tuple[str, str]) -> list[str]:
    """Each difference between two states as a sentence an operator can read, e.g. "rows say
    quantity 7 for line 1 (Mug, SKU-1), the event log says 2"; `says` names each side with
    its verb ("rows say", "the event log says"). The lines first, then the header fields."""
    if left is None or right is None:
        return []
    mine, theirs = _lines(left), _lines(right)
    found: list[str] = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if a is not None and b is not None:
            fields = [f for f in LINE_FIELDS if _value(a, f) != _value(b, f)]
            if {"quantity", "unit_price"} & set(fields):
                fields = [f for f in fields if f != "line_total"]  # follows from them
            found += [
                f"{says[0]} {f.replace('_', ' ')} {_show(a, f, left.currency)} for "
                f"{_named(a, key[0])}, {says[1]} {_show(b, f, right.currency)}"
                for f in fields
            ]
        elif a is not None:
            found.append(f"{says[0]} {_named(a, key[0])}, {says[1]} there is no such line")
        elif b is not None:
            found.append(f"{says[0]} there is no {_named(b, key[0])}, {says[1]} there is")
    lines_differ = bool(found)
    for name, label in HEADER:
        if name in ("item_count", "subtotal", "total") and lines_differ:
            continue  # these follow from the lines already named
        if getattr(left, name) != getattr(right, name):
            found.append(
                f"{says[0]} {label.lower()} {format_value(left, name)}, "
                f"{says[1]} {format_value(right, name)}"
            )
    return found


def panel(cart: Cart) -> Panel:
    """One state on its own (the state at a past version)."""
    return compare(cart, None).left


@dataclass(frozen=True)
class AgainstLog:
    """One side (rows, or memory) held against the event log: its panel with every
    difference from the log marked, and those differences in words."""

    panel: Panel
    differences: tuple[str, ...]

    @property
    def same(self) -> bool:
        return not self.differences


def against_log(state: Cart, log: Cart | None, says: tuple[str, str]) -> AgainstLog:
    """`state` beside the log's fold (the truth); `says` as for `in_words`."""
    if log is None:
        return AgainstLog(panel(state), (f"{says[1]} nothing: the log has no events",))
    marked = compare(state, log).left
    words = in_words(state, log, says)
    if state != log and not words:
        words = ["they differ in a field not shown here"]
    return AgainstLog(marked, tuple(words))
