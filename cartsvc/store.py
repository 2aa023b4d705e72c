"""The database side: load a cart (rows or snapshot + events) and commit a command.

A commit is one transaction that appends the events, brings the rows to the new state and
moves the header's version from `before.version` to `after.version`; the version check in
the UPDATE is the fencing token, so a writer whose cache lock expired can never overwrite a
newer commit. On PostgreSQL a single-cart commit is one statement (data-modifying CTEs): one
round trip, its own transaction. Elsewhere it runs as a few statements inside one atomic block.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction

from cartsvc import domain as d
from cartsvc.conf import conf
from cartsvc.events import (
    STATE_SCHEMA,
    CodecError,
    decode_event,
    dump_state,
    encode_event,
    payload_from_parts,
    state_from_dict,
    state_to_dict,
)
from cartsvc.models import (
    Cart,
    CartCacheDirty,
    CartEvent,
    CartLine,
    CartSnapshot,
    IdempotencyKey,
    Subscription,
)

log = logging.getLogger("cartsvc.store")


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key: where it applies, the key, and a hash of the request."""

    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Change:
    """One cart's part of a commit."""

    before: d.Cart | None
    after: d.Cart
    events: list[d.Event]


class Conflict(Exception):
    """The header's version moved since `before` was read: reload and decide again."""


# ---------------------------------------------------------------- loading

_HEADER_FIELDS = (
    "status",
    "currency",
    "owner_id",
    "version",
    "next_line_id",
    "discount_code",
    "discount_kind",
    "discount_value",
    "merged_into",
    "created_at",
    "updated_at",
)


def _options(raw: Any) -> d.Options:
    return tuple((str(k), str(v)) for k, v in raw)


_LINE_FIELDS = (
    "line_rows__line_id",
    "line_rows__sku",
    "line_rows__name",
    "line_rows__options",
    "line_rows__quantity",
    "line_rows__unit_price",
    "line_rows__saved",
)


def _state_from_joined(cart_id: str, rows: list[tuple[Any, ...]]) -> d.Cart:
    """One cart from header columns joined with its line rows (header repeated per line)."""
    (status, currency, owner_id, version, next_line_id, dcode, dkind, dvalue, merged, ca, ua) = (
        rows[0][:11]
    )
    lines: list[d.Line] = []
    saved: list[d.Line] = []
    for row in rows:
        line_id, sku, name, opts, qty, price, is_saved = row[11:]
        if line_id is None:
            continue  # a cart without lines: the LEFT JOIN's single empty row
        if isinstance(opts, str):
            opts = orjson.loads(opts)
        (saved if is_saved else lines).append(
            d.Line(line_id, sku, name, _options(opts), qty, price)
        )
    return d.Cart(
        id=cart_id,
        version=version,
        status=status,
        currency=currency,
        owner_id=owner_id,
        lines=tuple(lines),
        saved=tuple(saved),
        discount=d.Discount(dcode, dkind, dvalue) if dcode else None,
        next_line_id=next_line_id,
        created_at=ca,
        updated_at=ua,
        merged_into=str(merged) if merged else None,
    )


def load_from_rows(cart_id: str) -> d.Cart | None:
    """Header and lines in ONE query (one snapshot of the database: never a header of one
    version with the lines of another), whatever the history length."""
    rows = list(
        Cart.objects.filter(id=cart_id)
        .order_by("line_rows__line_id")
        .values_list(*_HEADER_FIELDS, *_LINE_FIELDS)
    )
    if not rows:
        return None
    return _state_from_joined(str(cart_id), rows)


def _replay(cart: d.Cart | None, rows: Any) -> d.Cart | None:
    for _version, event_type, schema, data, recorded_at in rows:
        cart = d.apply(cart, decode_event(event_type, schema, data, recorded_at))
    return cart


def _event_rows(cart_id: str, after_version: int) -> Any:
    return (
        CartEvent.objects.filter(cart_id=cart_id, version__gt=after_version)
        .order_by("version")
        .values_list("version", "type", "schema", "data", "recorded_at")
    )


