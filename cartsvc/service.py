"""The public API of the cart: every caller (views, admin, tasks, commands) comes here.

Mutations take `as_user`: the id of the logged-in user (or None for an anonymous visitor)
whose request this is. A cart owned by a user is invisible to everyone else (NotFound, not
Forbidden); an anonymous cart's id is its bearer capability. Internal callers (tasks,
commands, the admin) leave `as_user` out.

This module holds the cart's commands and queries. Operating the image (inspect, evict,
reload, verify, repair, warm) is `cartsvc.operations`; the /healthz probes are `cartsvc.health`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from functools import partial, wraps
from typing import Any, TypeVar, cast

import orjson
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from cartsvc import domain as d
from cartsvc import image, metrics, store
from cartsvc.catalog import catalog
from cartsvc.conf import conf
from cartsvc.domain import (
    CHECKED_OUT,
    CLOSED,
    EXPIRED,
    MERGED,
    OPEN,
    Busy,
    Cart,
    CartNotOpen,
    DatabaseUnavailable,
    Discount,
    DomainError,
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidDiscount,
    InvalidInput,
    Line,
    NotFound,
    OutcomeUnknown,
    PricesChanged,
    QuantityLimit,
    UnknownSku,
    VersionConflict,
)
from cartsvc.image import cart_key, safe_process_action
from cartsvc.store import Idempotency

log = logging.getLogger("cartsvc.service")
_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = [
    "ANYONE",
    "CHECKED_OUT",
    "CLOSED",
    "EXPIRED",
    "MERGED",
    "OPEN",
    "Busy",
    "Cart",
    "CartNotOpen",
    "DatabaseUnavailable",
    "Discount",
    "DomainError",
    "Idempotency",
    "IdempotencyKeyReused",
    "InsufficientStock",
    "InvalidDiscount",
    "InvalidInput",
    "Line",
    "NotFound",
    "OutcomeUnknown",
    "PricesChanged",
    "QuantityLimit",
    "UnknownSku",
    "VersionConflict",
    "add_line",
    "apply_discount",
    "cart_at",
    "cart_for_user",
    "checkout",
    "close_user_carts",
    "expire_cart",
    "get_cart",
    "history",
    "idempotency",
    "merge_carts",
    "merge_on_login",
    "move_to_cart",
    "next_cart",
    "open_cart",
    "refresh_prices",
    "remove_discount",
    "remove_line",
    "save_for_later",
    "set_quantity",
]

MAX_SKU_LENGTH = 64
MAX_OPTIONS = 10
MAX_OPTION_LENGTH = 64


class _Anyone:
    def __repr__(self) -> str:
        return "ANYONE"


ANYONE: Any = _Anyone()


def limits() -> d.Limits:
    """The cart's limits as configured (MAX_LINE_QUANTITY, MAX_LINES)."""
    return d.Limits(max_line_quantity=conf.MAX_LINE_QUANTITY, max_lines=conf.MAX_LINES)


def idempotency(scope: str, key: str, request: Any) -> Idempotency:
    """An Idempotency-Key for `request` (any JSON-able description of it) within `scope`."""
    if not isinstance(key, str) or not 1 <= len(key) <= 128 or not key.isprintable():
        raise d.InvalidInput(
            "Idempotency-Key must be 1 to 128 printable characters", field="Idempotency-Key"
        )
    body = orjson.dumps(request, option=orjson.OPT_SORT_KEYS, default=str)
    return Idempotency(scope, key, hashlib.sha256(body).hexdigest())


# ---------------------------------------------------------------- input checks


def _check_int(value: Any, field: str) -> int:
    if type(value) is not int:
        raise d.InvalidInput(f"{field} must be an integer", field=field)
    return value


def _printable(value: str) -> bool:
    # PostgreSQL text and jsonb can not store NUL; every other character is fine.
    return "\x00" not in value


def _check_sku(sku: Any) -> str:
    if (
        not isinstance(sku, str)
        or not sku.strip()
        or len(sku) > MAX_SKU_LENGTH
        or not _printable(sku)
    ):
        raise d.InvalidInput(
            f"sku must be a non-empty string of at most {MAX_SKU_LENGTH}", field="sku"
        )
    return sku


