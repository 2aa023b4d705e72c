"""Rows = events = memory: find every cart where they disagree (guarantee 6), in words."""

from __future__ import annotations

from dataclasses import dataclass

from cartsvc import image, store
from cartsvc.compare import in_words
from cartsvc.domain import Cart

REBUILD = "rebuild the rows from the log (the admin's “Rebuild rows from the event log”)"
EVICT = "evict it from memory (the next read reloads it from the log)"


@dataclass(frozen=True)
class Mismatch:
    cart_id: str
    what: str  # "rows", "events", "snapshot", "memory" (and "id" for an unknown cart)
    detail: str  # a sentence for an operator: what disagrees, and what to do

    def __str__(self) -> str:
        return f"{self.cart_id}: {self.detail}"


def _differences(a: Cart, b: Cart, says: tuple[str, str]) -> str:
    found = in_words(a, b, says)
    if not found:  # equal as shown, yet unequal (e.g. a timestamp's microseconds)
        found = ["they differ in a field not shown here (compare them in the admin)"]
    return "; ".join(found)


def _rows(cart_id: str, rows: Cart | None, folded: Cart | None) -> Mismatch:
    if rows is None and folded is not None:
        detail = f"there are no rows, the event log is at version {folded.version}: {REBUILD}"
    elif folded is None and rows is not None:
        detail = (
            f"the rows say version {rows.version}, the event log has no events: restore the "
            "log from a backup (the rows can not rebuild it)"
        )
    else:
        assert rows is not None and folded is not None
        detail = f"{_differences(rows, folded, ('rows say', 'the event log says'))}: {REBUILD}"
    return Mismatch(cart_id, "rows", detail)


def _snapshot(cart_id: str, via: Cart | None, folded: Cart | None) -> Mismatch:
    if via is None or folded is None:
        told = "nothing" if via is None else f"version {via.version}"
        detail = f"the latest snapshot and the events after it give {told}"
    else:
        says = ("the latest snapshot and the events after it say", "the full event log says")
        detail = _differences(via, folded, says)
    return Mismatch(
        cart_id,
        "snapshot",
        f"{detail}: delete the cart's snapshots (they are only a shortcut; the log is the truth)",
    )


def verify_cart(cart_id: str) -> list[Mismatch]:
    """Check one cart: the log's versions are 1..n; rows equal the fold of the events;
    snapshot + replay equals the fold; a cached entry equals the fold at its version."""
    found: list[Mismatch] = []
    folded, versions = store.replay_all(cart_id)
    rows = store.load_from_rows(cart_id)
    if versions != list(range(1, len(versions) + 1)):
        shown = ", ".join(map(str, versions[:10])) + (", …" if len(versions) > 10 else "")
        found.append(
            Mismatch(
                cart_id,
                "events",
                f"the event log's versions skip or repeat (found {shown}; expected 1, 2, 3, …): "
                "the log is damaged; restore it from a backup",
            )
        )
    if rows != folded:
        found.append(_rows(cart_id, rows, folded))
    via_snapshot = store.load_from_events(cart_id)
    if via_snapshot != folded:
        found.append(_snapshot(cart_id, via_snapshot, folded))
    try:
        cached = image.peek([cart_id]).get(cart_id, False)
    except image.MemoryUnreachable:
        found.append(
            Mismatch(
                cart_id,
                "memory",
                "memory was not checked: the cache is unreachable; check it, then verify again",
            )
        )
        return found
    if cached is None:
        found.append(
            Mismatch(cart_id, "memory", f"the memory entry can not be read (corrupt): {EVICT}")
        )
    elif isinstance(cached, Cart) and folded is not None:  # False: not in memory
        found.extend(_memory(cart_id, cached, folded))
    return found


def _memory(cart_id: str, cached: Cart, folded: Cart) -> list[Mismatch]:
    """How the memory entry differs from the event log (nothing when it agrees)."""
    at = f"memory holds version {cached.version}"
    if cached.version > folded.version:
        return [
            Mismatch(
                cart_id,
                "memory",
                f"{at} but the event log ends at version {folded.version}: {EVICT}",
            )
        ]
    if cached != (expected := store.load_from_events(cart_id, up_to=cached.version)):
        if expected is None:
            told = f"{at}, the event log can not replay that version"
        else:
            says = ("memory says", f"the event log at version {cached.version} says")
            told = f"{at}, which differs from the log: {_differences(cached, expected, says)}"
        return [Mismatch(cart_id, "memory", f"{told}: {EVICT}")]
    if cached.version < folded.version and not image.write_in_flight(cart_id):
        return [
            Mismatch(
                cart_id,
                "memory",
                f"{at} but the event log is at version {folded.version}: {EVICT}",
            )
        ]
    return []