def load_from_events(cart_id: str, up_to: int | None = None) -> d.Cart | None:
    """Latest usable snapshot + the events after it: two queries; a snapshot that does not
    decode falls back to a full replay."""
    snapshots = CartSnapshot.objects.filter(cart_id=cart_id)
    if up_to is not None:
        snapshots = snapshots.filter(version__lte=up_to)
    snapshot = snapshots.order_by("-version").values_list("version", "schema", "state").first()
    cart: d.Cart | None = None
    if snapshot is not None:
        version, _schema, state = snapshot
        try:
            cart = state_from_dict(state)
        except CodecError as exc:
            log.warning(
                "snapshot %s v%s unusable (%s); replaying all events", cart_id, version, exc
            )
            cart = None
    rows = _event_rows(cart_id, cart.version if cart else 0)
    if up_to is not None:
        rows = rows.filter(version__lte=up_to)
    return _replay(cart, rows)


def load(cart_id: str, source: str | None = None) -> d.Cart | None:
    if (source or conf.REHYDRATE_FROM) == "events":
        return load_from_events(cart_id)
    return load_from_rows(cart_id)


def history(cart_id: str, after: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    rows = (
        CartEvent.objects.filter(cart_id=cart_id, version__gt=after)
        .order_by("version")
        .values_list("version", "type", "schema", "data", "command_id", "recorded_at")[:limit]
    )
    return [
        {
            "version": version,
            "type": event_type,
            "schema": schema,
            "data": data,
            "command_id": command_id,
            "at": recorded_at,
        }
        for version, event_type, schema, data, command_id, recorded_at in rows
    ]


def find_idempotent(idem: Idempotency) -> tuple[str, d.Cart] | None:
    """The answer recorded for this key: (fingerprint, cart state), or None. The state is
    the cart at the recorded version, rebuilt from its events."""
    row = (
        IdempotencyKey.objects.filter(scope=idem.scope, key=idem.key)
        .values_list("fingerprint", "cart_id", "version")
        .first()
    )
    if row is None:
        return None
    fingerprint, cart_id, version = row
    state = load_from_events(str(cart_id), up_to=version)
    if state is None or state.version != version:
        raise CodecError(f"the log of cart {cart_id} does not reach v{version}")
    return fingerprint, state


def carried_to(cart_id: str) -> str | None:
    """The cart this cart's checkout carried its saved-for-later items to, from its log."""
    data = (
        CartEvent.objects.filter(cart_id=cart_id, type=d.SavedItemsCarriedOut.type)
        .order_by("-version")
        .values_list("data", flat=True)
        .first()
    )
    return None if data is None else str(data["to_cart_id"])


def carts_of_owner(owner_id: int) -> list[str]:
    """Every cart the user owns, whatever its status."""
    ids = Cart.objects.filter(owner_id=owner_id).order_by("id").values_list("id", flat=True)
    return [str(cart_id) for cart_id in ids]


def find_open_cart(owner_id: int) -> str | None:
    """The user's most recently active open cart."""
    found = (
        Cart.objects.filter(owner_id=owner_id, status=d.OPEN)
        .order_by("-last_activity_at")
        .values_list("id", flat=True)
        .first()
    )
    return str(found) if found else None


# ---------------------------------------------------------------- dirty list


def dirty_marks() -> list[tuple[str, datetime]]:
    """Every mark (normally none or a few: carts written while the cache was unreachable).
    All of them: a reconcile that dropped only some entries and granted the lease would let
    the others be served."""
    rows = CartCacheDirty.objects.order_by("marked_at").values_list("cart_id", "marked_at")
    # A plain query, not .iterator(): a server-side cursor's close on a connection that was
    # terminated raises psycopg's own error, past Django's wrapping (a 500 in a chaos run).
    return [(str(cart_id), marked_at) for cart_id, marked_at in rows]


def clear_dirty(marks: list[tuple[str, datetime]]) -> None:
    """Delete exactly the marks that were seen: a mark renewed since then stays."""
    for cart_id, marked_at in marks:
        CartCacheDirty.objects.filter(cart_id=cart_id, marked_at=marked_at).delete()


# ---------------------------------------------------------------- committing


def _header_values(after: d.Cart, activity_at: datetime) -> dict[str, Any]:
    discount = after.discount
    return {
        "version": after.version,
        "status": after.status,
        "owner_id": after.owner_id,
        "next_line_id": after.next_line_id,
        "discount_code": discount.code if discount else "",
        "discount_kind": discount.kind if discount else "",
        "discount_value": discount.value if discount else None,
        "merged_into": after.merged_into,
        "updated_at": after.updated_at,
        "last_activity_at": activity_at,
    }


Row = tuple[d.Line, bool]  # a line and whether it is saved for later


def _rows(cart: d.Cart | None) -> dict[int, Row]:
    if cart is None:
        return {}
    rows = {line.id: (line, False) for line in cart.lines}
    rows.update((line.id, (line, True)) for line in cart.saved)
    return rows


def _line_diff(before: d.Cart | None, after: d.Cart) -> tuple[list[Row], list[Row], list[int]]:
    old, new = _rows(before), _rows(after)
    inserted = [row for lid, row in new.items() if lid not in old]
    updated = [row for lid, row in new.items() if lid in old and old[lid] != row]
    deleted = [lid for lid in old if lid not in new]
    return inserted, updated, deleted


def _snapshot_due(before: d.Cart | None, after: d.Cart) -> bool:
    every = conf.SNAPSHOT_EVERY
    return every > 0 and after.version // every > (before.version if before else 0) // every


def _event_values(
    change: Change, command_id: str | None
) -> list[tuple[int, str, int, dict[str, Any], str | None, datetime]]:
    first = change.after.version - len(change.events) + 1
    values = []
    for offset, event in enumerate(change.events):
        event_type, schema, data = encode_event(event)
        values.append((first + offset, event_type, schema, data, command_id, event.at))
    return values


def create(
    change: Change, command_id: str | None, dirty: bool, now: datetime, idem: Idempotency | None
) -> None:
    """Insert a new cart; IntegrityError if the id (or the idempotency key) exists."""
    with _commit_point() as point, transaction.atomic():
        _insert(change, command_id, dirty, now, idem)
        point.reached = True


def _insert(
    change: Change, command_id: str | None, dirty: bool, now: datetime, idem: Idempotency | None
) -> None:
    after = change.after
    Cart.objects.create(
        id=after.id,
        currency=after.currency,
        created_at=after.created_at,
        **_header_values(after, now),
    )
    _write_generic_children(change, command_id, dirty, now, idem)


class InDoubt(Exception):
    """The connection was lost while the transaction's commit was on its way: it may or may
    not have been applied. (Lost earlier, the transaction was rolled back: a plain
    OperationalError says so.)"""

    # The server process that ran the transaction, when known (to end it, see image).
    backend_pid: int | None = None


class _CommitPoint:
    reached = False


@contextlib.contextmanager
def _commit_point(single_statement: bool = False) -> Iterator[_CommitPoint]:
    """Tells a lost connection at the commit (in doubt) from one lost before it (nothing
    applied). A statement that commits on its own is its commit point. Inside the caller's
    transaction nothing commits here: its commit is the caller's."""
    point = _CommitPoint()
    point.reached = single_statement
    outermost = not connection.in_atomic_block
    remote = connection.vendor == "postgresql"  # SQLite answers its COMMIT in process
    backend = _backend_pid() if remote and outermost else None
    try:
        yield point
    except (OperationalError, InterfaceError) as exc:
        if point.reached and outermost and remote and not _server_said_no(exc):
            doubt = InDoubt(str(exc))
            doubt.backend_pid = backend
            raise doubt from exc
        raise


def _backend_pid() -> int | None:
    raw = getattr(connection, "connection", None)
    info = getattr(raw, "info", None)
    return getattr(info, "backend_pid", None)


def end_backend(pid: int | None, wait: float = 2.0) -> None:
    """Make sure the server session behind a lost connection is gone (terminated if it is
    still there), so that a commit it was still on its way to can not land later, behind
    the cache's back. On a fresh connection; bounded."""
    if pid is None:
        return
    import time

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone() is None:
                return
            time.sleep(0.01)


def _server_said_no(exc: Exception) -> bool:
    """The server answered the statement (or the COMMIT) with an error of its own (a SQLSTATE:
    terminated by an administrator, a timeout, a deadlock, ...): then it did not commit it; a
    backend that committed says so before it reacts to anything else. Only a connection that
    broke with no answer (reset, closed, timed out on our side) leaves the outcome unknown."""
    return getattr(exc.__cause__, "sqlstate", None) is not None


def commit(
    changes: list[Change],
    command_id: str | None,
    dirty: bool,
    now: datetime,
    idem: Idempotency | None = None,
    within: Callable[[], None] | None = None,
) -> None:
    """Apply every change or none; raise Conflict if any cart moved on. `within` runs in the
    same transaction first (a stock reservation); the idempotency key goes with the first
    cart's change. A change with no `before` inserts a new cart (one the command opens)."""
    try:
        if (
            len(changes) == 1
            and changes[0].before is not None
            and within is None
            and connection.vendor == "postgresql"
            and not connection.in_atomic_block
        ):
            with _commit_point(single_statement=True):
                committed = _commit_postgres(changes[0], command_id, dirty, now, idem)
            if not committed:
                raise Conflict(changes[0].after.id)
            return
        with _commit_point() as point, transaction.atomic():
            if within is not None:
                within()
            for n, change in enumerate(changes):
                key = idem if n == 0 else None
                if change.before is None:  # a cart the command opens beside the others
                    _insert(change, command_id, dirty, now, key)
                    continue
                if connection.vendor == "postgresql":
                    ok = _commit_postgres(change, command_id, dirty, now, key)
                else:
                    ok = _commit_generic(change, command_id, dirty, now, key)
                if not ok:
                    raise Conflict(change.after.id)
            point.reached = True  # what fails from here on is the COMMIT itself
    except IntegrityError as exc:
        # A concurrent lockless writer on (cart, version), or a duplicate idempotency key.
        raise Conflict(str(exc)) from exc


def _commit_generic(
    change: Change, command_id: str | None, dirty: bool, now: datetime, idem: Idempotency | None
) -> bool:
    assert change.before is not None
    updated = Cart.objects.filter(id=change.after.id, version=change.before.version).update(
        **_header_values(change.after, now)
    )
    if not updated:
        return False
    _write_generic_children(change, command_id, dirty, now, idem)
    return True


def _write_generic_children(
    change: Change, command_id: str | None, dirty: bool, now: datetime, idem: Idempotency | None
) -> None:
    cart_id = change.after.id
    CartEvent.objects.bulk_create(
        CartEvent(
            cart_id=cart_id,
            version=version,
            type=event_type,
            schema=schema,
            data=data,
            command_id=cmd,
            recorded_at=at,
        )
        for version, event_type, schema, data, cmd, at in _event_values(change, command_id)
    )
    inserted, updated, deleted = _line_diff(change.before, change.after)
    if inserted:
        CartLine.objects.bulk_create(_line_row(cart_id, line, saved) for line, saved in inserted)
    for line, saved in updated:
        CartLine.objects.filter(cart_id=cart_id, line_id=line.id).update(
            quantity=line.quantity, unit_price=line.unit_price, saved=saved
        )
    if deleted:
        CartLine.objects.filter(cart_id=cart_id, line_id__in=deleted).delete()
    if _snapshot_due(change.before, change.after):
        CartSnapshot.objects.create(
            cart_id=cart_id,
            version=change.after.version,
            schema=STATE_SCHEMA,
            state=state_to_dict(change.after),
            created_at=now,
        )
    if dirty:
        CartCacheDirty.objects.update_or_create(cart_id=cart_id, defaults={"marked_at": now})
    if idem is not None:
        IdempotencyKey.objects.create(
            scope=idem.scope,
            key=idem.key,
            fingerprint=idem.fingerprint,
            cart_id=cart_id,
            version=change.after.version,
            created_at=now,
        )


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _values(rows: list[tuple], casts: tuple[str, ...], params: list[Any]) -> str:
    """Render a VALUES list with typed placeholders, appending the parameters."""
    one = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    for row in rows:
        params.extend(row)
    return ", ".join([one] * len(rows))


def _commit_postgres(
    change: Change, command_id: str | None, dirty: bool, now: datetime, idem: Idempotency | None
) -> bool:
    assert change.before is not None
    after = change.after
    header = _header_values(after, now)
    params: list[Any] = [
        header["version"],
        header["status"],
        header["owner_id"],
        header["next_line_id"],
        header["discount_code"],
        header["discount_kind"],
        header["discount_value"],
        header["merged_into"],
        header["updated_at"],
        header["last_activity_at"],
        after.id,
        change.before.version,
    ]
    parts = [
        "WITH h AS (UPDATE cartsvc_cart SET version = %s, status = %s, owner_id = %s,"
        " next_line_id = %s,"
        " discount_code = %s, discount_kind = %s, discount_value = %s, merged_into = %s,"
        " updated_at = %s, last_activity_at = %s WHERE id = %s AND version = %s RETURNING id)"
    ]
    events = [
        (version, event_type, schema, _json(data), cmd, at)
        for version, event_type, schema, data, cmd, at in _event_values(change, command_id)
    ]
    parts.append(
        ", ev AS (INSERT INTO cartsvc_cartevent"
        " (cart_id, version, type, schema, data, command_id, recorded_at)"
        " SELECT h.id, x.* FROM h, (VALUES "
        + _values(events, ("int", "varchar", "smallint", "jsonb", "varchar", "timestamptz"), params)
        + ") AS x)"
    )
    inserted, updated, deleted = _line_diff(change.before, after)
    if inserted:
        rows = [
            (
                line.id,
                line.sku,
                line.name,
                _json([list(p) for p in line.options]),
                line.quantity,
                line.unit_price,
                saved,
            )
            for line, saved in inserted
        ]
        casts = ("int", "varchar", "varchar", "jsonb", "int", "numeric", "boolean")
        parts.append(
            ", ins AS (INSERT INTO cartsvc_cartline"
            " (cart_id, line_id, sku, name, options, quantity, unit_price, saved)"
            " SELECT h.id, x.* FROM h, (VALUES " + _values(rows, casts, params) + ") AS x)"
        )
    if updated:
        changed = [(line.id, line.quantity, line.unit_price, saved) for line, saved in updated]
        parts.append(
            ", upd AS (UPDATE cartsvc_cartline l SET quantity = x.q, unit_price = x.p,"
            " saved = x.s FROM h, (VALUES "
            + _values(changed, ("int", "int", "numeric", "boolean"), params)
            + ") AS x(lid, q, p, s) WHERE l.cart_id = h.id AND l.line_id = x.lid)"
        )
    if deleted:
        parts.append(
            ", del AS (DELETE FROM cartsvc_cartline l USING h"
            " WHERE l.cart_id = h.id AND l.line_id = ANY(%s))"
        )
        params.append(deleted)
    if _snapshot_due(change.before, after):
        parts.append(
            ", snap AS (INSERT INTO cartsvc_cartsnapshot (cart_id, version, schema, state,"
            " created_at) SELECT h.id, %s, %s, %s::jsonb, %s FROM h)"
        )
        params.extend([after.version, STATE_SCHEMA, _json(state_to_dict(after)), now])
    if dirty:
        parts.append(
            ", dirty AS (INSERT INTO cartsvc_cartcachedirty (cart_id, marked_at)"
            " SELECT h.id, %s FROM h ON CONFLICT (cart_id) DO UPDATE"
            " SET marked_at = EXCLUDED.marked_at)"
        )
        params.append(now)
    if idem is not None:
        parts.append(
            ", idem AS (INSERT INTO cartsvc_idempotencykey (scope, key, fingerprint, cart_id,"
            " version, created_at) SELECT %s, %s, %s, h.id, %s, %s FROM h)"
        )
        params.extend([idem.scope, idem.key, idem.fingerprint, after.version, now])
    parts.append(" SELECT count(*) FROM h")
    with connection.cursor() as cursor:
        cursor.execute("".join(parts), params)
        (count,) = cursor.fetchone()
    return count == 1


# ---------------------------------------------------------------- lifecycle


def fold_activity(seen_ms: dict[str, int]) -> int:
    """Move read activity recorded in memory into last_activity_at, never backwards.
    One statement for the whole batch."""
    if not seen_ms:
        return 0
    rows = [(cart_id, _from_ms(ms)) for cart_id, ms in seen_ms.items()]
    table = Cart._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            f"UPDATE {table} c SET last_activity_at = x.seen FROM (VALUES "
            + ", ".join(["(%s::uuid, %s::timestamptz)"] * len(rows))
            + ") AS x(id, seen) WHERE c.id = x.id AND c.last_activity_at < x.seen"
        )
        params = [value for row in rows for value in row]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
    updated = 0
    with transaction.atomic():
        for cart_id, seen in rows:
            updated += Cart.objects.filter(id=cart_id, last_activity_at__lt=seen).update(
                last_activity_at=seen
            )
    return updated


