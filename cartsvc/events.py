"""JSON codec for events and cart state, with schema versions and upcasters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from cartsvc import domain as d

# Current schema of each event type's payload. Bump it when a payload changes shape, and
# register an upcaster from the old version below: stored events are never rewritten.
EVENT_SCHEMAS: dict[str, int] = {
    d.CartOpened.type: 1,
    d.LineAdded.type: 2,
    d.QuantityChanged.type: 1,
    d.LineRemoved.type: 1,
    d.DiscountApplied.type: 1,
    d.DiscountRemoved.type: 1,
    d.CheckedOut.type: 1,
    d.CartExpired.type: 1,
    d.CartMerged.type: 1,
    d.LinePriceChanged.type: 1,
    d.LineSavedForLater.type: 1,
    d.LineMovedToCart.type: 1,
    d.CartClaimed.type: 1,
    d.OwnerDeleted.type: 1,
    d.SavedItemsCarriedOut.type: 1,
    d.SavedItemsCarriedIn.type: 1,
}
EVENT_CLASSES: dict[str, type[d.Event]] = {
    cls.type: cls
    for cls in (
        d.CartOpened,
        d.LineAdded,
        d.QuantityChanged,
        d.LineRemoved,
        d.DiscountApplied,
        d.DiscountRemoved,
        d.CheckedOut,
        d.CartExpired,
        d.CartMerged,
        d.LinePriceChanged,
        d.LineSavedForLater,
        d.LineMovedToCart,
        d.CartClaimed,
        d.OwnerDeleted,
        d.SavedItemsCarriedOut,
        d.SavedItemsCarriedIn,
    )
}

# Schema of the cart state as stored in snapshots and cache entries (2: saved lines;
# 3: compact: timestamps as epoch microseconds, empty fields left out).
STATE_SCHEMA = 3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CodecError(ValueError):
    """Stored data that can not be decoded (unknown type, schema or shape)."""


def _line_added_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # v1 had no options and called the price "price".
    data = dict(data)
    data["unit_price"] = data.pop("price")
    data.setdefault("options", [])
    return data


UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    (d.LineAdded.type, 1): _line_added_v1_to_v2,
}


def _line_out(line: d.Line) -> dict[str, Any]:
    """A line in an event's payload (line_added, and each of saved_items_carried_in's)."""
    return {
        "line_id": line.id,
        "sku": line.sku,
        "name": line.name,
        "options": [list(pair) for pair in line.options],
        "quantity": line.quantity,
        "unit_price": str(line.unit_price),
    }


def _line_in(data: dict[str, Any]) -> d.Line:
    return d.Line(
        int(data["line_id"]),
        data["sku"],
        data["name"],
        d.canonical_options(data["options"]),
        int(data["quantity"]),
        Decimal(data["unit_price"]),
    )


def encode_event(event: d.Event) -> tuple[str, int, dict[str, Any]]:
    """Return (type, schema, JSON-ready payload). The timestamp travels beside, not inside."""
    if isinstance(event, d.CartOpened):
        data: dict[str, Any] = {
            "cart_id": event.cart_id,
            "owner_id": event.owner_id,
            "currency": event.currency,
        }
    elif isinstance(event, d.LineAdded):
        data = _line_out(
            d.Line(
                event.line_id,
                event.sku,
                event.name,
                event.options,
                event.quantity,
                event.unit_price,
            )
        )
    elif isinstance(event, d.QuantityChanged):
        data = {"line_id": event.line_id, "quantity": event.quantity}
    elif isinstance(event, d.LineRemoved):
        data = {"line_id": event.line_id}
    elif isinstance(event, d.DiscountApplied):
        data = {"code": event.code, "kind": event.kind, "value": str(event.value)}
    elif isinstance(event, d.CartMerged):
        data = {"into_cart_id": event.into_cart_id}
    elif isinstance(event, d.LinePriceChanged):
        data = {
            "line_id": event.line_id,
            "unit_price": str(event.unit_price),
            "old_price": str(event.old_price),
        }
    elif isinstance(event, d.LineSavedForLater):
        data = {"line_id": event.line_id}
    elif isinstance(event, d.LineMovedToCart):
        data = {
            "line_id": event.line_id,
            "merge_into": event.merge_into,
            "quantity": event.quantity,
        }
    elif isinstance(event, d.CartClaimed):
        data = {"owner_id": event.owner_id}
    elif isinstance(event, d.SavedItemsCarriedOut):
        data = {"to_cart_id": event.to_cart_id, "line_ids": list(event.line_ids)}
    elif isinstance(event, d.SavedItemsCarriedIn):
        data = {"from_cart_id": event.from_cart_id, "lines": list(map(_line_out, event.lines))}
    elif isinstance(event, (d.DiscountRemoved, d.CheckedOut, d.CartExpired, d.OwnerDeleted)):
        data = {}
    else:
        raise CodecError(f"no encoder for {type(event).__name__}")
    return event.type, EVENT_SCHEMAS[event.type], data


def upcast(event_type: str, schema: int, data: dict[str, Any]) -> dict[str, Any]:
    current = EVENT_SCHEMAS.get(event_type)
    if current is None:
        raise CodecError(f"unknown event type {event_type!r}")
    if schema > current:
        raise CodecError(f"{event_type} schema {schema} is newer than this code ({current})")
    while schema < current:
        upcaster = UPCASTERS.get((event_type, schema))
        if upcaster is None:
            raise CodecError(f"no upcaster for {event_type} schema {schema}")
        data = upcaster(data)
        schema += 1
    return data


def decode_event(event_type: str, schema: int, data: dict[str, Any], at: datetime) -> d.Event:
    try:
        data = upcast(event_type, schema, data)
        if event_type == d.CartOpened.type:
            return d.CartOpened(at, data["cart_id"], data["owner_id"], data["currency"])
        if event_type == d.LineAdded.type:
            line = _line_in(data)
            return d.LineAdded(
                at, line.id, line.sku, line.name, line.options, line.quantity, line.unit_price
            )
        if event_type == d.QuantityChanged.type:
            return d.QuantityChanged(at, int(data["line_id"]), int(data["quantity"]))
        if event_type == d.LineRemoved.type:
            return d.LineRemoved(at, int(data["line_id"]))
        if event_type == d.DiscountApplied.type:
            return d.DiscountApplied(at, data["code"], data["kind"], Decimal(data["value"]))
        if event_type == d.CartMerged.type:
            return d.CartMerged(at, data["into_cart_id"])
        if event_type == d.LinePriceChanged.type:
            return d.LinePriceChanged(
                at, int(data["line_id"]), Decimal(data["unit_price"]), Decimal(data["old_price"])
            )
        if event_type == d.LineSavedForLater.type:
            return d.LineSavedForLater(at, int(data["line_id"]))
        if event_type == d.LineMovedToCart.type:
            merge_into = data["merge_into"]
            return d.LineMovedToCart(
                at,
                int(data["line_id"]),
                None if merge_into is None else int(merge_into),
                int(data["quantity"]),
            )
        if event_type == d.CartClaimed.type:
            return d.CartClaimed(at, int(data["owner_id"]))
        if event_type == d.SavedItemsCarriedOut.type:
            line_ids = tuple(int(line_id) for line_id in data["line_ids"])
            return d.SavedItemsCarriedOut(at, str(data["to_cart_id"]), line_ids)
        if event_type == d.SavedItemsCarriedIn.type:
            lines = tuple(map(_line_in, data["lines"]))
            return d.SavedItemsCarriedIn(at, str(data["from_cart_id"]), lines)
        return EVENT_CLASSES[event_type](at)
    except CodecError:
        raise
    except (LookupError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise CodecError(f"bad {event_type} payload: {exc}") from exc


# ---------------------------------------------------------------- state


def _lines_out(lines: tuple[d.Line, ...]) -> list[list[Any]]:
    return [
        [line.id, line.sku, line.name, line.options, line.quantity, str(line.unit_price)]
        for line in lines
    ]


def _lines_in(rows: list[list[Any]]) -> tuple[d.Line, ...]:
    return tuple(
        d.Line(lid, sku, name, tuple(tuple(pair) for pair in opts), qty, Decimal(price))
        for lid, sku, name, opts, qty, price in rows
    )


def _state_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # v1 had no saved-for-later lines.
    return {**data, "s": 2, "sv": []}


def _state_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    # v3 reads v2's ISO timestamps and explicit nulls as they are.
    return {**data, "s": 3}


STATE_UPCASTERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _state_v1_to_v2,
    2: _state_v2_to_v3,
}


def _micros(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _instant(value: int | str) -> datetime:
    if type(value) is int:
        return EPOCH + timedelta(microseconds=value)
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    raise CodecError(f"bad timestamp {value!r}")


def state_to_dict(cart: d.Cart) -> dict[str, Any]:
    """Compact form of the whole state: short keys, money as strings, lines as arrays."""
    discount = cart.discount
    data: dict[str, Any] = {
        "s": STATE_SCHEMA,
        "id": cart.id,
        "v": cart.version,
        "st": cart.status,
        "cu": cart.currency,
        "n": cart.next_line_id,
        "l": _lines_out(cart.lines),
        "ca": _micros(cart.created_at),
        "ua": _micros(cart.updated_at),
    }
    # Left out when empty: every byte counts in a cache entry.
    if cart.owner_id is not None:
        data["o"] = cart.owner_id
    if cart.saved:
        data["sv"] = _lines_out(cart.saved)
    if discount:
        data["dc"] = [discount.code, discount.kind, str(discount.value)]
    if cart.merged_into:
        data["m"] = cart.merged_into
    return data


def state_from_dict(data: dict[str, Any]) -> d.Cart:
    schema = data.get("s")
    if (
        type(schema) is not int
        or schema > STATE_SCHEMA
        or schema
        not in (
            STATE_SCHEMA,
            *STATE_UPCASTERS,
        )
    ):
        raise CodecError(f"state schema {schema!r} is not {STATE_SCHEMA}")
    try:
        while data["s"] < STATE_SCHEMA:
            data = STATE_UPCASTERS[data["s"]](data)
        discount = data.get("dc")
        cart = d.Cart(
            id=data["id"],
            version=data["v"],
            status=data["st"],
            currency=data["cu"],
            owner_id=data.get("o"),
            lines=_lines_in(data["l"]),
            saved=_lines_in(data.get("sv") or ()),
            discount=d.Discount(discount[0], discount[1], Decimal(discount[2]))
            if discount
            else None,
            next_line_id=data["n"],
            created_at=_instant(data["ca"]),
            updated_at=_instant(data["ua"]),
            merged_into=data.get("m"),
        )
    except (LookupError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise CodecError(f"bad state: {exc}") from exc
    _check_state(cart)
    return cart


def _is_int(value: Any, minimum: int) -> bool:
    return type(value) is int and value >= minimum


def _is_money(value: Any) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value >= 0


def _check_state(cart: d.Cart) -> None:
    """Every field of the right type and range: an entry of the right shape with a wrong
    value ("abc" for a quantity, an unknown status, an owner that is not an id) is as
    unusable as garbage, and is refused the same way (the caller reads the database)."""
    problems = []
    if not _is_int(cart.version, 1):
        problems.append("version")
    if cart.status not in d.STATUSES:
        problems.append("status")
    if not (isinstance(cart.currency, str) and len(cart.currency) == 3):
        problems.append("currency")
    if cart.owner_id is not None and not _is_int(cart.owner_id, 1):
        problems.append("owner")
    if cart.merged_into is not None and not isinstance(cart.merged_into, str):
        problems.append("merged_into")
    ids = []
    for line in (*cart.lines, *cart.saved):
        ids.append(line.id)
        options_ok = all(
            len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in line.options
        )
        if not (
            _is_int(line.id, 1)
            and isinstance(line.sku, str)
            and isinstance(line.name, str)
            and options_ok
            and _is_int(line.quantity, 1)
            and _is_money(line.unit_price)
        ):
            problems.append(f"line {line.id!r}")
    if len(set(ids)) != len(ids) or not _is_int(cart.next_line_id, max(ids, default=0) + 1):
        problems.append("line ids")
    discount = cart.discount
    if discount is not None and not (
        isinstance(discount.code, str)
        and discount.kind in ("percent", "fixed")
        and _is_money(discount.value)
    ):
        problems.append("discount")
    if problems:
        raise CodecError(f"bad state: wrong {', '.join(problems)}")


def dump_state(cart: d.Cart) -> bytes:
    """A cache entry's payload: the state without its id (the key names the cart)."""
    data = state_to_dict(cart)
    del data["id"]
    return orjson.dumps(data)


