"""The public API of the cart: every caller (views, admin, tasks, commands) comes here.

Mutations take `as_user`: the id of the logged-in user (or None for an anonymous visitor)
whose request this is. A cart owned by a user is invisible to everyone else (NotFound, not
Forbidden); an anonymous cart's id is its bearer capability. Internal callers (tasks,
commands, the admin) leave `as_user` out.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any, TypeVar

import orjson
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from cartsvc import domain as d
from cartsvc import image, metrics, store, verify
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
from cartsvc.verify import Mismatch

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

    return call  # type: ignore[return-value]


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


@safe_process_action
def _run(cart: Cart | None, command: d.Command, as_user: Any = ANYONE) -> list[d.Event]:
    _visible(cart, as_user)
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


def _check_visible(cart_id: str, as_user: Any) -> None:
    """NotFound for a caller who may not see the cart, checked with a read (from memory, no
    lock) before the command takes the cart's writer lock: a foreign request must leave the
    owner's lock and generation untouched."""
    if as_user is not ANYONE:
        get_cart(cart_id, as_user=as_user)


def _mutate(cart_id: Any, command: d.Command, as_user: Any, **door: Any) -> Cart:
    cart = _run(cart_key(cart_id), command, as_user, **door)
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
    _check_visible(key, as_user)
    product = catalog().product(sku)
    if product is None:
        raise d.UnknownSku(f"unknown sku {sku!r}", field="sku")
    return _mutate(key, d.AddLine(timezone.now(), product, quantity, canonical), as_user, **door)


@_reconnecting
def set_quantity(
    cart_id: Any, line_id: int, quantity: int, *, as_user: Any = ANYONE, **door: Any
) -> Cart:
    """Set a line's quantity; 0 removes it. More than the stock is refused."""
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    _check_int(quantity, "quantity")
    line = get_cart(key, as_user=as_user).line(line_id)
    stock = None
    if line is not None and quantity > 0:
        product = catalog().product(line.sku)
        stock = product.stock if product and product.active else 0
    return _mutate(key, d.SetQuantity(timezone.now(), line_id, quantity, stock), as_user, **door)


