"""The cart aggregate: frozen state, commands, events, `decide` and `apply`; pure Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar, overload

OPEN = "open"
CHECKED_OUT = "checked_out"
EXPIRED = "expired"
MERGED = "merged"
# The owner's account was deleted: the cart belongs to no one and no client sees it.
CLOSED = "closed"
STATUSES = (OPEN, CHECKED_OUT, EXPIRED, MERGED, CLOSED)

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

Options = tuple[tuple[str, str], ...]


class DomainError(Exception):
    """A command refused by the rules; `code` is the stable contract code. What a caller
    answers for a code (the API: an HTTP status) is the caller's to map."""

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    code = "invalid"


class NotFound(DomainError):
    code = "not_found"


class CartNotOpen(DomainError):
    code = "cart_not_open"


class PricesChanged(DomainError):
    """A checkout found line prices other than the cart shows: it did not go through; the
    cart is brought up to date for the shopper to confirm. `changes` lists them."""

    code = "prices_changed"

    def __init__(
        self,
        message: str,
        changes: list[dict[str, str | int | None]] | None = None,
        *,
        field: str | None = "lines",
    ) -> None:
        super().__init__(message, field=field)
        self.changes = changes or []


class VersionConflict(DomainError):
    code = "version_conflict"


class UnknownSku(DomainError):
    code = "unknown_sku"


class InsufficientStock(DomainError):
    code = "insufficient_stock"


class QuantityLimit(DomainError):
    code = "quantity_limit"


class InvalidDiscount(DomainError):
    code = "invalid_discount"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"


class Busy(DomainError):
    """The cart stayed locked by other writers for longer than we wait: retry later."""

    code = "busy"


class DatabaseUnavailable(DomainError):
    """The database could not be reached, on a fresh connection either: nothing was applied.
    Retry later."""

    code = "database_unavailable"


class OutcomeUnknown(DomainError):
    """The database connection was lost while the change was being committed: it may have
    been applied. Read the cart to see, or retry with the same Idempotency-Key, which
    answers the first outcome if it was applied and applies it once if it was not."""

    code = "outcome_unknown"


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def canonical_options(options: dict[str, str] | Options | None) -> Options:
    """Options in any key order are the same line: keep them sorted by key."""
    if not options:
        return ()
    items = options.items() if isinstance(options, dict) else options
    return tuple(sorted((str(k), str(v)) for k, v in items))


@dataclass(frozen=True, slots=True)
class Line:
    # A line inside an event's payload names its id "line_id", as line_added does.
    payload_keys: ClassVar[Mapping[str, str]] = MappingProxyType({"id": "line_id"})

    id: int
    sku: str
    name: str
    options: Options
    quantity: int
    unit_price: Decimal

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True, slots=True)
class Discount:
    code: str
    kind: str  # "percent" or "fixed"
    value: Decimal

    def amount_for(self, subtotal: Decimal) -> Decimal:
        if self.kind == "percent":
            return min(subtotal, money(subtotal * self.value / 100))
        return min(subtotal, self.value)


@dataclass(frozen=True, slots=True)
class Cart:
    id: str
    version: int
    status: str
    currency: str
    owner_id: int | None
    lines: tuple[Line, ...]
    discount: Discount | None
    next_line_id: int
    created_at: datetime
    updated_at: datetime
    merged_into: str | None = None
    # Lines the customer set aside: kept with the cart, not counted in its totals.
    saved: tuple[Line, ...] = ()

    @property
    def subtotal(self) -> Decimal:
        return sum((line.line_total for line in self.lines), ZERO)

    @property
    def discount_amount(self) -> Decimal:
        return self.discount.amount_for(self.subtotal) if self.discount else ZERO

    @property
    def total(self) -> Decimal:
        return self.subtotal - self.discount_amount

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)

    def line(self, line_id: int) -> Line | None:
        for line in self.lines:
            if line.id == line_id:
                return line
        return None

    def saved_line(self, line_id: int) -> Line | None:
        for line in self.saved:
            if line.id == line_id:
                return line
        return None

    def quantity_of(self, sku: str, *, except_line: int | None = None) -> int:
        """Units of `sku` in the cart's lines, whatever their options (saved items aside):
        the per-item limit and the stock check count them all."""
        return sum(
            line.quantity for line in self.lines if line.sku == sku and line.id != except_line
        )

    def line_for(self, sku: str, options: Options) -> Line | None:
        for line in self.lines:
            if line.sku == sku and line.options == options:
                return line
        return None


