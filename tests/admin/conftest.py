"""Admin test helpers: a staff superuser's client, carts with history, page helpers."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client

from cartsvc import operations, service
from tests.factories import logged_in, make_cart, make_discount, make_products

CHANGELIST = "/admin/cartsvc/cart/"


def detail_url(cart_id: str) -> str:
    return f"{CHANGELIST}{cart_id}/change/"


def operate_url(cart_id: str, operation: str) -> str:
    return f"{CHANGELIST}{cart_id}/operate/{operation}/"


@pytest.fixture
def catalog(db):
    products = make_products(5)
    make_discount("TEN", "percent", "10")
    return products


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_superuser(
        "root", email="root@shop.example", password="root-pw-2026"
    )


@pytest.fixture
def staff_client(staff) -> Client:
    return logged_in(staff)


@pytest.fixture
def shopper(db):
    return get_user_model().objects.create_user(
        "carol", email="carol@customers.example", password="carol-pw-2026"
    )


@pytest.fixture
def cart(catalog, shopper) -> service.Cart:
    """Carol's cart: SKU-1 x2 (3.50), SKU-2 x1 (5.50), the TEN discount; warm in memory."""
    made = make_cart({"SKU-1": 2, "SKU-2": 1}, owner_id=shopper.id)
    service.apply_discount(made.id, "TEN")
    return operations.rehydrate_cart(made.id)


def listed(response) -> list[str]:
    """The cart ids on a changelist page, in order."""
    assert response.status_code == 200, response.status_code
    return [str(cart.pk) for cart in response.context["cl"].result_list]


def texts(response) -> list[str]:
    """The messages a response carries (its own, and those of a followed redirect)."""
    return [str(m) for m in get_messages(response.wsgi_request)]


def page_text(response) -> str:
    """The page's visible text, tags dropped and whitespace collapsed."""
    body = response.content.decode()
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def section(response, testid: str) -> str:
    """The HTML of the element with data-testid=`testid` (up to the next one of its kind)."""
    body = response.content.decode()
    start = body.index(f'data-testid="{testid}"')
    start = body.rindex("<", 0, start)
    tag = re.match(r"<(\w+)", body[start:]).group(1)
    depth, position = 0, start
    for found in re.finditer(rf"<(/?){tag}\b[^>]*>", body[start:]):
        depth += -1 if found.group(1) else 1
        if depth == 0:
            position = start + found.end()
            break
    return body[start:position]