@_reconnecting
def remove_line(cart_id: Any, line_id: int, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Remove a line, or a saved-for-later item."""
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    _check_visible(key, as_user)
    return _mutate(key, d.RemoveLine(timezone.now(), line_id), as_user, **door)


@_reconnecting
def save_for_later(cart_id: Any, line_id: int, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Move a line out of the cart's totals into its saved-for-later list."""
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    _check_visible(key, as_user)
    return _mutate(key, d.SaveForLater(timezone.now(), line_id), as_user, **door)


@_reconnecting
def move_to_cart(cart_id: Any, line_id: int, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Bring a saved item back (merging with a line of the same sku and options)."""
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    _check_visible(key, as_user)
    return _mutate(key, d.MoveToCart(timezone.now(), line_id), as_user, **door)


@_reconnecting
def apply_discount(cart_id: Any, code: str, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Apply a discount code (looked up in the catalog; unknown or inactive codes refused)."""
    key = cart_key(cart_id)
    if not isinstance(code, str) or not code.strip() or len(code) > 64 or not _printable(code):
        raise d.InvalidInput("code must be a non-empty string", field="code")
    _check_visible(key, as_user)
    found = catalog().discount(code.strip())
    if found is None or not found.active:
        raise d.InvalidDiscount(f"unknown or inactive discount code {code!r}", field="code")
    command = d.ApplyDiscount(
        timezone.now(), found.code, found.kind, Decimal(found.value), Decimal(found.min_subtotal)
    )
    return _mutate(key, command, as_user, **door)


@_reconnecting
def remove_discount(cart_id: Any, *, as_user: Any = ANYONE, **door: Any) -> Cart:
    """Take the discount code off the cart."""
    key = cart_key(cart_id)
    _check_visible(key, as_user)
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
            saved = d.fold(cart, repriced).saved  # type: ignore[union-attr]
            opened = d.decide(None, d.OpenCart(at, carry_to, cart.owner_id, cart.currency))
            carried = d.decide(d.fold(None, opened), d.CarrySavedIn(at, key, saved), limits())
            events[carry_to] = [*opened, *carried]
        return events

    cart_ids = [key] if carry_to is None else [key, carry_to]
    opens = () if carry_to is None else (carry_to,)
    states = image.execute(cart_ids, decide, opens=opens, within=take_stock, **door)
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
    shopper's next cart), or None when it carried none. One query on the cart's log."""
    key = cart_key(cart_id)
    get_cart(key, as_user=as_user)  # 404 for unknown or foreign carts
    carried = store.carried_to(key)
    return get_cart(carried, as_user=as_user) if carried else None


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
    saved-for-later items into the target's (an item saved in both is kept once), and mark
    the source `merged`, in one transaction. Returns the target."""
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


# ---------------------------------------------------------------- operating the image


def memory_image(cart_id: Any) -> Cart | None:
    """What memory holds for this cart right now, untouched (None: not in memory, a corrupt
    entry, or the cache can not be asked)."""
    key = cart_key(cart_id)
    try:
        return image.peek([key]).get(key)
    except image.MemoryUnreachable:
        return None


def in_memory(cart_ids: list[Any]) -> set[str] | None:
    """Which of these carts are in memory (one pipelined cache call); None if the cache
    can not say."""
    return image.in_memory([cart_key(i) for i in cart_ids])


def rows_state(cart_id: Any) -> Cart | None:
    """The cart as its rows say (header and lines in one query), without touching memory."""
    return store.load_from_rows(cart_key(cart_id))


def evict_cart(cart_id: Any) -> bool:
    """Take a cart out of memory (it is rehydrated on the next read)."""
    return image.evict(cart_key(cart_id))


def rehydrate_cart(cart_id: Any) -> Cart:
    """Reload a cart into memory from the database now."""
    return image.rehydrate(cart_key(cart_id))


def rebuild_rows(cart_id: Any) -> Cart:
    """Repair: rewrite a cart's rows from its event log (the truth), under its lock."""
    key = cart_key(cart_id)
    rebuilt = image.exclusive(key, lambda: store.rebuild_rows(key))
    if rebuilt is None:
        raise d.NotFound("cart not found")
    return rebuilt


def verify_carts(
    cart_ids: list[Any] | None = None,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Mismatch]:
    """Every disagreement between rows, events, snapshots and memory (all carts if None);
    `progress(1)` is called after each cart is checked."""

    def checked() -> None:
        if progress is not None:
            progress(1)

    if cart_ids is not None:
        for cart_id in cart_ids:
            try:
                key = cart_key(cart_id)
            except d.NotFound:
                yield Mismatch(str(cart_id), "id", "not a cart id")
                checked()
                continue
            if store.load_from_rows(key) is None and not store.replay_all(key)[1]:
                yield Mismatch(key, "id", "no such cart")
                checked()
                continue
            yield from verify.verify_cart(key)
            checked()
        return
    after = None
    while ids := store.all_cart_ids(after, batch):
        for key in ids:
            yield from verify.verify_cart(key)
            checked()
        after = ids[-1]


@dataclass
class Repair:
    """What `repair_cart` found, did and left: `found` and `remaining` are the cart's
    mismatches before and after, `done` says what was changed, in order."""

    cart_id: str
    found: list[Mismatch]
    done: list[str]
    remaining: list[Mismatch]

    @property
    def repaired(self) -> bool:
        """Whether the cart is consistent now."""
        return not self.remaining


def repair_cart(cart_id: Any) -> Repair:
    """Repair one cart from its event log (the truth): verify it; evict a memory entry that
    disagrees with the log (the next read loads it again); rewrite rows that disagree from
    the log, under the cart's lock; then verify again. The log and its snapshots are never
    changed, so a gap in its versions or a snapshot that disagrees stays in `remaining`, as
    does memory that could not be checked or evicted (a writer holds the cart). Raises
    NotFound for an unknown cart."""
    key = cart_key(cart_id)
    if store.load_from_rows(key) is None and not store.replay_all(key)[1]:
        raise d.NotFound("cart not found")
    found = verify.verify_cart(key)
    done: list[str] = []
    # verify compares memory with snapshot + replay: an entry equal to the full fold is
    # right, and the bad snapshot is what disagrees; evicting it would reload the snapshot's
    # error. Evicted before the rows are rebuilt: a reader refilling the entry from bad rows
    # meanwhile is dropped again when rebuild_rows releases the lock.
    if any(m.what == "memory" for m in found):
        cached = memory_image(key)
        if (cached is None or cached != store.replay_all(key)[0]) and evict_cart(key):
            done.append("memory entry evicted")
    if any(m.what == "rows" for m in found):
        rebuild_rows(key)
        done.append("rows rebuilt from the event log")
    remaining = verify.verify_cart(key) if done else found
    return Repair(key, found, done, remaining)


@dataclass
class WarmResult:
    """What `warm_carts` did; in a dry run `warmed` counts the carts it would have warmed
    (not in memory) and `failed` those the cache could not say about."""

    warmed: int = 0
    already: int = 0
    failed: int = 0
    seen: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def __str__(self) -> str:
        rate = self.seen / self.seconds if self.seconds else 0.0
        done = f"would warm {self.warmed}" if self.dry_run else f"warmed {self.warmed}"
        return (
            f"{done}, already warm {self.already}, failed {self.failed} "
            f"in {self.seconds:.2f} s ({rate:,.0f} carts/s)"
            + (" (dry run)" if self.dry_run else "")
        )


def warm_carts(
    *,
    active_within: float | None = None,
    limit: int | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> WarmResult:
    """Load carts active in the window into memory in batches: two queries per batch, one
    cache call to claim and one to fill, never over a newer entry. The cache calls run on a
    helper thread (which never touches the database) while this one queries the next batch,
    so database and cache work overlap. A dry run loads nothing: one cache call per batch
    counts which carts are in memory already."""
    started = time.monotonic()
    since = timezone.now() - timedelta(seconds=active_within) if active_within else None
    result = WarmResult(dry_run=dry_run)

    def next_ids(after: str | None) -> list[str]:
        if limit is not None and result.seen >= limit:
            return []
        size = batch_size if limit is None else min(batch_size, limit - result.seen)
        ids = store.active_ids(since, after, size)
        result.seen += len(ids)
        return ids

    def add(counts: tuple[int, int, int]) -> None:
        result.warmed += counts[0]
        result.already += counts[1]
        result.failed += counts[2]

    ids = next_ids(None)
    if dry_run:
        while ids:
            warm = in_memory(ids)
            if warm is None:
                add((0, 0, len(ids)))
            else:
                already = len(warm.intersection(ids))
                add((len(ids) - already, already, 0))
            if progress is not None:
                progress(len(ids))
            ids = next_ids(ids[-1])
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-cache") as cache_thread:
            claiming = cache_thread.submit(image.warm_claim, ids) if ids else None
            filling = []
            while ids and claiming is not None:
                following = next_ids(ids[-1])
                claimed, already, failed = claiming.result()
                add((0, already, failed))
                claiming = cache_thread.submit(image.warm_claim, following) if following else None
                items, gone = image.warm_load(claimed)
                add((0, 0, gone))
                filling.append(cache_thread.submit(image.warm_fill, items))
                if progress is not None:
                    progress(len(ids))
                ids = following
            for fill in filling:
                add(fill.result())
    result.seconds = time.monotonic() - started
    return result


def count_active(active_within: float | None = None) -> int:
    """How many carts were active in the window (for a progress bar's total)."""
    since = timezone.now() - timedelta(seconds=active_within) if active_within else None
    return store.count_active(since)