@dataclass(frozen=True, slots=True)
class DiscountRule:
    """What the catalog says of a discount code now: its minimum subtotal, whether it runs."""

    min_subtotal: Decimal
    active: bool = True


def discount_problem(cart: Cart, rule: DiscountRule | None) -> str | None:
    """Why the cart's discount no longer holds (None when it does, or there is none)."""
    if cart.discount is None:
        return None
    if rule is None or not rule.active:
        return f"code {cart.discount.code} is no longer valid"
    if cart.subtotal < rule.min_subtotal:
        return f"code {cart.discount.code} needs a subtotal of at least {rule.min_subtotal}"
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    max_line_quantity: int = 99
    max_lines: int = 100


# ---------------------------------------------------------------- events

# An upcaster turns a stored payload of one schema into the next schema's payload.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# Every event type the log can hold, by its `type` (see `registered`).
EVENT_TYPES: dict[str, type[Event]] = {}


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a cart. Its fields are its stored payload (the codec in
    cartsvc.events writes them by their types); the timestamp travels beside the payload.

    `schema` is the payload's current version: bump it when the payload changes shape and
    add an upcaster from the old version to `upcasters` (stored events are never rewritten).
    """

    type: ClassVar[str] = ""
    schema: ClassVar[int] = 1
    upcasters: ClassVar[Mapping[int, Upcaster]] = MappingProxyType({})
    at: datetime

    def changes(self, cart: Cart) -> dict[str, Any]:
        """The fields of `cart` this event changes (`apply` moves the version and the time)."""
        raise TypeError(f"unknown event {type(self).__name__}")


E = TypeVar("E", bound=Event)


def registered(cls: type[E]) -> type[E]:
    """Make `cls` an event type the log holds: the codec finds it by its `type`."""
    if not cls.type or cls.type in EVENT_TYPES:
        raise TypeError(f"{cls.__qualname__}: event type {cls.type!r} is empty or taken")
    EVENT_TYPES[cls.type] = cls
    return cls


@registered
@dataclass(frozen=True, slots=True)
class CartOpened(Event):
    type: ClassVar[str] = "cart_opened"
    cart_id: str
    owner_id: int | None
    currency: str

    def open(self) -> Cart:
        """The cart this event starts (it has no cart to change)."""
        return Cart(
            id=self.cart_id,
            version=1,
            status=OPEN,
            currency=self.currency,
            owner_id=self.owner_id,
            lines=(),
            discount=None,
            next_line_id=1,
            created_at=self.at,
            updated_at=self.at,
        )


def _line_added_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # v1 had no options and called the price "price".
    data = dict(data)
    data["unit_price"] = data.pop("price")
    data.setdefault("options", [])
    return data


@registered
@dataclass(frozen=True, slots=True)
class LineAdded(Event):
    type: ClassVar[str] = "line_added"
    schema: ClassVar[int] = 2
    upcasters: ClassVar[Mapping[int, Upcaster]] = MappingProxyType({1: _line_added_v1_to_v2})
    line_id: int
    sku: str
    name: str
    options: Options
    quantity: int
    unit_price: Decimal

    def changes(self, cart: Cart) -> dict[str, Any]:
        line = Line(self.line_id, self.sku, self.name, self.options, self.quantity, self.unit_price)
        return {
            "lines": (*cart.lines, line),
            "next_line_id": max(cart.next_line_id, self.line_id + 1),
        }


@registered
@dataclass(frozen=True, slots=True)
class QuantityChanged(Event):
    type: ClassVar[str] = "quantity_changed"
    line_id: int
    quantity: int

    def changes(self, cart: Cart) -> dict[str, Any]:
        lines = tuple(
            replace(line, quantity=self.quantity) if line.id == self.line_id else line
            for line in cart.lines
        )
        return {"lines": lines}


@registered
@dataclass(frozen=True, slots=True)
class LineRemoved(Event):
    type: ClassVar[str] = "line_removed"
    line_id: int

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {
            "lines": tuple(line for line in cart.lines if line.id != self.line_id),
            "saved": tuple(line for line in cart.saved if line.id != self.line_id),
        }


@registered
@dataclass(frozen=True, slots=True)
class DiscountApplied(Event):
    type: ClassVar[str] = "discount_applied"
    code: str
    kind: str
    value: Decimal

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {"discount": Discount(self.code, self.kind, self.value)}


@registered
@dataclass(frozen=True, slots=True)
class DiscountRemoved(Event):
    type: ClassVar[str] = "discount_removed"

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {"discount": None}


@registered
@dataclass(frozen=True, slots=True)
class CheckedOut(Event):
    type: ClassVar[str] = "checked_out"

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {"status": CHECKED_OUT}


@registered
@dataclass(frozen=True, slots=True)
class CartExpired(Event):
    type: ClassVar[str] = "cart_expired"

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {"status": EXPIRED}


@registered
@dataclass(frozen=True, slots=True)
class CartMerged(Event):
    type: ClassVar[str] = "cart_merged"
    into_cart_id: str

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {"status": MERGED, "merged_into": self.into_cart_id}


@registered
@dataclass(frozen=True, slots=True)
class LinePriceChanged(Event):
    type: ClassVar[str] = "line_price_changed"
    line_id: int
    unit_price: Decimal
    old_price: Decimal

    def changes(self, cart: Cart) -> dict[str, Any]:
        def repriced(line: Line) -> Line:
            return replace(line, unit_price=self.unit_price) if line.id == self.line_id else line

        return {
            "lines": tuple(map(repriced, cart.lines)),
            "saved": tuple(map(repriced, cart.saved)),
        }


@registered
@dataclass(frozen=True, slots=True)
class LineSavedForLater(Event):
    type: ClassVar[str] = "line_saved_for_later"
    line_id: int

    def changes(self, cart: Cart) -> dict[str, Any]:
        moved = cart.line(self.line_id)
        if moved is None:
            raise ValueError(f"line {self.line_id} is not in the cart")
        return {
            "lines": tuple(line for line in cart.lines if line.id != self.line_id),
            "saved": tuple(sorted((*cart.saved, moved), key=_by_id)),
        }


@registered
@dataclass(frozen=True, slots=True)
class LineMovedToCart(Event):
    type: ClassVar[str] = "line_moved_to_cart"
    line_id: int
    # The cart line it merged into (same sku and options), or None: it became a line again.
    merge_into: int | None
    quantity: int

    def changes(self, cart: Cart) -> dict[str, Any]:
        back = cart.saved_line(self.line_id)
        if back is None:
            raise ValueError(f"line {self.line_id} is not saved")
        saved = tuple(line for line in cart.saved if line.id != self.line_id)
        if self.merge_into is not None:
            lines = tuple(
                replace(line, quantity=self.quantity) if line.id == self.merge_into else line
                for line in cart.lines
            )
        else:
            lines = tuple(sorted((*cart.lines, replace(back, quantity=self.quantity)), key=_by_id))
        return {"lines": lines, "saved": saved}


@registered
@dataclass(frozen=True, slots=True)
class SavedItemsCarriedOut(Event):
    """At checkout the saved-for-later items leave for the shopper's next cart: they are not
    bought, and they must not be lost with the order."""

    type: ClassVar[str] = "saved_items_carried_out"
    to_cart_id: str
    # The saved items that left; any the next cart could not take stay here, for the record.
    line_ids: tuple[int, ...]

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {"saved": tuple(line for line in cart.saved if line.id not in self.line_ids)}


@registered
@dataclass(frozen=True, slots=True)
class SavedItemsCarriedIn(Event):
    """Saved-for-later items brought from another cart (a checkout's, a login merge's): the
    saved entries as they are afterwards, by line id (new ones, and ones already saved here
    whose quantity grew)."""

    type: ClassVar[str] = "saved_items_carried_in"
    from_cart_id: str
    lines: tuple[Line, ...]

    def changes(self, cart: Cart) -> dict[str, Any]:
        by_id = {line.id: line for line in cart.saved}
        by_id.update((line.id, line) for line in self.lines)
        return {
            "saved": tuple(sorted(by_id.values(), key=_by_id)),
            "next_line_id": max([cart.next_line_id, *(line.id + 1 for line in self.lines)]),
        }


@registered
@dataclass(frozen=True, slots=True)
class CartClaimed(Event):
    type: ClassVar[str] = "cart_claimed"
    owner_id: int

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {"owner_id": self.owner_id}


@registered
@dataclass(frozen=True, slots=True)
class OwnerDeleted(Event):
    """The owner's account was deleted: the cart is closed and belongs to no one (its
    history stays, for operators)."""

    type: ClassVar[str] = "owner_deleted"

    def changes(self, cart: Cart) -> dict[str, Any]:
        return {"status": CLOSED, "owner_id": None}


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Command:
    at: datetime

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        """The events this command causes on `cart`, or a DomainError. Never mutates."""
        raise TypeError(f"unknown command {type(self).__name__}")


@dataclass(frozen=True, slots=True)
class OpenCart(Command):
    cart_id: str
    owner_id: int | None
    currency: str

    def decide(self, cart: Cart | None, limits: Limits) -> list[Event]:
        if cart is not None:
            raise InvalidInput("cart already exists", field="id")
        return [CartOpened(self.at, self.cart_id, self.owner_id, self.currency)]


@dataclass(frozen=True, slots=True)
class ProductInfo:
    sku: str
    name: str
    price: Decimal
    stock: int
    active: bool = True


@dataclass(frozen=True, slots=True)
class AddLine(Command):
    product: ProductInfo
    quantity: int
    options: Options = ()

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        at = self.at
        _require_open(cart)
        _check_quantity(self.quantity, limits)
        product = self.product
        if not product.active:
            raise UnknownSku(f"unknown sku {product.sku!r}", field="sku")
        existing = cart.line_for(product.sku, self.options)
        new_quantity = self.quantity + (existing.quantity if existing else 0)
        # Limit and stock hold per item, across lines of the same sku with other options.
        held = cart.quantity_of(product.sku)
        item_total = self.quantity + held
        if item_total > limits.max_line_quantity:
            raise _over_limit(product.name, held, limits)
        if item_total > product.stock:
            raise _short(product.name, product.stock, held)
        if existing:
            return [QuantityChanged(at, existing.id, new_quantity)]
        if len(cart.lines) >= limits.max_lines:
            raise QuantityLimit(f"a cart holds at most {limits.max_lines} lines", field="sku")
        return [
            LineAdded(
                at,
                cart.next_line_id,
                product.sku,
                product.name,
                self.options,
                self.quantity,
                product.price,
            )
        ]


@dataclass(frozen=True, slots=True)
class SetQuantity(Command):
    line_id: int
    quantity: int
    # Stock of the line's product (the service looks it up when the quantity goes up);
    # None skips the check.
    stock: int | None = None

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        at = self.at
        _require_open(cart)
        line = cart.line(self.line_id)
        if line is None:
            raise NotFound("line not found", field="line_id")
        _check_quantity(self.quantity, limits, allow_zero=True)
        if self.quantity == 0:
            return [LineRemoved(at, line.id)]
        if self.quantity == line.quantity:
            return []
        # Raising a line is checked against the item's limit and stock over all its lines;
        # lowering one is always allowed (it only asks for less).
        others = cart.quantity_of(line.sku, except_line=line.id)
        item_total = self.quantity + others
        raising = self.quantity > line.quantity
        if raising and item_total > limits.max_line_quantity:
            room = limits.max_line_quantity - others
            raise _over_limit(line.name, others, limits, line_max=room)
        if raising and self.stock is not None and item_total > self.stock:
            raise _short(line.name, self.stock, others, line_max=self.stock - others)
        return [QuantityChanged(at, line.id, self.quantity)]


@dataclass(frozen=True, slots=True)
class RemoveLine(Command):
    line_id: int

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        _require_open(cart)
        if cart.line(self.line_id) is None and cart.saved_line(self.line_id) is None:
            raise NotFound("line not found", field="line_id")
        return [LineRemoved(self.at, self.line_id)]


@dataclass(frozen=True, slots=True)
class ApplyDiscount(Command):
    code: str
    kind: str
    value: Decimal
    min_subtotal: Decimal = ZERO

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        at = self.at
        _require_open(cart)
        if cart.subtotal < self.min_subtotal:
            raise InvalidDiscount(
                f"code {self.code} needs a subtotal of at least {self.min_subtotal}",
                field="code",
            )
        current = cart.discount
        if current and (current.code, current.kind, current.value) == (
            self.code,
            self.kind,
            self.value,
        ):
            return []
        return [DiscountApplied(at, self.code, self.kind, self.value)]


@dataclass(frozen=True, slots=True)
class RemoveDiscount(Command):
    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        _require_open(cart)
        return [DiscountRemoved(self.at)] if cart.discount else []


@dataclass(frozen=True, slots=True)
class Checkout(Command):
    # The catalog as it is now, for the lines' skus; None skips the re-check.
    products: dict[str, ProductInfo] | None = None
    # The cart the saved-for-later items go to (opened in the same transaction by the
    # caller); None keeps them on the checked-out cart.
    carry_saved_to: str | None = None

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        at = self.at
        _require_open(cart)
        if not cart.lines:
            raise InvalidInput("an empty cart can not be checked out", field="lines")
        events: list[Event] = []
        if self.products is not None:
            _check_stock(cart, self.products)
            repriced = _price_changes(cart, {s: p.price for s, p in self.products.items()}, at)
            changes: list[dict[str, str | int | None]] = [
                {
                    "line_id": line.id,
                    "sku": line.sku,
                    "old_price": str(line.unit_price),
                    "new_price": str(event.unit_price),
                }
                for event in repriced
                if isinstance(event, LinePriceChanged) and (line := cart.line(event.line_id))
            ]
            if changes:
                # Never charge a price the shopper was not shown (If-Match or not).
                raise PricesChanged(
                    "prices changed since the cart was shown; review them and check out again",
                    changes,
                )
            events += repriced  # saved-for-later items only: they are not bought
        if cart.saved and self.carry_saved_to is not None:
            # The next cart is new: what it takes is planned as into an empty saved list.
            _, carried = _plan_carry((), 1, cart.saved, limits)
            events.append(SavedItemsCarriedOut(at, self.carry_saved_to, carried))
        return [*events, CheckedOut(at)]


@dataclass(frozen=True, slots=True)
class Reprice(Command):
    """Bring every line to the catalog's current price (the caller shows a notice)."""

    prices: dict[str, Decimal] = field(default_factory=dict)

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        if cart.status != OPEN:
            return []
        return _price_changes(cart, self.prices, self.at)


