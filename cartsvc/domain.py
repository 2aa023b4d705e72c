"""The cart aggregate: frozen state, commands, events, `decide` and `apply`; pure Python."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import ClassVar

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


@dataclass(frozen=True, slots=True)
class Event:
    type: ClassVar[str] = ""
    at: datetime


@dataclass(frozen=True, slots=True)
class CartOpened(Event):
    type: ClassVar[str] = "cart_opened"
    cart_id: str
    owner_id: int | None
    currency: str


@dataclass(frozen=True, slots=True)
class LineAdded(Event):
    type: ClassVar[str] = "line_added"
    line_id: int
    sku: str
    name: str
    options: Options
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class QuantityChanged(Event):
    type: ClassVar[str] = "quantity_changed"
    line_id: int
    quantity: int


@dataclass(frozen=True, slots=True)
class LineRemoved(Event):
    type: ClassVar[str] = "line_removed"
    line_id: int


@dataclass(frozen=True, slots=True)
class DiscountApplied(Event):
    type: ClassVar[str] = "discount_applied"
    code: str
    kind: str
    value: Decimal


@dataclass(frozen=True, slots=True)
class DiscountRemoved(Event):
    type: ClassVar[str] = "discount_removed"


@dataclass(frozen=True, slots=True)
class CheckedOut(Event):
    type: ClassVar[str] = "checked_out"


@dataclass(frozen=True, slots=True)
class CartExpired(Event):
    type: ClassVar[str] = "cart_expired"


@dataclass(frozen=True, slots=True)
class CartMerged(Event):
    type: ClassVar[str] = "cart_merged"
    into_cart_id: str


@dataclass(frozen=True, slots=True)
class LinePriceChanged(Event):
    type: ClassVar[str] = "line_price_changed"
    line_id: int
    unit_price: Decimal
    old_price: Decimal


@dataclass(frozen=True, slots=True)
class LineSavedForLater(Event):
    type: ClassVar[str] = "line_saved_for_later"
    line_id: int


@dataclass(frozen=True, slots=True)
class LineMovedToCart(Event):
    type: ClassVar[str] = "line_moved_to_cart"
    line_id: int
    # The cart line it merged into (same sku and options), or None: it became a line again.
    merge_into: int | None
    quantity: int


@dataclass(frozen=True, slots=True)
class SavedItemsCarriedOut(Event):
    """At checkout the saved-for-later items leave for the shopper's next cart: they are not
    bought, and they must not be lost with the order."""

    type: ClassVar[str] = "saved_items_carried_out"
    to_cart_id: str


@dataclass(frozen=True, slots=True)
class SavedItemsCarriedIn(Event):
    """Saved-for-later items brought from another cart (a checkout's, a login merge's), with
    the line ids they take in this one."""

    type: ClassVar[str] = "saved_items_carried_in"
    from_cart_id: str
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class CartClaimed(Event):
    type: ClassVar[str] = "cart_claimed"
    owner_id: int


@dataclass(frozen=True, slots=True)
class OwnerDeleted(Event):
    """The owner's account was deleted: the cart is closed and belongs to no one (its
    history stays, for operators)."""

    type: ClassVar[str] = "owner_deleted"


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Command:
    at: datetime


@dataclass(frozen=True, slots=True)
class OpenCart(Command):
    cart_id: str
    owner_id: int | None
    currency: str


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


@dataclass(frozen=True, slots=True)
class SetQuantity(Command):
    line_id: int
    quantity: int
    # Stock of the line's product, looked up by the caller; None skips the check.
    stock: int | None = None


@dataclass(frozen=True, slots=True)
class RemoveLine(Command):
    line_id: int


@dataclass(frozen=True, slots=True)
class ApplyDiscount(Command):
    code: str
    kind: str
    value: Decimal
    min_subtotal: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class RemoveDiscount(Command):
    pass


@dataclass(frozen=True, slots=True)
class Checkout(Command):
    # The catalog as it is now, for the lines' skus; None skips the re-check.
    products: dict[str, ProductInfo] | None = None
    # The cart the saved-for-later items go to (opened in the same transaction by the
    # caller); None keeps them on the checked-out cart.
    carry_saved_to: str | None = None


@dataclass(frozen=True, slots=True)
class Reprice(Command):
    """Bring every line to the catalog's current price (the caller shows a notice)."""

    prices: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SaveForLater(Command):
    line_id: int