def _check_options(options: Any) -> d.Options:
    if options is None:
        return ()
    if not isinstance(options, dict) or len(options) > MAX_OPTIONS:
        raise d.InvalidInput(
            f"options must be an object of at most {MAX_OPTIONS} entries", field="options"
        )
    for key, value in options.items():
        if (
            not isinstance(value, str)
            or not key
            or len(key) > MAX_OPTION_LENGTH
            or not _printable(key)
            or not _printable(value)
        ):
            raise d.InvalidInput("options must map names to strings", field="options")
        if len(value) > MAX_OPTION_LENGTH:
            raise d.InvalidInput(
                f"option values are at most {MAX_OPTION_LENGTH} characters", field="options"
            )
    return d.canonical_options(options)


def _visible(cart: Cart | None, as_user: Any) -> None:
    if as_user is ANYONE or cart is None:
        return
    if cart.status == d.CLOSED:
        raise d.NotFound("cart not found")  # its owner is gone: it is no one's now
    if cart.owner_id is not None and cart.owner_id != as_user:
        raise d.NotFound("cart not found")


# ---------------------------------------------------------------- a lost connection

_CONNECTION_LOST = (OperationalError, InterfaceError)


def _reconnecting(fn: _F) -> _F:
    """A database connection lost during the call (a failover, a pooler restart, an idle
    timeout) is retried once on a fresh connection: what failed was rolled back and nothing
    committed in the call, so running it again is safe (the version check fences a write
    that raced it). A second loss is DatabaseUnavailable (nothing applied). A loss after a
    command committed, or while its commit was on its way, is OutcomeUnknown: the lost
    connection hid whether it applied (an Idempotency-Key settles that inside the service)."""

    @wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            commits = image.commits_so_far()
            try:
                return fn(*args, **kwargs)
            except _CONNECTION_LOST as exc:
                if transaction.get_connection().in_atomic_block:
                    raise  # the caller's transaction is lost with it: theirs to handle
                image.fresh_connection()
                if image.commits_so_far() != commits:
                    metrics.inc("database_errors", outcome="unknown")
                    raise image.outcome_unknown() from exc
                if attempt == 2:
                    metrics.inc("database_errors", outcome="unavailable")
                    raise DatabaseUnavailable(
                        "the database can not be reached right now; nothing was changed:"
                        " retry in a moment"
                    ) from exc
                metrics.inc("database_errors", outcome="retried")
                log.warning("database connection lost (%s); retrying on a fresh one", exc)
        raise AssertionError("unreachable")

    return cast(_F, call)  # the same signature: `call` passes its arguments through


# ---------------------------------------------------------------- the door, once for all


def _discount_rule(code: str) -> d.DiscountRule | None:
    found = catalog().discount(code)
    return d.DiscountRule(Decimal(found.min_subtotal), found.active) if found else None


def _discount_kept_valid(cart: Cart | None, events: list[d.Event], at: datetime) -> list[d.Event]:
    """The command's events, plus DiscountRemoved when the open cart they leave has a
    discount the catalog's rule no longer allows (subtotal under its minimum, code gone or
    inactive): a rule checked when the code was applied is checked after every change."""
    if cart is None or not events:
        return events
    if cart.discount is None and not any(isinstance(e, d.DiscountApplied) for e in events):
        return events  # no discount before, none brought in: nothing to check
    after = d.fold(cart, events)
    if after is None or after.discount is None or after.status != d.OPEN:
        return events
    if d.discount_problem(after, _discount_rule(after.discount.code)) is None:
        return events
    return [*events, d.DiscountRemoved(at)]


def _checkout_discount_holds(cart: Cart | None) -> None:
    """At checkout the discount is checked once more (it may have been deactivated since)."""
    if cart is None or cart.discount is None or cart.status != d.OPEN or not cart.lines:
        return  # nothing to check, or a checkout the domain refuses anyway
    problem = d.discount_problem(cart, _discount_rule(cart.discount.code))
    if problem is not None:
        raise d.PricesChanged(
            f"{problem}; it was taken off, review the cart and check out again",
            [{"discount": cart.discount.code, "reason": problem}],
        )


