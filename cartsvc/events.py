"""JSON codec for events and cart state, with schema versions and upcasters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import orjson

from cartsvc import domain as d

# Schema of the cart state as stored in snapshots and cache entries (2: saved lines;
# 3: compact: timestamps as epoch microseconds, empty fields left out).
STATE_SCHEMA = 3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CodecError(ValueError):
    """Stored data that can not be decoded (unknown type, schema or shape)."""


# ---------------------------------------------------------------- events
#
# One codec for every event type, in the manner of py-eventsourcing's transcoder: a payload is
# the event's fields (all but `at`), each written by its annotated type. An event type
# declares its fields, `schema` and `upcasters` (cartsvc.domain); nothing here names one.

R = TypeVar("R")

# How a field is written: its value out to JSON, and back from JSON.
Coding = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def _same(value: Any) -> Any:
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value


def _pairs(options: d.Options) -> list[list[str]]:
    return [list(pair) for pair in options]


# Money as a string keeps its exact digits; options are sorted pairs as they are read back.
_CODINGS: dict[Any, Coding] = {
    int: (_same, int),
    str: (_same, _text),
    Decimal: (str, Decimal),
    d.Options: (_pairs, d.canonical_options),
}


def _optional(inner: Coding) -> Coding:
    out, back = inner
    return (
        lambda value: None if value is None else out(value),
        lambda value: None if value is None else back(value),
    )


def _records(cls: type) -> Coding:
    return (
        lambda values: [_encode(value) for value in values],
        lambda values: tuple(_decode(cls, value) for value in values),
    )


def _scalars(inner: Coding) -> Coding:
    out, back = inner
    return (
        lambda values: [out(value) for value in values],
        lambda values: tuple(back(value) for value in values),
    )


def _coding(hint: Any) -> Coding:
    """How a field of type `hint` is written: a scalar, an optional, or a tuple of scalars
    or of records."""
    if hint in _CODINGS:
        return _CODINGS[hint]
    args = get_args(hint)
    if get_origin(hint) in (UnionType, Union) and len(args) == 2 and NoneType in args:
        return _optional(_coding(args[0] if args[1] is NoneType else args[1]))
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        if isinstance(args[0], type) and is_dataclass(args[0]):
            return _records(args[0])
        if args[0] in _CODINGS:
            return _scalars(_CODINGS[args[0]])
    raise CodecError(f"no coding for a field of type {hint!r}")


@cache
def _fields(cls: type) -> tuple[tuple[str, str, Coding], ...]:
    """(attribute, payload key, coding) of each field a payload carries, in field order
    (the keys keep the order stored payloads have always had)."""
    hints = get_type_hints(cls)
    renamed = getattr(cls, "payload_keys", {})
    carried = fields(cls)
    if issubclass(cls, d.Event):
        carried = carried[1:]  # `at`, every event's first field, travels beside the payload
    return tuple((f.name, renamed.get(f.name, f.name), _coding(hints[f.name])) for f in carried)


def _encode(record: Any) -> dict[str, Any]:
    # mypy checks a class against Hashable with its instances' __hash__ (python/mypy#11470):
    # a class object is always hashable.
    fields_ = _fields(type(record))  # type: ignore[arg-type]
    return {key: out(getattr(record, name)) for name, key, (out, _) in fields_}


def _decode(cls: type[R], data: Any, *first: Any) -> R:
    """`cls` from a payload; `first` are the values of the fields before the payload's (an
    event's `at`), given positionally like the rest (keywords cost twice as much)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} payload is not an object")
    fields_ = _fields(cls)  # type: ignore[arg-type]  # a class is hashable, as in _encode
    return cls(*first, *[back(data[key]) for _, key, (_, back) in fields_])


def _event_class(event_type: str) -> type[d.Event]:
    cls = d.EVENT_TYPES.get(event_type)
    if cls is None:
        raise CodecError(f"unknown event type {event_type!r}")
    return cls


def encode_event(event: d.Event) -> tuple[str, int, dict[str, Any]]:
    """Return (type, schema, JSON-ready payload). The timestamp travels beside, not inside."""
    cls = type(event)
    if d.EVENT_TYPES.get(cls.type) is not cls:
        raise CodecError(f"no encoder for {cls.__name__}: not a registered event type")
    return cls.type, cls.schema, _encode(event)


def upcast(event_type: str, schema: int, data: dict[str, Any]) -> dict[str, Any]:
    """A stored payload of `schema` brought to its type's current schema; the upcasters
    return new dicts, the stored one is never changed."""
    cls = _event_class(event_type)
    if schema > cls.schema:
        raise CodecError(f"{event_type} schema {schema} is newer than this code ({cls.schema})")
    while schema < cls.schema:
        upcaster = cls.upcasters.get(schema)
        if upcaster is None:
            raise CodecError(f"no upcaster for {event_type} schema {schema}")
        data = upcaster(data)
        schema += 1
    return data


def decode_event(event_type: str, schema: int, data: dict[str, Any], at: datetime) -> d.Event:
    try:
        return _decode(_event_class(event_type), upcast(event_type, schema, data), at)
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


def _lines_in(rows: Iterable[list[Any]]) -> tuple[d.Line, ...]:
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


def _line_ok(line: d.Line) -> bool:
    options_ok = all(
        len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in line.options
    )
    return (
        _is_int(line.id, 1)
        and isinstance(line.sku, str)
        and isinstance(line.name, str)
        and options_ok
        and _is_int(line.quantity, 1)
        and _is_money(line.unit_price)
    )


def _line_problems(cart: d.Cart) -> list[str]:
    problems = []
    ids = []
    for line in (*cart.lines, *cart.saved):
        ids.append(line.id)
        if not _line_ok(line):
            problems.append(f"line {line.id!r}")
    if len(set(ids)) != len(ids) or not _is_int(cart.next_line_id, max(ids, default=0) + 1):
        problems.append("line ids")
    return problems


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
    problems += _line_problems(cart)
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