@dataclass(frozen=True, slots=True)
class SaveForLater(Command):
    line_id: int

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        at = self.at
        _require_open(cart)
        if cart.line(self.line_id) is None:
            raise NotFound("line not found", field="line_id")
        if len(cart.saved) >= limits.max_lines:
            raise QuantityLimit(f"at most {limits.max_lines} saved items", field="line_id")
        return [LineSavedForLater(at, self.line_id)]


@dataclass(frozen=True, slots=True)
class MoveToCart(Command):
    line_id: int

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        at = self.at
        _require_open(cart)
        saved = cart.saved_line(self.line_id)
        if saved is None:
            raise NotFound("saved item not found", field="line_id")
        existing = cart.line_for(saved.sku, saved.options)
        # The per-item limit counts the sku's other lines too; what does not fit is capped.
        room = limits.max_line_quantity - cart.quantity_of(
            saved.sku, except_line=existing.id if existing else None
        )
        if existing:
            quantity = max(min(existing.quantity + saved.quantity, room), existing.quantity)
            return [LineMovedToCart(at, saved.id, existing.id, quantity)]
        if room <= 0:
            raise QuantityLimit(
                f"at most {limits.max_line_quantity} of one item per cart", field="line_id"
            )
        if len(cart.lines) >= limits.max_lines:
            raise QuantityLimit(f"a cart holds at most {limits.max_lines} lines", field="line_id")
        return [LineMovedToCart(at, saved.id, None, min(saved.quantity, room))]


