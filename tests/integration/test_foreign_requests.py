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


@pytest.mark.parametrize("mutation", sorted(FOREIGN_MUTATIONS))
@pytest.mark.parametrize("caller", ["another user", "a visitor"])
def test_a_foreign_mutation_leaves_lock_generation_and_cart_untouched(products, mutation, caller):
    from tests.factories import make_discount

    make_discount("TEN", "percent", "10")
    users = get_user_model().objects
    alice = users.create_user("alice-f")
    who = users.create_user("bob-f").pk if caller == "another user" else None
    cart = make_cart({"SKU-1": 1, "SKU-2": 1}, owner_id=alice.pk)
    cart = service.save_for_later(cart.id, 2)
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
