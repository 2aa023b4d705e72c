"""Prepared statements on long-lived connections outlive a migration that adds a column."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from cartsvc import store
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


def other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's prepared statements")
def test_the_subscriptions_read_survives_a_column_added_by_another_process(products):
    """A deploy migrates while workers keep their connections: the events read, prepared on
    them, must go on (a `SELECT *` prepared before the column came would fail once)."""
    make_cart({"SKU-1": 1})
    threshold = connection.connection.prepare_threshold
    assert threshold is not None  # the settings prepare what runs often
    for _ in range(threshold + 2):
        assert store.events_after(-1, 0, 10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] > 0  # prepared on this connection
    with other_connection() as migrator:
        migrator.execute("ALTER TABLE cartsvc_cartevent ADD COLUMN zz_added integer")
        try:
            assert store.events_after(-1, 0, 10)
        finally:
            migrator.execute("ALTER TABLE cartsvc_cartevent DROP COLUMN zz_added")
