"""sweep_carts: one pass of passivation, abandonment and key purge; what the task runs."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from cartsvc import image, service
from cartsvc.models import CartEvent, CartSnapshot, IdempotencyKey
from cartsvc.service import Cart
from cartsvc.tasks import sweep_carts
from tests.clock import shift_clock
from tests.factories import make_cart

pytestmark = pytest.mark.django_db

SUMMARY = re.compile(
    r"passivated (\d+) \(snapshots (\d+)\), expired (\d+), "
    r"idempotency keys purged (\d+) in \d+\.\d\d s"
)


def run_command() -> tuple[int, ...]:
    out = io.StringIO()
    call_command("sweep_carts", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    match = SUMMARY.fullmatch(lines[0])
    assert match, lines[0]
    return tuple(int(n) for n in match.groups())


def run_task() -> tuple[int, ...]:
    result = sweep_carts.apply().get()
    return tuple(result[k] for k in ("passivated", "snapshots", "expired", "keys_purged"))


@pytest.fixture
def due(products, settings, monkeypatch) -> tuple[Cart, Cart]:
    """An abandoned cart with a 3-day-old Idempotency-Key, and an idle cart in memory."""
    settings.CARTIMAGE = {**settings.CARTIMAGE, "IDLE_TIMEOUT": 1, "ABANDON_AFTER": 600}
    shift_clock(monkeypatch, -3600)  # an hour ago: untouched for longer than ABANDON_AFTER
    abandoned = service.open_cart(idempotency=service.idempotency("open", "k-1", {"n": 1}))
    abandoned = service.add_line(abandoned.id, "SKU-1", 1)
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(days=3))
    image.clear()  # no read activity in memory
    shift_clock(monkeypatch, 0)
    idle = make_cart({"SKU-2": 1})
    # The sweeps run a minute on: the idle cart was idle for longer than IDLE_TIMEOUT, not
    # for ABANDON_AFTER.
    shift_clock(monkeypatch, 60)
    return abandoned, idle


@pytest.mark.parametrize("run", [run_command, run_task], ids=["command", "task"])
def test_the_command_and_the_task_do_the_same_work(due, run):
    abandoned, idle = due
    assert run() == (1, 1, 1, 1)
    assert idle.id not in image.peek([idle.id])
    assert CartSnapshot.objects.filter(cart_id=idle.id, version=idle.version).exists()
    assert service.get_cart(idle.id) == idle
    assert service.get_cart(abandoned.id).status == "expired"
    assert CartEvent.objects.filter(cart_id=abandoned.id, type="cart_expired").count() == 1
    assert not IdempotencyKey.objects.exists()


def test_running_it_again_finds_nothing_more_to_do(due):
    abandoned, _idle = due
    run_command()
    image.clear()
    assert run_command() == (0, 0, 0, 0)
    assert CartEvent.objects.filter(cart_id=abandoned.id, type="cart_expired").count() == 1


def test_on_an_empty_database_it_prints_the_summary_and_exits_0(db):
    assert run_command() == (0, 0, 0, 0)