@dataclass(frozen=True, slots=True)
class MoveToCart(Command):
    line_id: int


@dataclass(frozen=True, slots=True)
class CarrySavedIn(Command):
    """Take saved-for-later items from another cart (its checkout or its merge)."""

    from_cart_id: str
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True, slots=True)
class Claim(Command):
    """An anonymous cart becomes the cart of the user who just logged in."""

    owner_id: int


@dataclass(frozen=True, slots=True)
class ForgetOwner(Command):
    """Close the cart because its owner's account is being deleted."""

    owner_id: int


@dataclass(frozen=True, slots=True)
class Expire(Command):
    # Expire only if the cart has not changed since then (checked under the cart's lock).
    idle_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class MarkMerged(Command):
    into_cart_id: str


@dataclass(frozen=True, slots=True)
class MergeLines(Command):
    """Take another cart's lines into this one: quantities add, limits hold (capped)."""

    lines: tuple[Line, ...] = field(default=())
    # The other cart's discount, taken over when this cart has none.
    discount: Discount | None = None
    # The other cart and its saved-for-later items, which come along (see CarrySavedIn).
    from_cart_id: str = ""
    saved: tuple[Line, ...] = ()


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


def decide(cart: Cart | None, command: Command, limits: Limits = Limits()) -> list[Event]:
    """Turn a command into the events it causes, or raise a DomainError. Never mutates."""
    at = command.at
    if isinstance(command, OpenCart):
        if cart is not None:
            raise InvalidInput("cart already exists", field="id")
        return [CartOpened(at, command.cart_id, command.owner_id, command.currency)]
    if cart is None:
        raise NotFound("cart not found")

    if isinstance(command, AddLine):
        _require_open(cart)
        _check_quantity(command.quantity, limits)
        product = command.product
        if not product.active:
            raise UnknownSku(f"unknown sku {product.sku!r}", field="sku")
        existing = cart.line_for(product.sku, command.options)
        new_quantity = command.quantity + (existing.quantity if existing else 0)
        # Limit and stock hold per item, across lines of the same sku with other options.
        held = cart.quantity_of(product.sku)
        item_total = command.quantity + held
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
                command.options,
                command.quantity,
                product.price,
            )
        ]

    if isinstance(command, SetQuantity):
        _require_open(cart)
        line = cart.line(command.line_id)
        if line is None:
            raise NotFound("line not found", field="line_id")
        _check_quantity(command.quantity, limits, allow_zero=True)
        if command.quantity == 0:
            return [LineRemoved(at, line.id)]
        if command.quantity == line.quantity:
            return []
        # Raising a line is checked against the item's limit and stock over all its lines;
        # lowering one is always allowed (it only asks for less).
        others = cart.quantity_of(line.sku, except_line=line.id)
        item_total = command.quantity + others
        raising = command.quantity > line.quantity
        if raising and item_total > limits.max_line_quantity:
            room = limits.max_line_quantity - others
            raise _over_limit(line.name, others, limits, line_max=room)
        if raising and command.stock is not None and item_total > command.stock:
            raise _short(line.name, command.stock, others, line_max=command.stock - others)
        return [QuantityChanged(at, line.id, command.quantity)]

    if isinstance(command, RemoveLine):
        _require_open(cart)
        if cart.line(command.line_id) is None and cart.saved_line(command.line_id) is None:
            raise NotFound("line not found", field="line_id")
        return [LineRemoved(at, command.line_id)]

    if isinstance(command, ApplyDiscount):
        _require_open(cart)
        if cart.subtotal < command.min_subtotal:
            raise InvalidDiscount(
                f"code {command.code} needs a subtotal of at least {command.min_subtotal}",
                field="code",
            )
        current = cart.discount
        if current and (current.code, current.kind, current.value) == (
            command.code,
            command.kind,
            command.value,
        ):
            return []
        return [DiscountApplied(at, command.code, command.kind, command.value)]

    if isinstance(command, RemoveDiscount):
        _require_open(cart)
        return [DiscountRemoved(at)] if cart.discount else []

    if isinstance(command, Checkout):
        _require_open(cart)
        if not cart.lines:
            raise InvalidInput("an empty cart can not be checked out", field="lines")
        events = []
        if command.products is not None:
            wanted: dict[str, int] = {}
            for line in cart.lines:
                wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
            for sku, quantity in wanted.items():
                product = command.products.get(sku)
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
            repriced = _price_changes(cart, {s: p.price for s, p in command.products.items()}, at)
            changes = [
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
        if cart.saved and command.carry_saved_to is not None:
            events.append(SavedItemsCarriedOut(at, command.carry_saved_to))
        return [*events, CheckedOut(at)]

    if isinstance(command, Reprice):
        if cart.status != OPEN:
            return []
        return _price_changes(cart, command.prices, at)

    if isinstance(command, SaveForLater):
        _require_open(cart)
        if cart.line(command.line_id) is None:
            raise NotFound("line not found", field="line_id")
        if len(cart.saved) >= limits.max_lines:
            raise QuantityLimit(f"at most {limits.max_lines} saved items", field="line_id")
        return [LineSavedForLater(at, command.line_id)]

    if isinstance(command, MoveToCart):
        _require_open(cart)
        saved = cart.saved_line(command.line_id)
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

    if isinstance(command, CarrySavedIn):
        _require_open(cart)
        carried = _carried_in(cart, command.from_cart_id, command.lines, at, limits)
        return [carried] if carried else []

    if isinstance(command, Claim):
        if cart.owner_id == command.owner_id:
            return []
        if cart.owner_id is not None:
            raise NotFound("cart not found")
        _require_open(cart)
        return [CartClaimed(at, command.owner_id)]

    if isinstance(command, ForgetOwner):
        # Idempotent, whatever the cart's status: an order (checked out) is closed too, so
        # that no one who knows its id reads it once its owner is gone.
        if cart.owner_id != command.owner_id:
            return []
        return [OwnerDeleted(at)]

    if isinstance(command, Expire):
        # Idempotent: a cart that already left "open" is not expired again, and one that
        # changed after the sweep looked at it is not expired at all.
        if cart.status != OPEN:
            return []
        if command.idle_since is not None and cart.updated_at > command.idle_since:
            return []
        return [CartExpired(at)]

    if isinstance(command, MarkMerged):
        _require_open(cart)
        return [CartMerged(at, command.into_cart_id)]

    if isinstance(command, MergeLines):
        _require_open(cart)
        events: list[Event] = []
        state = cart
        for incoming in command.lines:
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
        incoming_discount = command.discount
        if incoming_discount is not None and state.discount is None:
            events.append(
                DiscountApplied(
                    at, incoming_discount.code, incoming_discount.kind, incoming_discount.value
                )
            )
        carried = _carried_in(state, command.from_cart_id, command.saved, at, limits)
        return [*events, carried] if carried else events

    raise TypeError(f"unknown command {type(command).__name__}")


def _carried_in(
    cart: Cart, from_cart_id: str, lines: tuple[Line, ...], at: datetime, limits: Limits
) -> SavedItemsCarriedIn | None:
    """Saved items arriving from another cart, numbered after this cart's lines. An item
    already saved here (same sku and options) is not saved twice, and the saved list keeps
    its limit: what does not fit stays on the other cart's record."""
    kept = {(line.sku, line.options) for line in cart.saved}
    room = limits.max_lines - len(cart.saved)
    arriving: list[Line] = []
    next_id = cart.next_line_id
    for line in lines:
        if len(arriving) >= room or (line.sku, line.options) in kept:
            continue
        kept.add((line.sku, line.options))
        arriving.append(replace(line, id=next_id))
        next_id += 1
    return SavedItemsCarriedIn(at, from_cart_id, tuple(arriving)) if arriving else None


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
        return Cart(
            id=event.cart_id,
            version=1,
            status=OPEN,
            currency=event.currency,
            owner_id=event.owner_id,
            lines=(),
            discount=None,
            next_line_id=1,
            created_at=event.at,
            updated_at=event.at,
        )
    if cart is None:
        raise ValueError(f"{event.type} before cart_opened")
    version = cart.version + 1
    at = event.at
    if isinstance(event, LineAdded):
        line = Line(
            event.line_id, event.sku, event.name, event.options, event.quantity, event.unit_price
        )
        return replace(
            cart,
            version=version,
            updated_at=at,
            lines=(*cart.lines, line),
            next_line_id=max(cart.next_line_id, event.line_id + 1),
        )
    if isinstance(event, QuantityChanged):
        lines = tuple(
            replace(line, quantity=event.quantity) if line.id == event.line_id else line
            for line in cart.lines
        )
        return replace(cart, version=version, updated_at=at, lines=lines)
    if isinstance(event, LineRemoved):
        lines = tuple(line for line in cart.lines if line.id != event.line_id)
        saved = tuple(line for line in cart.saved if line.id != event.line_id)
        return replace(cart, version=version, updated_at=at, lines=lines, saved=saved)
    if isinstance(event, LinePriceChanged):

        def repriced(line: Line) -> Line:
            return replace(line, unit_price=event.unit_price) if line.id == event.line_id else line

        return replace(
            cart,
            version=version,
            updated_at=at,
            lines=tuple(map(repriced, cart.lines)),
            saved=tuple(map(repriced, cart.saved)),
        )
    if isinstance(event, LineSavedForLater):
        moved = cart.line(event.line_id)
        if moved is None:
            raise ValueError(f"line {event.line_id} is not in the cart")
        lines = tuple(line for line in cart.lines if line.id != event.line_id)
        saved = tuple(sorted((*cart.saved, moved), key=_by_id))
        return replace(cart, version=version, updated_at=at, lines=lines, saved=saved)
    if isinstance(event, LineMovedToCart):
        back = cart.saved_line(event.line_id)
        if back is None:
            raise ValueError(f"line {event.line_id} is not saved")
        saved = tuple(line for line in cart.saved if line.id != event.line_id)
        if event.merge_into is not None:
            lines = tuple(
                replace(line, quantity=event.quantity) if line.id == event.merge_into else line
                for line in cart.lines
            )
        else:
            lines = tuple(sorted((*cart.lines, replace(back, quantity=event.quantity)), key=_by_id))
        return replace(cart, version=version, updated_at=at, lines=lines, saved=saved)
    if isinstance(event, SavedItemsCarriedOut):
        return replace(cart, version=version, updated_at=at, saved=())
    if isinstance(event, SavedItemsCarriedIn):
        saved = tuple(sorted((*cart.saved, *event.lines), key=_by_id))
        next_id = max([cart.next_line_id, *(line.id + 1 for line in event.lines)])
        return replace(cart, version=version, updated_at=at, saved=saved, next_line_id=next_id)
    if isinstance(event, CartClaimed):
        return replace(cart, version=version, updated_at=at, owner_id=event.owner_id)
    if isinstance(event, DiscountApplied):
        discount = Discount(event.code, event.kind, event.value)
        return replace(cart, version=version, updated_at=at, discount=discount)
    if isinstance(event, DiscountRemoved):
        return replace(cart, version=version, updated_at=at, discount=None)
    if isinstance(event, CheckedOut):
        return replace(cart, version=version, updated_at=at, status=CHECKED_OUT)
    if isinstance(event, CartExpired):
        return replace(cart, version=version, updated_at=at, status=EXPIRED)
    if isinstance(event, OwnerDeleted):
        return replace(cart, version=version, updated_at=at, status=CLOSED, owner_id=None)
    if isinstance(event, CartMerged):
        return replace(
            cart, version=version, updated_at=at, status=MERGED, merged_into=event.into_cart_id
        )
    raise TypeError(f"unknown event {type(event).__name__}")


def fold(cart: Cart | None, events: list[Event] | tuple[Event, ...]) -> Cart | None:
    for event in events:
        cart = apply(cart, event)
    return cart