def payload_from_parts(
    *,
    version: int,
    status: str,
    currency: str,
    owner_id: int | None,
    next_line_id: int,
    lines: list[list[Any]],
    saved: list[list[Any]],
    discount: list[str] | None,
    created_us: int,
    updated_us: int,
    merged_into: str | None,
) -> bytes:
    """`dump_state` for a state that is still in parts (bulk warming builds no Cart):
    lines as [id, sku, name, options, quantity, "price"], timestamps in epoch microseconds.
    Must produce exactly what dump_state produces; tests/unit/test_events.py checks it."""
    data: dict[str, Any] = {
        "s": STATE_SCHEMA,
        "v": version,
        "st": status,
        "cu": currency,
        "n": next_line_id,
        "l": lines,
        "ca": created_us,
        "ua": updated_us,
    }
    if owner_id is not None:
        data["o"] = owner_id
    if saved:
        data["sv"] = saved
    if discount:
        data["dc"] = discount
    if merged_into:
        data["m"] = merged_into
    return orjson.dumps(data)


def load_state(raw: bytes | str, cart_id: str) -> d.Cart:
    """Decode JSON only: anything else (a pickle, garbage) is a CodecError, never executed."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CodecError("state is not an object")
    data.setdefault("id", cart_id)
    if data["id"] != cart_id:
        raise CodecError(f"entry of cart {data['id']!r} found under {cart_id!r}")
    return state_from_dict(data)