@dataclass(frozen=True, slots=True)
class CarrySavedIn(Command):
    """Take saved-for-later items from another cart (its checkout or its merge)."""

    from_cart_id: str
    lines: tuple[Line, ...] = ()

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        _require_open(cart)
        carried = _carried_in(cart, self.from_cart_id, self.lines, self.at, limits)
        return [carried] if carried else []


@dataclass(frozen=True, slots=True)
class Claim(Command):
    """An anonymous cart becomes the cart of the user who just logged in."""

    owner_id: int

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        if cart.owner_id == self.owner_id:
            return []
        if cart.owner_id is not None:
            raise NotFound("cart not found")
        _require_open(cart)
        return [CartClaimed(self.at, self.owner_id)]


@dataclass(frozen=True, slots=True)
class ForgetOwner(Command):
    """Close the cart because its owner's account is being deleted."""

    owner_id: int

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        # Idempotent, whatever the cart's status: an order (checked out) is closed too, so
        # that no one who knows its id reads it once its owner is gone.
        if cart.owner_id != self.owner_id:
            return []
        return [OwnerDeleted(self.at)]


@dataclass(frozen=True, slots=True)
class Expire(Command):
    # Expire only if the cart has not changed since then (checked under the cart's lock).
    idle_since: datetime | None = None

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        # Idempotent: a cart that already left "open" is not expired again, and one that
        # changed after the sweep looked at it is not expired at all.
        if cart.status != OPEN:
            return []
        if self.idle_since is not None and cart.updated_at > self.idle_since:
            return []
        return [CartExpired(self.at)]