def _from_ms(ms: int) -> datetime:

    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def snapshot_versions(cart_ids: list[str]) -> dict[str, int]:
    """The latest snapshot version of each cart (carts without one are left out)."""
    from django.db.models import Max

    rows = (
        CartSnapshot.objects.filter(cart_id__in=cart_ids)
        .values("cart_id")
        .annotate(latest=Max("version"))
        .values_list("cart_id", "latest")
    )
    return {str(cart_id): latest for cart_id, latest in rows}


def write_snapshots(states: list[d.Cart], now: datetime) -> int:
    """Snapshot these states (already-present versions are skipped, so a sweep run twice
    writes each snapshot once)."""
    created = CartSnapshot.objects.bulk_create(
        [
            CartSnapshot(
                cart_id=state.id,
                version=state.version,
                schema=STATE_SCHEMA,
                state=state_to_dict(state),
                created_at=now,
            )
            for state in states
        ],
        ignore_conflicts=True,
    )
    return len(created)


def abandoned_candidates(idle_since: datetime, limit: int, after_id: str | None) -> list[str]:
    """Open carts untouched since `idle_since`, in id order, after `after_id` (keyset)."""
    rows = Cart.objects.filter(status=d.OPEN, last_activity_at__lt=idle_since)
    if after_id is not None:
        rows = rows.filter(id__gt=after_id)
    return [str(i) for i in rows.order_by("id").values_list("id", flat=True)[:limit]]


