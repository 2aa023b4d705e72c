"""The demand read model: per SKU, the units and carts in open carts now, kept from the log.

A subscriber (`handle`, the built-in subscription "cartsvc.demand") folds each delivered event
into two tables it alone writes: `DemandCart`, what one cart contributes (its lines by id, with
their SKU, quantity and whether they are saved for later, whether it is open, and the version
of its last event applied), and `DemandItem`, the sums per SKU. Only lines in the cart count:
saved-for-later items are not about to be bought (they count again once moved back). A cart
that is checked out, expired, merged or closed leaves the sums whole.

At-least-once delivery: an event whose version is not above its cart's applied version was
applied already and is skipped, so a redelivered batch changes nothing. An event further ahead
than the next version (the subscription started "now", or the table was installed after the
carts) first brings its cart up from the log. `rebuild` truncates both tables and folds the
whole log: it gives exactly what live delivery gives, because every figure is a sum over carts
and each cart's contribution is a fold of its own events in version order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.db import connection, transaction

from cartsvc import domain as d
from cartsvc.catalog import catalog
from cartsvc.events import decode_event
from cartsvc.models import CartEvent, DemandCart, DemandItem

__all__ = ["ORDERS", "DemandRow", "demand_rows", "handle", "rebuild"]

# The orders readers may ask for (`demand_rows`); ties go by SKU.
ORDERS = ("-units", "units", "-carts", "carts", "sku", "-sku")
# Rows written per statement by `rebuild`.
CHUNK = 1000

# A cart's lines as the projection keeps them: {line id: [sku, quantity, saved]} (JSON keys).
Lines = dict[str, list[Any]]


class LoggedEvent(Protocol):
    """What the projection reads of a delivered event (`cartsvc.subscriptions.Delivered`)."""

    @property
    def cart_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def schema(self) -> int: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def recorded_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class _Row:
    """An event row read back from the log (catching a cart up, rebuilding)."""

    cart_id: str
    version: int
    type: str
    schema: int
    data: dict[str, Any]
    recorded_at: datetime


def _added(lines: Lines, event: d.LineAdded) -> None:
    lines[str(event.line_id)] = [event.sku, event.quantity, False]


def _quantity(lines: Lines, event: d.QuantityChanged) -> None:
    if (line := lines.get(str(event.line_id))) is not None:
        line[1] = event.quantity


def _removed(lines: Lines, event: d.LineRemoved) -> None:
    lines.pop(str(event.line_id), None)


def _saved(lines: Lines, event: d.LineSavedForLater) -> None:
    if (line := lines.get(str(event.line_id))) is not None:
        line[2] = True


def _moved(lines: Lines, event: d.LineMovedToCart) -> None:
    back = lines.pop(str(event.line_id), None)
    if event.merge_into is not None:
        if (line := lines.get(str(event.merge_into))) is not None:
            line[1] = event.quantity
    elif back is not None:
        lines[str(event.line_id)] = [back[0], event.quantity, False]


def _carried_out(lines: Lines, event: d.SavedItemsCarriedOut) -> None:
    for line_id in event.line_ids:
        lines.pop(str(line_id), None)


def _carried_in(lines: Lines, event: d.SavedItemsCarriedIn) -> None:
    for saved in event.lines:
        lines[str(saved.id)] = [saved.sku, saved.quantity, True]


# How each event type moves a cart's lines; a type not here (prices, discounts, owners)
# does not move demand.
LINE_CHANGES: dict[type[d.Event], Callable[[Lines, Any], None]] = {
    d.LineAdded: _added,
    d.QuantityChanged: _quantity,
    d.LineRemoved: _removed,
    d.LineSavedForLater: _saved,
    d.LineMovedToCart: _moved,
    d.SavedItemsCarriedOut: _carried_out,
    d.SavedItemsCarriedIn: _carried_in,
}
# Events after which a cart is no longer open: it leaves the sums, and never changes again.
LEAVING = (d.CheckedOut, d.CartExpired, d.CartMerged, d.OwnerDeleted)


@dataclass(slots=True)
class _Contribution:
    """One cart's part of the projection, as it folds events."""

    version: int = 0
    open: bool = False
    lines: Lines = field(default_factory=dict)

    def apply(self, logged: LoggedEvent) -> None:
        event = decode_event(logged.type, logged.schema, logged.data, logged.recorded_at)
        self.version = logged.version
        if isinstance(event, d.CartOpened):
            self.open = True
        elif isinstance(event, LEAVING):
            self.open = False
            self.lines = {}
        elif (change := LINE_CHANGES.get(type(event))) is not None:
            change(self.lines, event)

    def units(self) -> Counter[str]:
        """Units per SKU this cart puts in the sums (none unless it is open)."""
        units: Counter[str] = Counter()
        if self.open:
            for sku, quantity, saved in self.lines.values():
                if not saved:
                    units[sku] += quantity
        return units


