"""Fixtures: books and a voucher in the host's own tables, a clean image per test."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from bookshop.models import Book, Voucher
from django_redis import get_redis_connection


@pytest.fixture(autouse=True)
def clean_image(settings):
    """The image's keys live under the host's own prefix in its own Redis db."""

    def clear() -> None:
        client = get_redis_connection(settings.CARTIMAGE["REDIS_ALIAS"])
        prefix = settings.CARTIMAGE["KEY_PREFIX"]
        with contextlib.suppress(Exception):
            keys = list(client.scan_iter(f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)

    clear()
    yield
    clear()


@pytest.fixture
def books(db):
    return [
        Book.objects.create(isbn="9780000000001", title="Dune", price=Decimal("9.99"), stock=5),
        Book.objects.create(isbn="9780000000002", title="Emma", price=Decimal("4.50"), stock=1),
        Book.objects.create(
            isbn="9780000000003", title="Ulysses", price=Decimal("12.00"), stock=3, active=False
        ),
    ]


@pytest.fixture
def voucher(db):
    return Voucher.objects.create(code="READ10", kind="percent", value=Decimal("10"))


@pytest.fixture
def reader(db, django_user_model):
    return django_user_model.objects.create_user(
        "reader", password="pages-and-pages", loyalty_number="L-1"
    )