def purge_idempotency_keys(older_than: datetime) -> int:
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=older_than).delete()
    return deleted


# ---------------------------------------------------------------- bulk (warm, verify)

# One row per cart, in one statement (one snapshot): timestamps as epoch microseconds and
# the lines as one JSON text, so that no per-value Python loader runs (10x faster to load).
_BULK_SQL = (
    "SELECT c.id::text, c.status, c.currency, c.owner_id, c.version, c.next_line_id,"
    " c.discount_code, c.discount_kind, c.discount_value::text, c.merged_into::text,"
    " (extract(epoch FROM c.created_at) * 1000000)::int8,"
    " (extract(epoch FROM c.updated_at) * 1000000)::int8,"
    " coalesce((SELECT json_agg(json_build_array(l.line_id, l.sku, l.name, l.options,"
    " l.quantity, l.unit_price::text, l.saved) ORDER BY l.line_id)"
    " FROM cartsvc_cartline l WHERE l.cart_id = c.id), '[]'::json)::text"
    " FROM cartsvc_cart c WHERE c.id = ANY(%s::uuid[])"
)


def payloads_from_rows(cart_ids: list[str]) -> dict[str, tuple[int, bytes]]:
    """(version, cache payload) per cart, built straight from one bulk query without
    decoding into states: what warming needs, several times faster than load + dump."""
    if not cart_ids:
        return {}
    if connection.vendor != "postgresql":
        return {
            cart_id: (state.version, dump_state(state))
            for cart_id, state in load_many_from_rows(cart_ids).items()
        }
    with connection.cursor() as cursor:
        cursor.execute(_BULK_SQL, [cart_ids])
        rows = cursor.fetchall()
    found = {}
    for (
        cart_id,
        status,
        cur,
        owner,
        version,
        nxt,
        dcode,
        dkind,
        dvalue,
        merged,
        ca,
        ua,
        raw,
    ) in rows:
        lines: list[list[Any]] = []
        saved: list[list[Any]] = []
        for line in orjson.loads(raw):
            (saved if line.pop() else lines).append(line)
        found[cart_id] = (
            version,
            payload_from_parts(
                version=version,
                status=status,
                currency=cur,
                owner_id=owner,
                next_line_id=nxt,
                lines=lines,
                saved=saved,
                discount=[dcode, dkind, dvalue] if dcode else None,
                created_us=ca,
                updated_us=ua,
                merged_into=merged,
            ),
        )
    return found