@dataclass(frozen=True, slots=True)
class MarkMerged(Command):
    into_cart_id: str

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        _require_open(cart)
        return [CartMerged(self.at, self.into_cart_id)]


@dataclass(frozen=True, slots=True)
class MergeLines(Command):
    """Take another cart's lines into this one: quantities add, limits hold (capped)."""

    lines: tuple[Line, ...] = field(default=())
    # The other cart's discount, taken over when this cart has none.
    discount: Discount | None = None
    # The other cart and its saved-for-later items, which come along (see CarrySavedIn).
    from_cart_id: str = ""
    saved: tuple[Line, ...] = ()

    def decide(self, cart: Cart, limits: Limits) -> list[Event]:
        at = self.at
        _require_open(cart)
        events: list[Event] = []
        state = cart
        for incoming in self.lines:
            existing = state.line_for(incoming.sku, incoming.options)
            if existing:
                quantity = min(existing.quantity + incoming.quantity, limits.max_line_quantity)
                if quantity == existing.quantity:
                    continue
                event: Event = QuantityChanged(at, existing.id, quantity)
            else:
                if len(state.lines) >= limits.max_lines:
                    continue
                event = LineAdded(
                    at,
                    state.next_line_id,
                    incoming.sku,
                    incoming.name,
                    incoming.options,
                    min(incoming.quantity, limits.max_line_quantity),
                    incoming.unit_price,
                )
            events.append(event)
            state = apply(state, event)
        incoming_discount = self.discount
        if incoming_discount is not None and state.discount is None:
            events.append(
                DiscountApplied(
                    at, incoming_discount.code, incoming_discount.kind, incoming_discount.value
                )
            )
        carried = _carried_in(state, self.from_cart_id, self.saved, at, limits)
        return [*events, carried] if carried else events