def _with_stock(cart: Cart | None, command: d.SetQuantity) -> d.SetQuantity:
    """The stock of the line's product, looked up under the cart's lock (the line's sku is
    known there without a read before it) and only when the quantity goes up: lowering one
    asks for less."""
    line = cart.line(command.line_id) if cart is not None else None
    if line is None or command.quantity <= line.quantity:
        return command
    product = catalog().product(line.sku)
    return replace(command, stock=product.stock if product and product.active else 0)


class _LookedUp:
    """A command built from a catalog lookup that does not depend on the cart: the lookup
    runs while the cart's lock is requested (image.execute's `meanwhile`), so a command
    waits for PostgreSQL and Redis at once. Raises what the lookup raises (UnknownSku)."""

    __slots__ = ("build", "command")

    def __init__(self, build: Callable[[], d.Command]) -> None:
        self.build = build
        self.command: d.Command | None = None

    def __call__(self) -> None:
        self.command = self.build()


@safe_process_action
def _run(cart: Cart | None, command: d.Command | _LookedUp, as_user: Any = ANYONE) -> list[d.Event]:
    if isinstance(command, _LookedUp):
        assert command.command is not None, "execute runs the lookup before deciding"
        command = command.command
    _visible(cart, as_user)
    if isinstance(command, d.SetQuantity):
        command = _with_stock(cart, command)
    if isinstance(command, d.Checkout):
        _checkout_discount_holds(cart)
    events = d.decide(cart, command, limits())
    if isinstance(command, d.ApplyDiscount | d.RemoveDiscount | d.Checkout):
        return events  # ApplyDiscount checked the rule itself; checkout checked it above
    return _discount_kept_valid(cart, events, command.at)


_create = safe_process_action(create=True)(_run.__wrapped__)


@safe_process_action(read=True)
def _read(cart: Cart, as_user: Any = ANYONE) -> Cart:
    _visible(cart, as_user)
    return cart


@_reconnecting
def get_cart(cart_id: Any, *, as_user: Any = ANYONE) -> Cart:
    """The cart's current state (0 SQL queries when it is in memory)."""
    return _read(cart_id, as_user)


@_reconnecting
def open_cart(
    cart_id: Any = None,
    *,
    owner_id: int | None = None,
    currency: str | None = None,
    idempotency: Idempotency | None = None,
) -> Cart:
    """Open a new, empty cart (a fresh uuid4 id unless `cart_id` is given) for `owner_id`
    (None: an anonymous cart, whose id is its bearer capability), in `currency` (default
    CARTIMAGE["CURRENCY"]). With `idempotency`, a retry returns the cart opened first."""
    key = cart_key(cart_id) if cart_id is not None else str(uuid.uuid4())
    command = d.OpenCart(timezone.now(), key, owner_id, currency or conf.CURRENCY)
    return _create(key, command, idempotency=idempotency)


def _viewer(as_user: Any) -> image.Viewer | None:
    """A command's caller, checked before it takes the cart's writer lock (a foreign request
    must leave the owner's lock and generation untouched): by the lock's own round trip
    when the cart is in memory (see image.Viewer)."""
    if as_user is ANYONE:
        return None
    token = "-" if as_user is None else str(as_user) if type(as_user) is int else ""
    return image.Viewer(token, partial(_visible, as_user=as_user))


def _mutate(cart_id: Any, command: d.Command | _LookedUp, as_user: Any, **door: Any) -> Cart:
    key = cart_key(cart_id)
    if door.get("idempotency") is not None and as_user is not ANYONE:
        # A recorded answer is replayed before the lock and its check: the caller must be
        # allowed to see the cart as it is now, not only as it was then.
        get_cart(key, as_user=as_user)
    if isinstance(command, _LookedUp):
        door["meanwhile"] = command
    cart = _run(key, command, as_user, viewer=_viewer(as_user), **door)
    # A replayed Idempotency-Key answer comes back without running the command: the caller
    # must still be allowed to see the cart.
    _visible(cart, as_user)
    return cart


@_reconnecting
def add_line(
    cart_id: Any,
    sku: str,
    quantity: int = 1,
    options: dict[str, str] | None = None,
    *,
    as_user: Any = ANYONE,
    **door: Any,
) -> Cart:
    """Add `quantity` of a product; the same sku and options merge into one line.
    `door` is what the door takes: expected_version, command_id, idempotency."""
    key = cart_key(cart_id)
    _check_sku(sku)
    _check_int(quantity, "quantity")
    canonical = _check_options(options)
    at = timezone.now()

    def build() -> d.Command:
        product = catalog().product(sku)
        if product is None:
            raise d.UnknownSku(f"unknown sku {sku!r}", field="sku")
        return d.AddLine(at, product, quantity, canonical)

    return _mutate(key, _LookedUp(build), as_user, **door)