def active_ids(since: datetime | None, after_id: str | None, limit: int) -> list[str]:
    """Carts active since `since`, in id order after `after_id` (keyset): one query."""
    rows = Cart.objects.all()
    if since is not None:
        rows = rows.filter(last_activity_at__gte=since)
    if after_id is not None:
        rows = rows.filter(id__gt=after_id)
    return [str(i) for i in rows.order_by("id").values_list("id", flat=True)[:limit]]


def load_many_from_rows(cart_ids: list[str]) -> dict[str, d.Cart]:
    """Many carts, headers joined with lines: one query for the whole batch (the portable
    path of payloads_from_rows; PostgreSQL builds the payloads without states)."""
    if not cart_ids:
        return {}
    rows = list(
        Cart.objects.filter(id__in=cart_ids)
        .order_by("id", "line_rows__line_id")
        .values_list("id", *_HEADER_FIELDS, *_LINE_FIELDS)
    )
    states: dict[str, d.Cart] = {}
    start = 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end][0] != rows[start][0]:
            cart_id = str(rows[start][0])
            states[cart_id] = _state_from_joined(cart_id, [row[1:] for row in rows[start:end]])
            start = end
    return states


def replay_all(cart_id: str) -> tuple[d.Cart | None, list[int]]:
    """The fold of every event (no snapshot), and the versions found in the log."""
    rows = list(_event_rows(cart_id, 0))
    return _replay(None, rows), [row[0] for row in rows]


