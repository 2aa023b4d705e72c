"""The schema the migrations build: every model change has its migration, and the tables every
command writes carry no index that only costs writes."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db


def test_every_model_change_has_its_migration():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # SystemExit(1) if not
    assert "No changes detected" in out.getvalue()


@pytest.mark.parametrize(
    ("table", "column", "served_by"),
    [
        ("cartsvc_cart", "status", ["status", "last_activity_at"]),
        ("cartsvc_cartline", "cart_id", ["cart_id", "line_id"]),
        ("cartsvc_cartline", "sku", None),  # nothing looks lines up by sku
        ("cartsvc_cartevent", "cart_id", ["cart_id", "version"]),
        ("cartsvc_cartsnapshot", "cart_id", ["cart_id", "version"]),
    ],
)
def test_no_index_of_one_column_that_another_index_serves(table, column, served_by):
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    alone = [
        name
        for name, info in found.items()
        if info["index"] and not info["unique"] and info["columns"] == [column]
    ]
    assert alone == []
    if served_by is not None:
        assert any(
            info["columns"] == served_by
            for info in found.values()
            if info["index"] or info["unique"]
        )
