"""API test helpers: JSON calls through Django's test client, carts, users."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from cartsvc import service
from tests.factories import logged_in, make_cart, make_discount, make_products

API = "/api/v1"
JSON = "application/json"


def call(
    client: Client,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    content_type: str | None = JSON,
    headers: dict[str, str] | None = None,
) -> Any:
    """One request: `body` is sent as JSON, `raw` as is; `content_type=None` sends none."""
    data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
    extra: dict[str, Any] = {}
    if content_type is not None:
        extra["CONTENT_TYPE"] = content_type
    return client.generic(
        method,
        path if path.startswith("/") else f"{API}/{path}",
        data,
        content_type=content_type or "",
        headers=headers or {},
        **extra,
    )


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == JSON, response.content
    body = orjson.loads(response.content)
    assert set(body) == {"error"}, body
    assert set(body["error"]) <= {"code", "message", "field"}, body
    assert body["error"]["message"], body
    return body["error"]


def version_of(cart_id: str) -> int:
    return service.get_cart(cart_id).version


def events_of(cart_id: str) -> int:
    return len(service.history(cart_id, limit=10_000))


@pytest.fixture
def catalog(db):
    products = make_products(5)
    make_discount("TEN", "percent", "10")
    make_discount("FIVER", "fixed", "5", min_subtotal="50")
    make_discount("OLD", "percent", "50", active=False)
    return products


@pytest.fixture
def cart(catalog) -> service.Cart:
    """An open anonymous cart at version 3: SKU-1 x2 (line 1), SKU-2 x1 (line 2)."""
    return make_cart({"SKU-1": 2, "SKU-2": 1})


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice")  # no password: force_login, no hashing


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob")


@pytest.fixture
def as_alice(alice) -> Client:
    return logged_in(alice)


@pytest.fixture
def as_bob(bob) -> Client:
    return logged_in(bob)