def rebuild_rows(cart_id: str) -> d.Cart | None:
    """Repair: rewrite the cart's header and line rows from its event log, in one
    transaction. The log is the truth; nothing is appended to it."""
    cart, _versions = replay_all(cart_id)
    if cart is None:
        return None
    with transaction.atomic():
        Cart.objects.select_for_update().filter(id=cart_id).first()
        cart, _versions = replay_all(cart_id)
        assert cart is not None
        header = _header_values(cart, timezone_now())
        del header["last_activity_at"]
        Cart.objects.filter(id=cart_id).update(**header)
        CartLine.objects.filter(cart_id=cart_id).delete()
        _write_lines(cart_id, cart)
    return cart


def timezone_now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def _line_row(cart_id: str, line: d.Line, saved: bool) -> CartLine:
    return CartLine(
        cart_id=cart_id,
        line_id=line.id,
        sku=line.sku,
        name=line.name,
        options=[list(p) for p in line.options],
        quantity=line.quantity,
        unit_price=line.unit_price,
        saved=saved,
    )


def _write_lines(cart_id: str, cart: d.Cart) -> None:
    CartLine.objects.bulk_create(
        _line_row(cart_id, line, saved) for line, saved in _rows(cart).values()
    )


def all_cart_ids(after_id: str | None, limit: int) -> list[str]:
    rows = Cart.objects.all()
    if after_id is not None:
        rows = rows.filter(id__gt=after_id)
    return [str(i) for i in rows.order_by("id").values_list("id", flat=True)[:limit]]


