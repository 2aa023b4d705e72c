"""/healthz: database, cache and broker reported separately; 503 only without the database."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from django.conf import settings as django_settings

from tests.faults.conftest import free_port
from tests.ops.conftest import run_python

pytestmark = pytest.mark.django_db


def healthz(client) -> tuple[int, dict]:
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


def test_all_three_up(client, settings):
    settings.CELERY_BROKER_URL = django_settings.CACHES["default"].get(
        "LOCATION", "memory://"
    )  # a real Redis broker under `make test`
    status, body = healthz(client)
    assert status == 200
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True and body["database"]["state"] == "up"
    assert body["cache"]["ok"] is True and body["cache"]["state"] == "up"
    assert body["cache"]["carts_in_memory"] == 0
    assert body["broker"]["ok"] is True and body["broker"]["state"] == "up"
    assert isinstance(body["broker"]["transport"], str)
    for part in ("database", "cache", "broker"):
        assert body[part]["ms"] >= 0


def test_a_broker_not_configured_is_reported_as_such(client, settings):
    if hasattr(settings, "CELERY_BROKER_URL"):
        del settings.CELERY_BROKER_URL
    status, body = healthz(client)
    assert status == 200
    assert body["status"] == "ok"
    assert body["broker"] == {"ok": None, "state": "not configured"}


def test_a_broker_down_degrades_but_answers_200_quickly(client, settings):
    port = free_port()
    settings.CELERY_BROKER_URL = f"redis://:sekret@127.0.0.1:{port}/0"
    started = time.monotonic()
    status, body = healthz(client)
    assert time.monotonic() - started < 3
    assert status == 200
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False and body["broker"]["state"] == "down"
    assert body["broker"]["error"] == "OperationalError"
    assert "sekret" not in json.dumps(body) and str(port) not in json.dumps(body)


def test_the_cache_down_degrades_but_answers_200(client, settings, own_redis):
    settings.CELERY_BROKER_URL = "memory://"
    status, body = healthz(client)
    assert status == 200 and body["cache"]["ok"] is True
    own_redis.kill()
    started = time.monotonic()
    status, body = healthz(client)
    assert time.monotonic() - started < 2
    assert status == 200
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    assert body["cache"]["ok"] is False and body["cache"]["state"] == "down"
    assert body["broker"]["ok"] is True


def test_the_database_down_answers_503():
    """A real dead database: a fresh process whose DATABASE_URL points at a closed port."""
    code = textwrap.dedent(
        """
        import json, django
        django.setup()
        from django.test import Client
        response = Client().get("/healthz")
        print(json.dumps([response.status_code, response.json()]))
        """
    )
    dead = f"postgres://postgres@127.0.0.1:{free_port()}/cartimage_gone"
    status, body = json.loads(
        run_python(code, DATABASE_URL=dead, CELERY_BROKER_URL="memory://").splitlines()[-1]
    )
    assert status == 503
    assert body["status"] == "down"
    assert body["database"] == {"ok": False, "state": "down", "error": "OperationalError"}
    assert body["cache"]["ok"] is True
    assert body["broker"]["ok"] is True
