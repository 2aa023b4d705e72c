"""A request on a cart its caller may not see is refused before it touches the cart's lock."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from cartsvc import image, service
from tests.factories import make_cart

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("needs_redis")]

FOREIGN_MUTATIONS = {
    "add_line": lambda cart, who: service.add_line(cart.id, "SKU-1", 1, as_user=who),
    "remove_line": lambda cart, who: service.remove_line(cart.id, 1, as_user=who),
    "save_for_later": lambda cart, who: service.save_for_later(cart.id, 1, as_user=who),
    "move_to_cart": lambda cart, who: service.move_to_cart(cart.id, 2, as_user=who),
    "apply_discount": lambda cart, who: service.apply_discount(cart.id, "TEN", as_user=who),
    "remove_discount": lambda cart, who: service.remove_discount(cart.id, as_user=who),
    "set_quantity": lambda cart, who: service.set_quantity(cart.id, 1, 3, as_user=who),
    "checkout": lambda cart, who: service.checkout(cart.id, as_user=who),
}


def control_hash(cart_id: str) -> dict[bytes, bytes]:
    store = image.image_store()
    return store.client.hgetall(store.key(cart_id))


def alices_cart_and(caller: str) -> tuple[service.Cart, int | None]:
    """Alice's cart (a line, a saved item, the TEN code on sale) and the foreign caller's id."""
    from tests.factories import make_discount

    make_discount("TEN", "percent", "10")
    users = get_user_model().objects
    alice = users.create_user("alice")
    who = users.create_user("bob").pk if caller == "another user" else None
    cart = make_cart({"SKU-1": 1, "SKU-2": 1}, owner_id=alice.pk)
    return service.save_for_later(cart.id, 2), who


@pytest.mark.parametrize("mutation", sorted(FOREIGN_MUTATIONS))
@pytest.mark.parametrize("caller", ["another user", "a visitor"])
def test_a_foreign_mutation_leaves_lock_generation_and_cart_untouched(products, mutation, caller):
    cart, who = alices_cart_and(caller)
    before = service.get_cart(cart.id)  # in memory now
    hash_before = control_hash(cart.id)
    assert hash_before, "the cart is cached"
    with pytest.raises(service.NotFound):
        FOREIGN_MUTATIONS[mutation](cart, who)
    after = control_hash(cart.id)
    # The generation (g) and the writer lock (m, mx) are exactly as they were.
    for field in (b"g", b"m", b"mx", b"v"):
        assert after.get(field) == hash_before.get(field), field
    assert service.get_cart(cart.id) == before


@pytest.mark.parametrize("mutation", sorted(FOREIGN_MUTATIONS))
@pytest.mark.parametrize("caller", ["another user", "a visitor"])
def test_a_foreign_mutation_on_a_cart_not_in_memory_takes_no_lock(products, mutation, caller):
    """Nothing in memory to check against: the cart is read (and rehydrated) first, then
    refused; no writer lock was taken."""
    cart, who = alices_cart_and(caller)
    image.evict(cart.id)
    assert not control_hash(cart.id).get(b"v"), "not in memory"
    with pytest.raises(service.NotFound):
        FOREIGN_MUTATIONS[mutation](cart, who)
    after = control_hash(cart.id)
    assert b"m" not in after
    assert service.get_cart(cart.id) == cart


@pytest.mark.parametrize("caller", ["its owner", "a visitor"])
def test_a_closed_cart_refuses_every_caller_before_its_lock(products, caller):
    users = get_user_model().objects
    alice = users.create_user("alice-h")
    cart = make_cart({"SKU-1": 1}, owner_id=alice.pk)
    service.close_user_carts(alice.pk)
    service.get_cart(cart.id)  # in memory, closed
    hash_before = control_hash(cart.id)
    with pytest.raises(service.NotFound):
        service.add_line(cart.id, "SKU-1", 1, as_user=alice.pk if caller == "its owner" else None)
    after = control_hash(cart.id)
    for field in (b"g", b"m", b"mx", b"v"):
        assert after.get(field) == hash_before.get(field), field


def test_a_user_id_beyond_the_scripts_numbers_is_checked_by_a_read(products):
    """Lua's numbers are doubles: an id from 2**53 up is not given to the script; the service
    checks it on a read instead (one round trip more), with the same answers."""
    from cartsvc.backends.base import VIEWER_ID_LIMIT
    from tests.redis_spy import count_round_trips

    alice = get_user_model().objects.create_user("alice-i")
    owned = make_cart({"SKU-1": 1}, owner_id=alice.pk)
    anonymous = make_cart({"SKU-1": 1})
    for cart in (owned, anonymous):
        service.get_cart(cart.id)
    huge = VIEWER_ID_LIMIT + alice.pk
    with pytest.raises(service.NotFound):
        service.add_line(owned.id, "SKU-1", 1, as_user=huge)
    with count_round_trips() as trips:
        done = service.add_line(anonymous.id, "SKU-1", 1, as_user=huge)
    assert done.lines[0].quantity == 2
    assert trips.count == 3  # the read, the lock, the publish


def test_a_replayed_command_is_refused_once_the_cart_is_no_longer_the_callers(products):
    """An Idempotency-Key's recorded answer is replayed before the lock: the caller's right
    is checked against the cart as it is now (closed since), not as the answer recorded it."""
    alice = get_user_model().objects.create_user("alice-r")
    cart = make_cart({"SKU-1": 1}, owner_id=alice.pk)
    key = service.idempotency("alice", "add-1", {"sku": "SKU-1", "quantity": 1})
    done = service.add_line(cart.id, "SKU-1", 1, as_user=alice.pk, idempotency=key)
    assert service.add_line(cart.id, "SKU-1", 1, as_user=alice.pk, idempotency=key) == done
    service.close_user_carts(alice.pk)
    with pytest.raises(service.NotFound):
        service.add_line(cart.id, "SKU-1", 1, as_user=alice.pk, idempotency=key)