def _lock(mode: str) -> None:
    """Live delivery (ROW EXCLUSIVE) and a rebuild (EXCLUSIVE) exclude each other, so a
    batch applies either before the rebuild reads the log or on top of what it wrote."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"LOCK TABLE {DemandCart._meta.db_table}, {DemandItem._meta.db_table}"
                f" IN {mode} MODE"
            )


def _log_rows(cart_id: str, after: int, before: int) -> list[_Row]:
    """The cart's logged events with after < version < before, in version order."""
    rows = (
        CartEvent.objects.filter(cart_id=cart_id, version__gt=after, version__lt=before)
        .order_by("version")
        .values_list("version", "type", "schema", "data", "recorded_at")
    )
    return [_Row(cart_id, *row) for row in rows]


def handle(events: Sequence[LoggedEvent]) -> None:
    """Fold a delivered batch into the projection (the subscription's handler). Runs inside
    the caller's transaction (the drain's, which also moves its checkpoint)."""
    by_cart: dict[str, list[LoggedEvent]] = {}
    for event in events:
        by_cart.setdefault(str(event.cart_id), []).append(event)
    if not by_cart:
        return
    with transaction.atomic():
        _lock("ROW EXCLUSIVE")
        known = {
            str(row.cart_id): row
            for row in DemandCart.objects.select_for_update().filter(cart_id__in=list(by_cart))
        }
        delta_units: Counter[str] = Counter()
        delta_carts: Counter[str] = Counter()
        created: list[DemandCart] = []
        changed: list[DemandCart] = []
        for cart_id, delivered in by_cart.items():
            row = known.get(cart_id)
            part = _Contribution(row.version, row.open, row.lines) if row else _Contribution()
            before = part.units()
            for event in delivered:
                if event.version <= part.version:
                    continue  # applied already: a redelivery
                if event.version > part.version + 1:
                    for missed in _log_rows(cart_id, part.version, event.version):
                        part.apply(missed)
                part.apply(event)
            after = part.units()
            if row is not None and part.version == row.version:
                continue
            delta_units.update(after)
            delta_units.subtract(before)
            delta_carts.update(after.keys())
            delta_carts.subtract(before.keys())
            if row is None:
                created.append(
                    DemandCart(
                        cart_id=cart_id, version=part.version, open=part.open, lines=part.lines
                    )
                )
            else:
                row.version, row.open, row.lines = part.version, part.open, part.lines
                changed.append(row)
        DemandCart.objects.bulk_create(created)
        DemandCart.objects.bulk_update(changed, ["version", "open", "lines"])
        _add(delta_units, delta_carts)


