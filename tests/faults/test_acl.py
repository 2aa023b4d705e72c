"""The README's example ACL user is enough for the image: every script runs, reads hit."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import redis

from cartsvc import image, metrics, operations, service
from tests.factories import make_cart
from tests.faults.conftest import OwnRedis

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_acl(prefix: str, password: str) -> list[str]:
    line = next(
        line.strip() for line in README.read_text().splitlines() if "user cartimage on" in line
    )
    line = line.replace("<password>", password).replace("<CART_KEY_PREFIX>", prefix)
    words = shlex.split(line)
    assert words[:2] == ["user", "cartimage"]
    return words[2:]


def test_the_readme_acl_runs_every_operation(products, settings):
    server = OwnRedis()
    server.start()
    try:
        prefix, password = settings.CARTIMAGE["KEY_PREFIX"], "s3cret-acl"
        admin = redis.Redis(port=server.port)
        admin.acl_setuser("cartimage", reset=True)  # then the README's rules, as given
        admin.execute_command("ACL", "SETUSER", "cartimage", *readme_acl(prefix, password))
        url = f"redis://cartimage:{password}@127.0.0.1:{server.port}/0"
        settings.CARTIMAGE = {**settings.CARTIMAGE, "BACKEND": "redis", "REDIS_URL": url}
        image._stores.clear()
        image.breaker.reset()

        cart = make_cart({"SKU-1": 1})
        assert service.get_cart(cart.id) == cart
        assert service.add_line(cart.id, "SKU-2", 1).version == cart.version + 1
        assert image.peek([cart.id])[cart.id].version == cart.version + 1
        assert image.in_memory([cart.id]) == {cart.id}
        assert operations.count_active() is not None
        assert image.evict(cart.id)
        assert metrics.value("redis_errors") == 0
        assert metrics.value("cache_hits") >= 1
        assert re.fullmatch(r"[0-9a-f]{40}", admin.info("replication")["master_replid"])
    finally:
        server.stop()
        image._stores.clear()
        image.breaker.reset()
