"""Rows = events = memory: find every cart where they disagree (guarantee 6)."""

from __future__ import annotations

from dataclasses import dataclass

from cartsvc import image, store


@dataclass(frozen=True)
class Mismatch:
    cart_id: str
    what: str  # "rows", "events", "snapshot", "memory"
    detail: str

    def __str__(self) -> str:
        return f"{self.cart_id}: {self.what}: {self.detail}"


def _describe(a: object, b: object) -> str:
    if a is None or b is None:
        return f"{a!r} vs {b!r}"
    fields = [f for f in a.__dataclass_fields__ if getattr(a, f) != getattr(b, f)]  # type: ignore[attr-defined]
    return "differs in " + ", ".join(
        f"{f} ({getattr(a, f)!r} vs {getattr(b, f)!r})" for f in fields
    )


def verify_cart(cart_id: str) -> list[Mismatch]:
    """Check one cart: the log's versions are 1..n; rows equal the fold of the events;
    snapshot + replay equals the fold; a cached entry equals the fold at its version."""
    found: list[Mismatch] = []
    folded, versions = store.replay_all(cart_id)
    rows = store.load_from_rows(cart_id)
    if versions != list(range(1, len(versions) + 1)):
        found.append(Mismatch(cart_id, "events", f"versions are not 1..n: {versions[:10]}..."))
    if rows != folded:
        found.append(Mismatch(cart_id, "rows", _describe(rows, folded)))
    via_snapshot = store.load_from_events(cart_id)
    if via_snapshot != folded:
        found.append(Mismatch(cart_id, "snapshot", _describe(via_snapshot, folded)))
    try:
        cached = image.peek([cart_id]).get(cart_id, False)
    except image.MemoryUnreachable:
        found.append(Mismatch(cart_id, "memory", "cache unreachable: not checked"))
        return found
    if cached is None:
        found.append(Mismatch(cart_id, "memory", "entry does not decode"))
    elif cached is not False and folded is not None:
        if cached.version > folded.version:
            found.append(
                Mismatch(cart_id, "memory", f"v{cached.version} is ahead of v{folded.version}")
            )
        elif cached != store.load_from_events(cart_id, up_to=cached.version):
            found.append(Mismatch(cart_id, "memory", f"v{cached.version} is not the fold"))
        elif cached.version < folded.version and not image.write_in_flight(cart_id):
            found.append(
                Mismatch(cart_id, "memory", f"v{cached.version} is behind v{folded.version}")
            )
    return found


def verify(cart_ids: list[str]) -> list[Mismatch]:
    found: list[Mismatch] = []
    for cart_id in cart_ids:
        found += verify_cart(cart_id)
    return found