# ---------------------------------------------------------------- decide


def _require_open(cart: Cart) -> None:
    if cart.status != OPEN:
        raise CartNotOpen(f"cart is {cart.status}; only open carts can change")


def _check_quantity(quantity: int, limits: Limits, *, allow_zero: bool = False) -> None:
    if type(quantity) is not int:
        raise InvalidInput("quantity must be an integer", field="quantity")
    if quantity < 0 or (quantity == 0 and not allow_zero):
        raise InvalidInput("quantity must be a positive integer", field="quantity")
    if quantity > limits.max_line_quantity:
        raise QuantityLimit(
            f"at most {limits.max_line_quantity} of one item per cart", field="quantity"
        )


def _over_limit(
    name: str, held: int, limits: Limits, *, line_max: int | None = None
) -> QuantityLimit:
    """The per-item limit, in words a shopper acts on: the product, and what still fits
    (what can be added, or, for a line being set, the most it can be)."""
    rule = f"at most {limits.max_line_quantity} of one item per cart"
    if line_max is not None:
        return QuantityLimit(f"{rule}: {name} can be at most {line_max} here", field="quantity")
    room = limits.max_line_quantity - held
    if room > 0:
        return QuantityLimit(f"{rule}: you can add {room} more {name}", field="quantity")
    return QuantityLimit(f"{rule}, and your cart already holds {held} {name}", field="quantity")