@_reconnecting
def set_quantity(
    cart_id: Any, line_id: int, quantity: int, *, as_user: Any = ANYONE, **door: Any
) -> Cart:
    """Set a line's quantity; 0 removes it. More than the stock is refused."""
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    _check_int(quantity, "quantity")
    return _mutate(key, d.SetQuantity(timezone.now(), line_id, quantity), as_user, **door)


@_reconnecting
def remove_line(cart_id: Any, line_id: int, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Remove a line, or a saved-for-later item."""
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    return _mutate(key, d.RemoveLine(timezone.now(), line_id), as_user, **door)


@_reconnecting
def save_for_later(cart_id: Any, line_id: int, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Move a line out of the cart's totals into its saved-for-later list."""
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    return _mutate(key, d.SaveForLater(timezone.now(), line_id), as_user, **door)


@_reconnecting
def move_to_cart(cart_id: Any, line_id: int, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Bring a saved item back (merging with a line of the same sku and options)."""
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    return _mutate(key, d.MoveToCart(timezone.now(), line_id), as_user, **door)


@_reconnecting
def apply_discount(cart_id: Any, code: str, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Apply a discount code (looked up in the catalog; unknown or inactive codes refused)."""
    key = cart_key(cart_id)
    if not isinstance(code, str) or not code.strip() or len(code) > 64 or not _printable(code):
        raise d.InvalidInput("code must be a non-empty string", field="code")
    at = timezone.now()

    def build() -> d.Command:
        found = catalog().discount(code.strip())
        if found is None or not found.active:
            raise d.InvalidDiscount(f"unknown or inactive discount code {code!r}", field="code")
        value, min_subtotal = Decimal(found.value), Decimal(found.min_subtotal)
        return d.ApplyDiscount(at, found.code, found.kind, value, min_subtotal)

    return _mutate(key, _LookedUp(build), as_user, **door)


@_reconnecting
def remove_discount(cart_id: Any, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Take the discount code off the cart."""
    key = cart_key(cart_id)
    return _mutate(key, d.RemoveDiscount(timezone.now()), as_user, **door)


@_reconnecting
def refresh_prices(cart_id: Any, *, as_user: Any = ANYONE) -> tuple[Cart, list[d.Event]]:
    """Bring lines to the catalog's current prices. Returns the cart and the price changes
    made (empty when none), for a notice. One catalog query; writes only on a change."""
    key = cart_key(cart_id)
    cart = get_cart(key, as_user=as_user)
    skus = sorted({line.sku for line in (*cart.lines, *cart.saved)})
    if not skus or cart.status != d.OPEN:
        return cart, []
    prices = {sku: p.price for sku, p in catalog().products(skus).items()}
    command = d.Reprice(timezone.now(), prices)
    changes = d.decide(cart, command)
    if not changes:
        return cart, []
    return _mutate(key, command, as_user), changes


class _SavedMeanwhile(Exception):
    """Items were saved for later after the checkout looked: it runs again, carrying them
    (a rare race; the cart's entry is dropped and read again)."""


def _checkout(
    key: str,
    products: dict[str, d.ProductInfo],
    as_user: Any,
    carry_to: str | None,
    take_stock: Callable[[dict[str, Cart]], None],
    door: dict[str, Any],
) -> Cart:
    """One checkout attempt under the cart's lock; with `carry_to`, the saved-for-later
    items go to a new cart of that id, opened in the same transaction."""
    at = timezone.now()

    def decide(carts: dict[str, Cart | None]) -> dict[str, list[d.Event]]:
        cart = carts[key]
        _visible(cart, as_user)
        _checkout_discount_holds(cart)
        if cart is not None and cart.saved and carry_to is None:
            raise _SavedMeanwhile("saved items to carry")
        events = {key: d.decide(cart, d.Checkout(at, products, carry_to), limits())}
        if cart is not None and cart.saved and carry_to is not None:
            # The items leave as the checkout's re-pricing left them.
            repriced = [e for e in events[key] if isinstance(e, d.LinePriceChanged)]
            saved = d.fold(cart, repriced).saved
            opened = d.decide(None, d.OpenCart(at, carry_to, cart.owner_id, cart.currency))
            carried = d.decide(d.fold(None, opened), d.CarrySavedIn(at, key, saved), limits())
            events[carry_to] = [*opened, *carried]
        return events

    cart_ids = [key] if carry_to is None else [key, carry_to]
    opens = () if carry_to is None else (carry_to,)
    states = image.execute(cart_ids, decide, opens=opens, within=take_stock, **door)
    # A replayed Idempotency-Key answer comes back without deciding: still the caller's?
    _visible(states[key], as_user)
    return states[key]


@_reconnecting
def checkout(cart_id: Any, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Freeze the cart. Prices and stock are re-checked against the catalog; stock is taken
    in the same transaction as the checkout, all or nothing. A line whose price moved stops
    the checkout: PricesChanged (409 `prices_changed`, with the changes), and the cart is
    left re-priced for the shopper to review and check out again.

    Saved-for-later items are not bought and not lost: the same transaction opens the
    shopper's next cart (same owner, same currency) holding them (`next_cart` finds it)."""
    key = cart_key(cart_id)
    cart = get_cart(key, as_user=as_user)
    products = catalog().products(sorted({line.sku for line in cart.lines}))

    def take_stock(states: dict[str, Cart]) -> None:
        wanted: dict[str, int] = {}
        for line in states[key].lines:
            wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
        short = catalog().reserve(wanted)
        if short:
            raise d.InsufficientStock(
                f"not enough stock left for {', '.join(short)}", field="quantity"
            )

    carry_to = str(uuid.uuid4()) if cart.saved else None
    try:
        try:
            return _checkout(key, products, as_user, carry_to, take_stock, door)
        except _SavedMeanwhile:
            return _checkout(key, products, as_user, str(uuid.uuid4()), take_stock, door)
    except d.PricesChanged as changed:
        # Leave the cart at the new prices (and without a discount that no longer holds) for
        # the shopper to see and confirm: a new version, so a client holding the old one gets
        # 412 from If-Match next time, as it should.
        if any("discount" in change for change in changed.changes):
            _mutate(key, d.RemoveDiscount(timezone.now()), as_user)
        else:
            refresh_prices(key, as_user=as_user)
        raise


@_reconnecting
def next_cart(cart_id: Any, *, as_user: Any = ANYONE) -> Cart | None:
    """The cart a checkout of this cart opened for the saved-for-later items it carried (the
    shopper's next cart), or None when it carried none, or when that cart is no longer the
    caller's to see (it was merged into an account since, say). One query on the log."""
    key = cart_key(cart_id)
    get_cart(key, as_user=as_user)  # 404 for unknown or foreign carts
    carried = store.carried_to(key)
    if carried is None:
        return None
    try:
        return get_cart(carried, as_user=as_user)
    except d.NotFound:
        return None  # a checkout (or its replay) answers all the same


@_reconnecting
def expire_cart(
    cart_id: Any,
    *,
    idle_since: datetime | None = None,
    on_expired: Callable[[Cart], None] | None = None,
) -> Cart:
    """Mark an abandoned cart expired. Idempotent: a cart no longer open is left alone, and
    with `idle_since`, so is a cart changed after that instant. `on_expired(cart)` runs
    only in the call that expired it (once per cart, however many sweeps race)."""
    key = cart_key(cart_id)

    def expired(states: dict[str, Cart]) -> None:
        if on_expired is not None:
            on_expired(states[key])

    return _mutate(key, d.Expire(timezone.now(), idle_since), ANYONE, after_commit=expired)


@_reconnecting
def merge_carts(source_id: Any, target_id: Any, *, idempotency: Idempotency | None = None) -> Cart:
    """Move the source cart's lines into the target (quantities add, limits hold) and its
    saved-for-later items into the target's (an item saved in both is one entry, quantities
    added), and mark the source `merged`, in one transaction. Returns the target."""
    source, target = cart_key(source_id), cart_key(target_id)
    if source == target:
        raise d.InvalidInput("a cart can not be merged into itself", field="source")
    at = timezone.now()

    def decide(carts: dict[str, Cart | None]) -> dict[str, list[d.Event]]:
        src, tgt = carts[source], carts[target]
        assert src is not None and tgt is not None
        if src.status != d.OPEN:
            raise d.CartNotOpen(f"source cart is {src.status}")
        merging = d.MergeLines(at, src.lines, src.discount, source, src.saved)
        merged = d.decide(tgt, merging, limits())
        return {
            # A discount carried over (or kept) must hold for the merged cart too.
            target: _discount_kept_valid(tgt, merged, at),
            source: d.decide(src, d.MarkMerged(at, target), limits()),
        }

    return image.execute([target, source], decide, idempotency=idempotency)[target]


@_reconnecting
def cart_for_user(user_id: int, *, create: bool = False) -> Cart | None:
    """The user's open cart; with `create`, opened if they have none (two racing first
    requests of one user still get one cart: they are serialized on the user's row)."""
    found = store.find_open_cart(user_id)
    if found or not create:
        return get_cart(found) if found else None
    from django.contrib.auth import get_user_model

    with transaction.atomic():
        user = get_user_model().objects.select_for_update().filter(pk=user_id).first()
        if user is None:
            raise d.NotFound("user not found")  # deleted meanwhile: no cart for no one
        found = store.find_open_cart(user_id)
        return get_cart(found) if found else open_cart(owner_id=user_id)


@_reconnecting
def close_user_carts(user_id: int) -> int:
    """Close every cart of a user whose account is being deleted (called for you before a
    user is deleted through the ORM, the admin included): each gets an `owner_deleted`
    event, belongs to no one afterwards and is NotFound for every client, its history kept
    for operators. Inside the deletion's transaction, so both happen or neither. Returns how
    many carts it closed; safe to call again."""
    from django.contrib.auth import get_user_model

    closed = 0
    with transaction.atomic():
        # Serialized with this user's cart creation and logins (they lock the same row).
        get_user_model().objects.select_for_update().filter(pk=user_id).first()
        for cart_id in store.carts_of_owner(user_id):
            after = _mutate(cart_id, d.ForgetOwner(timezone.now(), user_id), ANYONE)
            closed += after.status == d.CLOSED
    return closed


@_reconnecting
def merge_on_login(session_cart_id: Any, user_id: int) -> Cart | None:
    """What happens to a visitor's cart when they log in: it merges into their open cart
    (quantities add, limits hold; the visitor's cart becomes `merged`), or, if they have none,
    it becomes theirs. Logins of one user are serialized, so two racing logins merge once.
    A visitor cart that is not open (checked out, merged, expired) is neither merged nor
    claimed: it stays exactly as it is (a checked-out cart is the visitor's order), and the
    user's open cart is returned, or None when they have none. The same holds for an unknown
    cart id or a cart another user owns. Never raises for the visitor's cart's state."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    with transaction.atomic():
        # The user's row is the lock that serializes this user's logins.
        if user_model.objects.select_for_update().filter(pk=user_id).first() is None:
            return None  # deleted meanwhile: nothing is claimed for no one
        mine = store.find_open_cart(user_id)
        if session_cart_id is None:
            return get_cart(mine) if mine else None
        try:
            visitor = get_cart(session_cart_id)
        except d.NotFound:
            return get_cart(mine) if mine else None
        if visitor.id == mine or visitor.owner_id not in (None, user_id):
            return get_cart(mine) if mine else None
        if visitor.status != d.OPEN:
            return get_cart(mine) if mine else None
        if mine is None:
            return _mutate(visitor.id, d.Claim(timezone.now(), user_id), ANYONE)
        return merge_carts(visitor.id, mine)


@_reconnecting
def history(
    cart_id: Any, after: int = 0, limit: int = 50, *, as_user: Any = ANYONE
) -> list[dict[str, Any]]:
    """The cart's events, oldest first, after version `after`."""
    key = cart_key(cart_id)
    get_cart(key, as_user=as_user)  # 404 for unknown or foreign carts
    return store.history(key, after=after, limit=limit)


@_reconnecting
def cart_at(cart_id: Any, version: int) -> Cart:
    """The cart as it was at `version` (replayed from the event log)."""
    key = cart_key(cart_id)
    cart = store.load_from_events(key, up_to=version)
    if cart is None:
        raise d.NotFound("cart not found")
    return cart
