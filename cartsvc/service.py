"""The public API of the cart: every caller (views, admin, tasks, commands) comes here."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.utils import timezone

from cartsvc import domain as d
from cartsvc import image, store
from cartsvc.catalog import catalog
from cartsvc.conf import conf
from cartsvc.domain import Cart, DomainError
from cartsvc.image import cart_key, safe_process_action

__all__ = [
    "Cart",
    "DomainError",
    "add_line",
    "apply_discount",
    "cart_at",
    "checkout",
    "expire_cart",
    "get_cart",
    "history",
    "merge_carts",
    "open_cart",
    "remove_discount",
    "remove_line",
    "set_quantity",
]

MAX_SKU_LENGTH = 64
MAX_OPTIONS = 10
MAX_OPTION_LENGTH = 64


def limits() -> d.Limits:
    return d.Limits(max_line_quantity=conf.MAX_LINE_QUANTITY, max_lines=conf.MAX_LINES)


# ---------------------------------------------------------------- input checks


def _check_int(value: Any, field: str) -> int:
    if type(value) is not int:
        raise d.InvalidInput(f"{field} must be an integer", field=field)
    return value


def _check_sku(sku: Any) -> str:
    if not isinstance(sku, str) or not sku.strip() or len(sku) > MAX_SKU_LENGTH:
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
        if not isinstance(value, str) or not key or len(key) > MAX_OPTION_LENGTH:
            raise d.InvalidInput("options must map names to strings", field="options")
        if len(value) > MAX_OPTION_LENGTH:
            raise d.InvalidInput(
                f"option values are at most {MAX_OPTION_LENGTH} characters", field="options"
            )
    return d.canonical_options(options)


# ---------------------------------------------------------------- the door, once for all


@safe_process_action
def _run(cart: Cart | None, command: d.Command) -> list[d.Event]:
    return d.decide(cart, command, limits())


_create = safe_process_action(create=True)(_run.__wrapped__)


@safe_process_action(read=True)
def get_cart(cart: Cart) -> Cart:
    """The cart's current state (0 SQL queries when it is in memory)."""
    return cart


def open_cart(
    cart_id: Any = None,
    *,
    owner_id: int | None = None,
    currency: str | None = None,
    command_id: str | None = None,
) -> Cart:
    key = cart_key(cart_id) if cart_id is not None else str(uuid.uuid4())
    command = d.OpenCart(timezone.now(), key, owner_id, currency or conf.CURRENCY)
    return _create(key, command, command_id=command_id)


def add_line(
    cart_id: Any,
    sku: str,
    quantity: int = 1,
    options: dict[str, str] | None = None,
    *,
    expected_version: int | None = None,
    command_id: str | None = None,
) -> Cart:
    key = cart_key(cart_id)
    _check_sku(sku)
    _check_int(quantity, "quantity")
    canonical = _check_options(options)
    product = catalog().product(sku)
    if product is None:
        raise d.UnknownSku(f"unknown sku {sku!r}", field="sku")
    command = d.AddLine(timezone.now(), product, quantity, canonical)
    return _run(key, command, expected_version=expected_version, command_id=command_id)


def set_quantity(
    cart_id: Any,
    line_id: int,
    quantity: int,
    *,
    expected_version: int | None = None,
    command_id: str | None = None,
) -> Cart:
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    _check_int(quantity, "quantity")
    current = get_cart(key)
    line = current.line(line_id)
    stock = None
    if line is not None and quantity > 0:
        product = catalog().product(line.sku)
        stock = product.stock if product else 0
    command = d.SetQuantity(timezone.now(), line_id, quantity, stock)
    return _run(key, command, expected_version=expected_version, command_id=command_id)


def remove_line(
    cart_id: Any,
    line_id: int,
    *,
    expected_version: int | None = None,
    command_id: str | None = None,
) -> Cart:
    key = cart_key(cart_id)
    _check_int(line_id, "line_id")
    command = d.RemoveLine(timezone.now(), line_id)
    return _run(key, command, expected_version=expected_version, command_id=command_id)


def apply_discount(
    cart_id: Any,
    code: str,
    *,
    expected_version: int | None = None,
    command_id: str | None = None,
) -> Cart:
    key = cart_key(cart_id)
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        raise d.InvalidInput("code must be a non-empty string", field="code")
    found = catalog().discount(code.strip())
    if found is None or not found.active:
        raise d.InvalidDiscount(f"unknown or inactive discount code {code!r}", field="code")
    command = d.ApplyDiscount(
        timezone.now(), found.code, found.kind, Decimal(found.value), Decimal(found.min_subtotal)
    )
    return _run(key, command, expected_version=expected_version, command_id=command_id)


def remove_discount(
    cart_id: Any, *, expected_version: int | None = None, command_id: str | None = None
) -> Cart:
    command = d.RemoveDiscount(timezone.now())
    return _run(
        cart_key(cart_id), command, expected_version=expected_version, command_id=command_id
    )


def checkout(
    cart_id: Any, *, expected_version: int | None = None, command_id: str | None = None
) -> Cart:
    command = d.Checkout(timezone.now())
    return _run(
        cart_key(cart_id), command, expected_version=expected_version, command_id=command_id
    )


def expire_cart(cart_id: Any) -> Cart:
    """Mark an abandoned cart expired (idempotent: a cart no longer open is left alone)."""
    return _run(cart_key(cart_id), d.Expire(timezone.now()))


def merge_carts(source_id: Any, target_id: Any, *, command_id: str | None = None) -> Cart:
    """Move the source cart's lines into the target (quantities add, limits hold) and mark
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
        return {
            target: d.decide(tgt, d.MergeLines(at, src.lines), limits()),
            source: d.decide(src, d.MarkMerged(at, target), limits()),
        }

    return image.execute([source, target], decide, command_id=command_id)[target]


def history(cart_id: Any, after: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """The cart's events, oldest first, after version `after`."""
    key = cart_key(cart_id)
    get_cart(key)  # 404 for unknown carts
    return store.history(key, after=after, limit=limit)


def cart_at(cart_id: Any, version: int) -> Cart:
    """The cart as it was at `version` (replayed from the event log)."""
    key = cart_key(cart_id)
    cart = store.load_from_events(key, up_to=version)
    if cart is None:
        raise d.NotFound("cart not found")
    return cart