def _short(name: str, stock: int, held: int, *, line_max: int | None = None) -> InsufficientStock:
    """Stock that is short, naming the product and, when some is still there, what fits."""
    message = f"only {stock} of {name} in stock"
    if line_max is not None:
        message += f": this line can be at most {line_max}" if line_max > 0 else ""
    elif 0 < stock - held < stock:
        message += f": you can add {stock - held} more"
    elif held >= stock > 0:
        message += f", and your cart already holds {held}"
    return InsufficientStock(message, field="quantity")


def _check_stock(cart: Cart, products: dict[str, ProductInfo]) -> None:
    """Every line's product still sold, and in stock for all the cart's units of it."""
    wanted: dict[str, int] = {}
    for line in cart.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    for sku, quantity in wanted.items():
        product = products.get(sku)
        name = next(line.name for line in cart.lines if line.sku == sku)
        if product is None or not product.active:
            raise UnknownSku(f"{name} is no longer sold; remove it first", field="sku")
        if product.stock < quantity:
            raise InsufficientStock(
                f"only {product.stock} of {name} left in stock: lower the quantity"
                f" to {product.stock}"
                if product.stock
                else f"{name} is sold out: remove it to check out",
                field="quantity",
            )


def decide(cart: Cart | None, command: Command, limits: Limits = Limits()) -> list[Event]:
    """Turn a command into the events it causes, or raise a DomainError. Never mutates."""
    if isinstance(command, OpenCart):
        return command.decide(cart, limits)
    if cart is None:
        raise NotFound("cart not found")
    return command.decide(cart, limits)


def _plan_carry(
    saved: tuple[Line, ...], next_id: int, incoming: tuple[Line, ...], limits: Limits
) -> tuple[tuple[Line, ...], tuple[int, ...]]:
    """Saved items arriving beside `saved`: (the saved entries written, the incoming ids
    taken). An item already saved (same sku and options), here or earlier in `incoming`, is
    one entry whose quantities add, up to the per-item limit as a merge's lines do; a new
    item takes the next line id while the saved list has room (max_lines). What has no room
    is not taken: it stays where it was."""
    entries = {(line.sku, line.options): line for line in saved}
    written: dict[int, Line] = {}
    taken: list[int] = []
    room = limits.max_lines - len(saved)
    for line in incoming:
        entry = entries.get((line.sku, line.options))
        if entry is not None:
            quantity = min(entry.quantity + line.quantity, limits.max_line_quantity)
            entry = replace(entry, quantity=quantity)
        elif room > 0:
            entry, next_id, room = replace(line, id=next_id), next_id + 1, room - 1
        else:
            continue
        entries[(line.sku, line.options)] = written[entry.id] = entry
        taken.append(line.id)
    return tuple(sorted(written.values(), key=_by_id)), tuple(taken)


def _carried_in(
    cart: Cart, from_cart_id: str, lines: tuple[Line, ...], at: datetime, limits: Limits
) -> SavedItemsCarriedIn | None:
    written, _ = _plan_carry(cart.saved, cart.next_line_id, lines, limits)
    return SavedItemsCarriedIn(at, from_cart_id, written) if written else None


def _by_id(line: Line) -> int:
    # Lines are kept in id order, the order the rows come back in.
    return line.id


def _price_changes(cart: Cart, prices: dict[str, Decimal], at: datetime) -> list[Event]:
    return [
        LinePriceChanged(at, line.id, prices[line.sku], line.unit_price)
        for line in (*cart.lines, *cart.saved)
        if line.sku in prices and prices[line.sku] != line.unit_price
    ]


# ---------------------------------------------------------------- apply


def apply(cart: Cart | None, event: Event) -> Cart:
    """Fold one event into the state; the version moves by one per event."""
    if isinstance(event, CartOpened):
        return event.open()
    if cart is None:
        raise ValueError(f"{event.type} before cart_opened")
    return replace(cart, version=cart.version + 1, updated_at=event.at, **event.changes(cart))


@overload
def fold(cart: Cart, events: Sequence[Event]) -> Cart: ...
@overload
def fold(cart: Cart | None, events: Sequence[Event]) -> Cart | None: ...
def fold(cart: Cart | None, events: Sequence[Event]) -> Cart | None:
    for event in events:
        cart = apply(cart, event)
    return cart
