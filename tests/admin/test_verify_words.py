"""Verify's mismatches in an operator's words: what disagrees, named plainly, and what to do
(no Python reprs, no "fold"). The admin's messages and `verify_carts` print these."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cartsvc import image, operations, service
from cartsvc.events import dump_state
from cartsvc.models import Cart, CartLine, CartSnapshot
from cartsvc.verify import Mismatch
from tests.factories import make_cart


def found(cart_id: str) -> list[Mismatch]:
    return list(operations.verify_carts([cart_id]))


def plant(cart: service.Cart) -> None:
    """Put `cart` in memory as it is (behind the service's back)."""
    store = image.image_store()
    if not hasattr(store, "client"):
        pytest.skip("plants a Redis entry")
    store.client.hset(store.key(cart.id), "v", cart.version)
    store.client.set(store.data_key(cart.id), dump_state(cart))


def test_a_row_quantity_names_the_line_both_values_and_the_repair(catalog):
    cart = make_cart({"SKU-1": 1, "SKU-2": 5})
    CartLine.objects.filter(cart_id=cart.id, line_id=2).update(quantity=3)
    (mismatch,) = found(cart.id)
    assert (mismatch.cart_id, mismatch.what) == (cart.id, "rows")
    assert str(mismatch) == (
        f"{cart.id}: rows say quantity 3 for line 2 (Product SKU-2, SKU-2), the event log says "
        "5: rebuild the rows from the log (the admin's “Rebuild rows from the event log”)"
    )


def test_a_missing_row_and_a_header_field(catalog):
    cart = make_cart({"SKU-1": 1, "SKU-2": 1})
    CartLine.objects.filter(cart_id=cart.id, line_id=2).delete()
    Cart.objects.filter(id=cart.id).update(status="expired")
    (mismatch,) = found(cart.id)
    assert mismatch.detail.startswith(
        "rows say there is no line 2 (Product SKU-2, SKU-2), the event log says there is; "
        "rows say status Expired, the event log says Open: rebuild the rows"
    )


def test_memory_behind_the_log(catalog):
    first = make_cart({"SKU-1": 1})
    service.add_line(first.id, "SKU-2", 1)
    plant(first)
    (mismatch,) = found(first.id)
    assert (mismatch.what, mismatch.detail) == (
        "memory",
        f"memory holds version {first.version} but the event log is at version "
        f"{first.version + 1}: evict it from memory (the next read reloads it from the log)",
    )


def test_memory_that_differs_from_the_log_at_its_version(catalog):
    cart = make_cart({"SKU-1": 2})
    line = replace(cart.lines[0], quantity=9)
    plant(replace(cart, lines=(line,)))
    (mismatch,) = found(cart.id)
    assert mismatch.what == "memory"
    assert mismatch.detail == (
        f"memory holds version {cart.version}, which differs from the log: memory says "
        f"quantity 9 for line 1 (Product SKU-1, SKU-1), the event log at version {cart.version} "
        "says 2: evict it from memory (the next read reloads it from the log)"
    )


def test_a_bad_snapshot_says_to_delete_snapshots(catalog, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "SNAPSHOT_EVERY": 2}
    cart = make_cart({"SKU-1": 1, "SKU-2": 1, "SKU-3": 1})
    snapshot = CartSnapshot.objects.filter(cart_id=cart.id).order_by("-version").first()
    assert snapshot is not None
    snapshot.state = {**snapshot.state, "st": "expired"}
    snapshot.save()
    kinds = {m.what: m.detail for m in found(cart.id)}
    assert "snapshot" in kinds, kinds
    assert kinds["snapshot"].endswith(
        "delete the cart's snapshots (they are only a shortcut; the log is the truth)"
    )


def test_no_message_carries_a_repr_or_jargon(catalog):
    cart = make_cart({"SKU-1": 2})
    CartLine.objects.filter(cart_id=cart.id).update(quantity=4)
    Cart.objects.filter(id=cart.id).update(status="expired")
    plant(replace(cart, version=cart.version + 2))
    for mismatch in found(cart.id):
        for word in ("fold", "Decimal(", "Line(", "datetime", "v3", "=", "vs"):
            assert word not in mismatch.detail, (word, mismatch.detail)