def count_active(since: datetime | None) -> int:
    rows = Cart.objects.all()
    if since is not None:
        rows = rows.filter(last_activity_at__gte=since)
    return rows.count()


# ---------------------------------------------------------------- subscriptions
# The order and the horizon subscribers read in: see cartsvc.subscriptions and migration 0005.

# The columns by name, not *: a statement prepared on a long-lived connection keeps its
# result type, and a migration that adds a column would make `SELECT *` fail there once.
_EVENTS_AFTER = (
    "SELECT {columns} FROM cartsvc_cartevent WHERE (position, id) > (%s, %s){horizon}"
    " ORDER BY position, id LIMIT %s"
)
# The horizon: the oldest transaction still running in this database (or, if none, the next
# transaction id); no transaction can commit an event below it any more. Not
# pg_snapshot_xmin: that counts every database of the server, and a long transaction of
# another application would hold every subscription back. (pg_stat_activity gives the 32-bit
# id of each of this database's transactions; the snapshot's list, their 64-bit ids.)
_PG_HORIZON_VALUE = (
    "(SELECT COALESCE(MIN(x::text::bigint), MAX(pg_snapshot_xmax(s)::text::bigint))"
    " FROM pg_current_snapshot() AS s LEFT JOIN LATERAL pg_snapshot_xip(s) AS x"
    " ON mod(x::text::bigint, 4294967296) IN (SELECT backend_xid::text::bigint"
    " FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL))"
)


