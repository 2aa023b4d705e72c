"""The event and state codec: round trips, upcasters, and refusal of anything not ours."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import ClassVar

import orjson
import pytest

from cartsvc import domain as d
from cartsvc import events as e

AT = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)

EVENTS = [
    d.CartOpened(AT, "0b6f3c1e-9a40-4d5e-8f59-1d1e7a2b3c4d", None, "EUR"),
    d.CartOpened(AT, "cart-2", 42, "USD"),
    d.LineAdded(AT, 1, "SKU-1", "Product 1", (), 2, Decimal("3.50")),
    d.LineAdded(
        AT,
        7,
        "SKU-2",
        "Café ünïcode €",
        d.canonical_options({"size": "M", "color": "red"}),
        99,
        Decimal("1234567.89"),
    ),
    d.QuantityChanged(AT, 1, 5),
    d.LineRemoved(AT, 7),
    d.DiscountApplied(AT, "TEN", "percent", Decimal("10")),
    d.DiscountApplied(AT, "FIVE", "fixed", Decimal("5.00")),
    d.DiscountRemoved(AT),
    d.CheckedOut(AT),
    d.CartExpired(AT),
    d.CartMerged(AT, "cart-3"),
    d.LinePriceChanged(AT, 2, Decimal("12.50"), Decimal("10.00")),
    d.LineSavedForLater(AT, 3),
    d.LineMovedToCart(AT, 3, None, 2),
    d.LineMovedToCart(AT, 3, 1, 7),
    d.CartClaimed(AT, 42),
    d.OwnerDeleted(AT),
    d.SavedItemsCarriedOut(AT, "0b6f3c1e-9a40-4d5e-8f59-1d1e7a2b3c4d", (3, 7)),
    d.SavedItemsCarriedIn(
        AT,
        "cart-4",
        (
            d.Line(1, "SKU-1", "Product 1", (), 2, Decimal("3.50")),
            d.Line(2, "SKU-2", "Café €", d.canonical_options({"size": "M"}), 1, Decimal("9.99")),
        ),
    ),
]


def test_the_examples_cover_every_event_type():
    assert {event.type for event in EVENTS} == set(d.EVENT_TYPES)


def test_the_registry_names_each_class_by_its_type():
    for event_type, cls in d.EVENT_TYPES.items():
        assert cls.type == event_type
        assert cls.schema >= 1


def test_every_old_schema_has_an_upcaster():
    for cls in d.EVENT_TYPES.values():
        assert set(cls.upcasters) == set(range(1, cls.schema))


# The payloads as the log has always stored them, one per example above (taken from the
# codec before it became generic): old rows must still decode, new rows must look like them.
STORED = [
    (
        "cart_opened",
        1,
        '{"cart_id":"0b6f3c1e-9a40-4d5e-8f59-1d1e7a2b3c4d","owner_id":null,"currency":"EUR"}',
    ),
    ("cart_opened", 1, '{"cart_id":"cart-2","owner_id":42,"currency":"USD"}'),
    (
        "line_added",
        2,
        '{"line_id":1,"sku":"SKU-1","name":"Product 1","options":[],'
        '"quantity":2,"unit_price":"3.50"}',
    ),
    (
        "line_added",
        2,
        '{"line_id":7,"sku":"SKU-2","name":"Café ünïcode €",'
        '"options":[["color","red"],["size","M"]],"quantity":99,'
        '"unit_price":"1234567.89"}',
    ),
    ("quantity_changed", 1, '{"line_id":1,"quantity":5}'),
    ("line_removed", 1, '{"line_id":7}'),
    ("discount_applied", 1, '{"code":"TEN","kind":"percent","value":"10"}'),
    ("discount_applied", 1, '{"code":"FIVE","kind":"fixed","value":"5.00"}'),
    ("discount_removed", 1, "{}"),
    ("checked_out", 1, "{}"),
    ("cart_expired", 1, "{}"),
    ("cart_merged", 1, '{"into_cart_id":"cart-3"}'),
    ("line_price_changed", 1, '{"line_id":2,"unit_price":"12.50","old_price":"10.00"}'),
    ("line_saved_for_later", 1, '{"line_id":3}'),
    ("line_moved_to_cart", 1, '{"line_id":3,"merge_into":null,"quantity":2}'),
    ("line_moved_to_cart", 1, '{"line_id":3,"merge_into":1,"quantity":7}'),
    ("cart_claimed", 1, '{"owner_id":42}'),
    ("owner_deleted", 1, "{}"),
    (
        "saved_items_carried_out",
        1,
        '{"to_cart_id":"0b6f3c1e-9a40-4d5e-8f59-1d1e7a2b3c4d","line_ids":[3,7]}',
    ),
    (
        "saved_items_carried_in",
        1,
        '{"from_cart_id":"cart-4","lines":[{"line_id":1,"sku":"SKU-1",'
        '"name":"Product 1","options":[],"quantity":2,"unit_price":"3.50"},'
        '{"line_id":2,"sku":"SKU-2","name":"Café €","options":[["size",'
        '"M"]],"quantity":1,"unit_price":"9.99"}]}',
    ),
]


@pytest.mark.parametrize(
    ("event", "stored"),
    list(zip(EVENTS, STORED, strict=True)),
    ids=lambda v: getattr(v, "type", ""),
)
def test_payloads_keep_the_shape_the_log_has_always_stored(event, stored):
    event_type, schema, raw = stored
    encoded_type, encoded_schema, data = e.encode_event(event)
    assert (encoded_type, encoded_schema) == (event_type, schema)
    # Byte for byte, key order included.
    assert orjson.dumps(data).decode() == raw
    assert e.decode_event(event_type, schema, orjson.loads(raw), AT) == event


@pytest.mark.parametrize("event", EVENTS, ids=lambda ev: ev.type)
def test_event_round_trip(event):
    event_type, schema, data = e.encode_event(event)
    assert event_type == event.type
    assert schema == type(event).schema
    assert e.decode_event(event_type, schema, data, event.at) == event
    # As stored: the payload goes through JSON (a jsonb column) and comes back.
    stored = orjson.loads(orjson.dumps(data))
    decoded = e.decode_event(event_type, schema, stored, event.at)
    assert decoded == event
    assert type(decoded) is type(event)


@pytest.mark.parametrize("event", EVENTS, ids=lambda ev: ev.type)
def test_event_payloads_are_plain_json_without_floats(event):
    _type, _schema, data = e.encode_event(event)
    assert orjson.loads(orjson.dumps(data)) == data

    def walk(value):
        assert not isinstance(value, float | Decimal | datetime)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(data)


def test_money_keeps_its_exact_digits():
    event = d.LineAdded(AT, 1, "S", "N", (), 1, Decimal("0.10"))
    _type, _schema, data = e.encode_event(event)
    assert data["unit_price"] == "0.10"
    decoded = e.decode_event("line_added", 2, data, AT)
    assert str(decoded.unit_price) == "0.10"


def test_the_timestamp_travels_beside_the_payload():
    _type, _schema, data = e.encode_event(d.CheckedOut(AT))
    assert data == {}
    later = AT + timedelta(days=1)
    assert e.decode_event("checked_out", 1, data, later) == d.CheckedOut(later)


def test_an_event_type_without_an_encoder_is_a_codec_error():
    @dataclass(frozen=True, slots=True)
    class Mystery(d.Event):
        type: ClassVar[str] = "mystery"

    with pytest.raises(e.CodecError):
        e.encode_event(Mystery(AT))


@pytest.fixture
def own_registry(monkeypatch):
    """Event types registered in a test stay in the test."""
    monkeypatch.setattr(d, "EVENT_TYPES", dict(d.EVENT_TYPES))


def test_a_new_event_type_needs_only_its_class(own_registry):
    @d.registered
    @dataclass(frozen=True, slots=True)
    class Rewrapped(d.Event):
        type: ClassVar[str] = "rewrapped"
        line_id: int
        note: str
        fee: Decimal | None
        options: d.Options
        lines: tuple[d.Line, ...]

    event = Rewrapped(
        AT, 3, "gift", Decimal("1.50"), (("a", "b"),), (d.Line(2, "S", "N", (), 1, Decimal("2")),)
    )
    assert e.encode_event(event) == (
        "rewrapped",
        1,
        {
            "line_id": 3,
            "note": "gift",
            "fee": "1.50",
            "options": [["a", "b"]],
            "lines": [
                {
                    "line_id": 2,
                    "sku": "S",
                    "name": "N",
                    "options": [],
                    "quantity": 1,
                    "unit_price": "2",
                }
            ],
        },
    )
    _type, schema, data = e.encode_event(replace(event, fee=None))
    assert data["fee"] is None
    stored = orjson.loads(orjson.dumps(data))
    assert e.decode_event("rewrapped", schema, stored, AT) == replace(event, fee=None)


def test_an_event_type_declares_its_own_upcasters(own_registry):
    @d.registered
    @dataclass(frozen=True, slots=True)
    class Renamed(d.Event):
        type: ClassVar[str] = "renamed"
        schema: ClassVar[int] = 3
        upcasters: ClassVar = {
            1: lambda data: {"title": data["name"]},
            2: lambda data: {"label": data["title"]},
        }
        label: str

    assert e.decode_event("renamed", 1, {"name": "x"}, AT) == Renamed(AT, "x")
    assert e.decode_event("renamed", 3, {"label": "y"}, AT) == Renamed(AT, "y")
    assert e.encode_event(Renamed(AT, "z")) == ("renamed", 3, {"label": "z"})


def test_a_field_type_without_a_coding_is_a_codec_error(own_registry):
    @d.registered
    @dataclass(frozen=True, slots=True)
    class Floaty(d.Event):
        type: ClassVar[str] = "floaty"
        ratio: float

    with pytest.raises(e.CodecError, match="no coding"):
        e.encode_event(Floaty(AT, 0.5))
    with pytest.raises(e.CodecError, match="no coding"):
        e.decode_event("floaty", 1, {"ratio": 0.5}, AT)


def test_an_event_type_is_registered_once(own_registry):
    with pytest.raises(TypeError, match="taken"):

        @d.registered
        @dataclass(frozen=True, slots=True)
        class Impostor(d.Event):
            type: ClassVar[str] = "line_added"

    assert d.EVENT_TYPES["line_added"] is d.LineAdded


# ---------------------------------------------------------------- upcasting


V1_LINE_ADDED = {"line_id": 3, "sku": "OLD-1", "name": "Old", "quantity": 2, "price": "4.20"}


def test_line_added_v1_is_upcast_to_v2():
    decoded = e.decode_event("line_added", 1, dict(V1_LINE_ADDED), AT)
    assert decoded == d.LineAdded(AT, 3, "OLD-1", "Old", (), 2, Decimal("4.20"))
    assert decoded.options == ()
    assert decoded.unit_price == Decimal("4.20") and str(decoded.unit_price) == "4.20"


def test_upcasting_does_not_change_the_stored_payload():
    stored = dict(V1_LINE_ADDED)
    upcast = e.upcast("line_added", 1, stored)
    assert stored == V1_LINE_ADDED
    assert upcast == {
        "line_id": 3,
        "sku": "OLD-1",
        "name": "Old",
        "quantity": 2,
        "unit_price": "4.20",
        "options": [],
    }


def test_upcasting_a_current_payload_is_the_identity():
    _type, schema, data = e.encode_event(EVENTS[3])
    assert e.upcast("line_added", schema, data) == data


# ---------------------------------------------------------------- refusals


def test_an_unknown_event_type_is_a_codec_error():
    with pytest.raises(e.CodecError, match="unknown event type"):
        e.decode_event("line_teleported", 1, {}, AT)


@pytest.mark.parametrize("event_type", sorted(d.EVENT_TYPES))
def test_a_newer_schema_is_a_codec_error(event_type):
    with pytest.raises(e.CodecError, match="newer"):
        e.decode_event(event_type, d.EVENT_TYPES[event_type].schema + 1, {}, AT)


@pytest.mark.parametrize("event_type", sorted(d.EVENT_TYPES))
def test_a_schema_older_than_any_upcaster_is_a_codec_error(event_type):
    with pytest.raises(e.CodecError):
        e.decode_event(event_type, 0, {}, AT)


def _line_added(**changes):
    _type, _schema, data = e.encode_event(EVENTS[3])
    return {**data, **changes}


GARBAGE = [
    pytest.param("cart_opened", 1, {}, id="cart_opened-empty"),
    pytest.param("cart_opened", 1, None, id="cart_opened-null"),
    pytest.param("cart_opened", 1, [], id="cart_opened-list"),
    pytest.param("cart_opened", 1, "garbage", id="cart_opened-string"),
    pytest.param("line_added", 2, {}, id="line_added-empty"),
    pytest.param("line_added", 2, None, id="line_added-null"),
    pytest.param("line_added", 2, _line_added(unit_price="abc"), id="line_added-price"),
    pytest.param("line_added", 2, _line_added(unit_price=None), id="line_added-null-price"),
    pytest.param("line_added", 2, _line_added(quantity="two"), id="line_added-quantity"),
    pytest.param("line_added", 2, _line_added(line_id=None), id="line_added-line-id"),
    pytest.param("line_added", 2, _line_added(options=5), id="line_added-options"),
    pytest.param("line_added", 2, _line_added(options=[["a", "b", "c"]]), id="line_added-pairs"),
    pytest.param("quantity_changed", 1, {"line_id": 1}, id="quantity_changed-missing"),
    pytest.param("quantity_changed", 1, {"line_id": 1, "quantity": []}, id="quantity_changed"),
    pytest.param("line_removed", 1, {"line_id": "x"}, id="line_removed"),
    pytest.param("discount_applied", 1, {"code": "T", "kind": "fixed"}, id="discount-missing"),
    pytest.param(
        "discount_applied", 1, {"code": "T", "kind": "fixed", "value": "1,5"}, id="discount-value"
    ),
    pytest.param("cart_merged", 1, {}, id="cart_merged-empty"),
    pytest.param("checked_out", 1, None, id="checked_out-null"),
    pytest.param("owner_deleted", 1, [], id="owner_deleted-list"),
    pytest.param("cart_opened", 1, {"cart_id": 5, "owner_id": None, "currency": "EUR"}, id="id"),
    pytest.param("saved_items_carried_in", 1, {"from_cart_id": "c", "lines": [5]}, id="lines"),
]

GARBAGE_V1 = [
    pytest.param(
        "line_added",
        1,
        {"line_id": 1, "sku": "S", "name": "N", "quantity": 1},
        id="line_added-v1-no-price",
    ),
    pytest.param(
        "line_added",
        1,
        None,
        id="line_added-v1-null",
    ),
    pytest.param(
        "line_added",
        1,
        "garbage",
        id="line_added-v1-string",
    ),
    pytest.param("line_added", 1, {**V1_LINE_ADDED, "price": "x"}, id="line_added-v1-bad-price"),
]


@pytest.mark.parametrize(("event_type", "schema", "data"), GARBAGE + GARBAGE_V1)
def test_a_garbage_payload_is_a_codec_error(event_type, schema, data):
    with pytest.raises(e.CodecError):
        e.decode_event(event_type, schema, data, AT)


def test_codec_error_is_a_value_error():
    assert issubclass(e.CodecError, ValueError)


# ---------------------------------------------------------------- state


def full_cart() -> d.Cart:
    return d.Cart(
        id="0b6f3c1e-9a40-4d5e-8f59-1d1e7a2b3c4d",
        version=17,
        status=d.MERGED,
        currency="EUR",
        owner_id=5,
        lines=(
            d.Line(1, "SKU-1", "Product 1", (), 3, Decimal("3.50")),
            d.Line(4, "SKU-2", "Ünïcode", (("color", "red"), ("size", "M")), 1, Decimal("0.10")),
        ),
        discount=d.Discount("TEN", "percent", Decimal("10.00")),
        next_line_id=5,
        created_at=AT,
        updated_at=AT + timedelta(hours=1, microseconds=5),
        merged_into="cart-2",
    )


def empty_cart() -> d.Cart:
    return d.Cart(
        id="c",
        version=1,
        status=d.OPEN,
        currency="USD",
        owner_id=None,
        lines=(),
        discount=None,
        next_line_id=1,
        created_at=AT,
        updated_at=AT,
    )


@pytest.mark.parametrize("cart", [full_cart(), empty_cart()], ids=["full", "empty"])
def test_state_round_trip(cart):
    raw = e.dump_state(cart)
    assert isinstance(raw, bytes)
    loaded = e.load_state(raw, cart.id)
    assert loaded == cart
    assert e.load_state(raw.decode(), cart.id) == cart
    assert e.state_from_dict(e.state_to_dict(cart)) == cart
    # As a snapshot stores it: through a JSON column.
    assert e.state_from_dict(orjson.loads(orjson.dumps(e.state_to_dict(cart)))) == cart


def test_state_round_trip_keeps_types_and_digits():
    loaded = e.load_state(e.dump_state(full_cart()), full_cart().id)
    line = loaded.lines[1]
    assert type(line.options) is tuple and all(type(pair) is tuple for pair in line.options)
    assert str(line.unit_price) == "0.10" and str(loaded.discount.value) == "10.00"
    assert loaded.updated_at.utcoffset() == timedelta(0)
    assert loaded.total == full_cart().total


def test_state_keeps_a_non_utc_offset_instant():
    shifted = AT.astimezone(timezone(timedelta(hours=2)))
    cart = replace(empty_cart(), updated_at=shifted)
    assert e.load_state(e.dump_state(cart), cart.id).updated_at == AT


def test_an_entry_under_another_carts_key_is_a_codec_error():
    raw = e.state_to_dict(full_cart())
    with pytest.raises(e.CodecError, match="found under"):
        e.load_state(orjson.dumps(raw), "0b6f3c1e-0000-4d5e-8f59-1d1e7a2b3c4d")


def test_a_v2_state_still_loads():
    cart = full_cart()
    v2 = {**e.state_to_dict(cart), "s": 2, "ca": cart.created_at.isoformat()}
    v2["ua"] = cart.updated_at.isoformat()
    assert e.state_from_dict(v2) == cart


def test_state_is_compact_json():
    data = orjson.loads(e.dump_state(full_cart()))
    assert "id" not in data and type(data["ua"]) is int
    assert data["s"] == e.STATE_SCHEMA
    assert data["l"][0] == [1, "SKU-1", "Product 1", [], 3, "3.50"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"null",
        b"[]",
        b'"state"',
        b"42",
        b"{}",
        b'{"s": 2}',
        b'{"s": "1"}',
        b'{"s": 1}',
        b'{"s": 1, "id": "c"}',
    ],
)
def test_load_state_refuses_anything_but_a_current_state(raw):
    with pytest.raises(e.CodecError):
        e.load_state(raw, full_cart().id)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"l": [[1, "S", "N", [], 1]]}, id="short-line"),
        pytest.param({"l": [[1, "S", "N", [], 1, "abc"]]}, id="bad-price"),
        pytest.param({"l": [5]}, id="line-not-array"),
        pytest.param({"l": None}, id="lines-null"),
        pytest.param(
            {"dc": ["TEN", "percent"]},
            id="short-discount",
        ),
        pytest.param({"dc": ["TEN", "percent", "ten"]}, id="bad-discount"),
        pytest.param({"ca": "yesterday"}, id="bad-date"),
        pytest.param({"ua": None}, id="null-date"),
    ],
)
def test_a_malformed_state_is_a_codec_error(change):
    data = {**e.state_to_dict(full_cart()), **change}
    with pytest.raises(e.CodecError):
        e.state_from_dict(data)
    with pytest.raises(e.CodecError):
        e.load_state(orjson.dumps(data), full_cart().id)


def test_state_of_another_schema_is_a_codec_error():
    data = {**e.state_to_dict(full_cart()), "s": e.STATE_SCHEMA + 1}
    with pytest.raises(e.CodecError, match="schema"):
        e.load_state(orjson.dumps(data), full_cart().id)


# ---------------------------------------------------------------- never pickle

CALLS: list[str] = []


def _record_call(marker: str) -> str:
    CALLS.append(marker)
    return marker


class _Exploit:
    """Unpickling this calls _record_call: a stand-in for os.system."""

    def __reduce__(self):
        return (_record_call, ("pwned",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_load_state_refuses_a_pickle_and_never_runs_it(protocol):
    payload = pickle.dumps(_Exploit(), protocol=protocol)
    CALLS.clear()
    # The payload is live: a pickle loader would run it.
    assert pickle.loads(payload) == "pwned"
    assert CALLS == ["pwned"]
    CALLS.clear()
    with pytest.raises(e.CodecError):
        e.load_state(payload, full_cart().id)
    assert CALLS == []


def test_load_state_refuses_a_pickled_state():
    payload = pickle.dumps(full_cart())
    with pytest.raises(e.CodecError):
        e.load_state(payload, full_cart().id)


def test_load_state_refuses_a_pickle_that_would_reach_the_os():
    # A classic payload, never executed: loads would call os.system.
    class Shell:
        def __reduce__(self):
            return (os.system, ("exit 0",))

    with pytest.raises(e.CodecError):
        e.load_state(pickle.dumps(Shell()), full_cart().id)
