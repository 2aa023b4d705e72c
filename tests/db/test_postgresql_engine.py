"""The PostgreSQL engine's health check: no round trip on a quiet connection, Django's own
`SELECT 1` when the socket has something to say, a fresh connection when the server closed it."""

from __future__ import annotations

import select
import time

import pytest
from django.db import connection, connections

from cartsvc.db.postgresql.base import DatabaseWrapper
from tests.faults.test_database_lost import admin, app_backends, terminate

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL engine")
    yield
    connection.close()


@pytest.fixture
def checks(monkeypatch) -> list[bool]:
    """Every `SELECT 1` health check Django runs, with its answer."""
    answers: list[bool] = []
    ask = DatabaseWrapper.is_usable

    def is_usable(self) -> bool:
        answers.append(ask(self))
        return answers[-1]

    monkeypatch.setattr(DatabaseWrapper, "is_usable", is_usable)
    return answers


def next_request() -> int:
    """What Django does between two requests on a persistent connection, then the first
    query of the next one; returns the backend's pid that answered it."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_readable(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not select.select([connection.connection.fileno()], [], [], 0)[0]:
        assert time.monotonic() < deadline, "the socket never became readable"
        time.sleep(0.01)


def test_the_project_runs_on_this_engine_with_health_checks():
    assert isinstance(connections["default"], DatabaseWrapper)
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    assert connection.settings_dict["CONN_MAX_AGE"] > 0


def test_a_quiet_connection_is_kept_without_a_round_trip(checks):
    first = next_request()
    assert next_request() == first
    assert next_request() == first
    assert checks == []


def test_a_connection_the_server_closed_is_replaced_before_the_request_uses_it(checks):
    first = next_request()
    with admin() as db:
        db.autocommit = True
        terminate(db, [first])
    wait_readable()  # the server's FATAL message and end of stream
    second = next_request()  # no error: the check found it dead and reconnected
    assert second != first
    assert checks == [False]
    with admin() as db:
        assert second in app_backends(db)


def test_unasked_data_on_a_live_connection_gets_djangos_own_check(checks):
    first = next_request()
    with connection.cursor() as cursor:
        cursor.execute("LISTEN cartimage_health_test")
    with admin() as db:
        db.autocommit = True
        db.execute("NOTIFY cartimage_health_test")
    wait_readable()
    assert next_request() == first  # SELECT 1 answered: the connection is kept
    assert checks == [True]


def test_a_connection_inside_a_transaction_is_checked_by_django(checks):
    first = next_request()
    connection.connection.execute("BEGIN")  # left open by something outside Django
    connection.health_check_done = False
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == first
    assert checks == [True]
    connection.connection.execute("ROLLBACK")