def _add(delta_units: Counter[str], delta_carts: Counter[str]) -> None:
    """Move the SKUs' sums by the deltas; a SKU no open cart holds loses its row."""
    skus = sorted(
        sku
        for sku in delta_units.keys() | delta_carts.keys()
        if delta_units[sku] or delta_carts[sku]
    )
    if not skus:
        return
    items = {item.sku: item for item in DemandItem.objects.select_for_update().filter(sku__in=skus)}
    created, changed, gone = [], [], []
    for sku in skus:
        item = items.get(sku)
        units = (item.units if item else 0) + delta_units[sku]
        carts = (item.carts if item else 0) + delta_carts[sku]
        if units < 0 or carts < 0 or (carts == 0) != (units == 0):
            raise ValueError(f"demand of {sku!r} would be {units} units in {carts} carts")
        if item is None:
            created.append(DemandItem(sku=sku, units=units, carts=carts))
        elif carts == 0:
            gone.append(sku)
        else:
            item.units, item.carts = units, carts
            changed.append(item)
    DemandItem.objects.bulk_create(created)
    DemandItem.objects.bulk_update(changed, ["units", "carts"])
    DemandItem.objects.filter(sku__in=gone).delete()


def _whole_log() -> Iterator[list[_Row]]:
    """Every cart's events, a cart at a time, in version order (one read of the log)."""
    rows = (
        CartEvent.objects.order_by("cart_id", "version")
        .values_list("cart_id", "version", "type", "schema", "data", "recorded_at")
        .iterator(chunk_size=CHUNK)
    )
    cart: list[_Row] = []
    for cart_id, *rest in rows:
        row = _Row(str(cart_id), *rest)
        if cart and cart[0].cart_id != row.cart_id:
            yield cart
            cart = []
        cart.append(row)
    if cart:
        yield cart


def _chunks(rows: Iterable[DemandCart]) -> Iterator[list[DemandCart]]:
    chunk: list[DemandCart] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def rebuild(progress: Callable[[int], None] | None = None) -> int:
    """Empty the projection and fold the whole log into it again, in one transaction (live
    delivery waits for it); returns the number of events folded. `progress` is told of the
    events folded as it goes (a command's progress bar)."""
    folded = 0
    units: Counter[str] = Counter()
    carts: Counter[str] = Counter()

    def contributions() -> Iterator[DemandCart]:
        nonlocal folded
        for cart in _whole_log():
            part = _Contribution()
            for row in cart:
                part.apply(row)
            held = part.units()
            units.update(held)
            carts.update(held.keys())
            folded += len(cart)
            if progress is not None:
                progress(len(cart))
            yield DemandCart(
                cart_id=cart[0].cart_id, version=part.version, open=part.open, lines=part.lines
            )

    with transaction.atomic():
        _lock("EXCLUSIVE")
        DemandItem.objects.all().delete()
        DemandCart.objects.all().delete()
        for chunk in _chunks(contributions()):
            DemandCart.objects.bulk_create(chunk)
        DemandItem.objects.bulk_create(
            (
                DemandItem(sku=sku, units=units[sku], carts=carts[sku])
                for sku in sorted(units)
                if carts[sku]
            ),
            batch_size=CHUNK,
        )
    return folded


@dataclass(frozen=True, slots=True)
class DemandRow:
    sku: str
    name: str
    units: int
    carts: int


def demand_rows(order: str = "-units", limit: int | None = None) -> list[DemandRow]:
    """The projection, in `order` (one of ORDERS; ties by SKU), with each SKU's name from the
    catalog ("" for one it no longer knows)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    ordering = [order] if order.lstrip("-") == "sku" else [order, "sku"]
    query = DemandItem.objects.order_by(*ordering).values_list("sku", "units", "carts")
    items = list(query if limit is None else query[:limit])
    names = names_of([sku for sku, _, _ in items])
    return [DemandRow(sku, names.get(sku, ""), units, carts) for sku, units, carts in items]


def names_of(skus: list[str]) -> dict[str, str]:
    """The catalog's names of `skus` (one call); a SKU it does not know is left out."""
    if not skus:
        return {}
    return {sku: product.name for sku, product in catalog().products(skus).items()}