def _pg_horizon() -> int:
    """The horizon now, in statements of its own, before the events are read: the read's
    snapshot is then newer than anything the horizon took as finished (in one statement, a
    transaction that committed between the snapshot and the pg_stat_activity read was taken
    as finished but not seen: its events were skipped for good). pg_stat_activity is read
    afresh: PostgreSQL keeps what a transaction read of it until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(f"SELECT {_PG_HORIZON_VALUE}")
        return int(cursor.fetchone()[0])


def events_after(position: int, last_id: int, limit: int) -> list[CartEvent]:
    """Committed events after (position, last_id), in subscriber order, at most `limit`."""
    columns = ", ".join(field.column for field in CartEvent._meta.concrete_fields)
    if connection.vendor == "postgresql":
        horizon = _pg_horizon()
        sql = _EVENTS_AFTER.format(columns=columns, horizon=" AND position < %s")
        return list(CartEvent.objects.raw(sql, [position, last_id, horizon, limit]))
    sql = _EVENTS_AFTER.format(columns=columns, horizon="")
    return list(CartEvent.objects.raw(sql, [position, last_id, limit]))


def subscription_start(now_or_beginning: str) -> tuple[int, int]:
    """The checkpoint of a new subscription: before every event, or before what commits from
    now on."""
    if now_or_beginning == "beginning":
        return -1, 0
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            return _pg_horizon(), 0
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM cartsvc_cartevent")
        return 0, int(cursor.fetchone()[0])


def ensure_subscription(name: str, start: str, now: datetime) -> None:
    """Create the subscription's checkpoint if it has none (concurrent callers: one wins)."""
    if Subscription.objects.filter(name=name).exists():
        return
    position, last_id = subscription_start(start)
    Subscription.objects.bulk_create(
        [Subscription(name=name, position=position, last_id=last_id, created_at=now)],
        ignore_conflicts=True,
    )


def lock_subscription(name: str, wait: bool = False) -> Subscription | None:
    """In the caller's transaction: the subscription's row, locked until it ends; None when
    another drain holds it (two drains never hand out the same batch; with `wait`, wait for
    it) or it does not exist."""
    rows = Subscription.objects.select_for_update(skip_locked=not wait)
    return rows.filter(name=name).first()


def subscription_advanced(sub: Subscription, last: CartEvent, count: int, now: datetime) -> None:
    """The checkpoint moves past `last`; a failure streak ends."""
    sub.position, sub.last_id = last.position, last.id
    sub.delivered += count
    sub.delivered_at = now
    sub.failures, sub.failing_event_id, sub.retry_at, sub.last_error = 0, None, None, ""
    sub.save()


def subscription_failed(
    sub: Subscription, event_id: int, error: str, retry_at: datetime, stop: bool
) -> None:
    """The handler raised on `event_id`: retry after `retry_at`, or stop there."""
    sub.failures += 1
    sub.failing_event_id = event_id
    sub.last_error = error
    sub.retry_at = retry_at
    sub.stopped = stop
    sub.save()


def subscription_moved(name: str, position: int, last_id: int) -> bool:
    """Set the checkpoint (a reset), and run again: False when there is no such subscription."""
    return bool(
        Subscription.objects.filter(name=name).update(
            position=position,
            last_id=last_id,
            stopped=False,
            failures=0,
            failing_event_id=None,
            retry_at=None,
            last_error="",
        )
    )


def subscription_resumed(name: str) -> bool:
    """A stopped subscription runs again from the event it stopped at."""
    return bool(
        Subscription.objects.filter(name=name).update(stopped=False, retry_at=None, failures=0)
    )


def subscriptions() -> list[Subscription]:
    return list(Subscription.objects.order_by("name"))


BEHIND_COUNTED_UP_TO = 1_000_000


def events_behind(position: int, last_id: int) -> tuple[int, datetime | None]:
    """How many events a checkpoint is behind (at most BEHIND_COUNTED_UP_TO), and when the
    oldest of them was recorded."""
    behind = CartEvent.objects.raw(
        "SELECT id, recorded_at FROM cartsvc_cartevent WHERE (position, id) > (%s, %s)"
        " ORDER BY position, id LIMIT 1",
        [position, last_id],
    )
    oldest = next(iter(behind), None)
    if oldest is None:
        return 0, None
    with connection.cursor() as cursor:
        # Counted up to a cap: /metrics asks this every scrape, and a subscription replaying a
        # large log must not cost a full count each time.
        cursor.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM cartsvc_cartevent"
            " WHERE (position, id) > (%s, %s) LIMIT %s) AS behind",
            [position, last_id, BEHIND_COUNTED_UP_TO],
        )
        return int(cursor.fetchone()[0]), oldest.recorded_at
