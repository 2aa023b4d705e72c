"""/metrics: the counters move as expected across hits, misses, rehydrations and sweeps."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest
from django.utils import timezone

from cartsvc import image, lifecycle, metrics, service
from tests.factories import make_cart
from tests.ops.conftest import Scrape, run_python

COUNTERS = [
    "cache_hits",
    "cache_misses",
    "write_conflicts",
    "write_retries",
    "passivations",
    "expirations",
    "redis_errors",
    "bad_entries",
    "lease_grants",
    "idempotent_replays",
]


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after(name, **labels) - before(name, **labels)


def test_every_series_is_exported_before_it_first_moves(scrape):
    found = scrape()
    for name in COUNTERS:
        assert found.types[f"cartimage_{name}"] == "counter"
        assert found(f"cartimage_{name}_total") >= 0
    for source in ("rows", "events"):
        assert found("cartimage_rehydrations_total", source=source) >= 0
        assert found("cartimage_rehydrate_seconds_count", source=source) >= 0
        assert found("cartimage_rehydrate_seconds_bucket", source=source, le="+Inf") >= 0
    assert found.types["cartimage_rehydrate_seconds"] == "histogram"
    assert found.types["cartimage_carts_in_memory"] == "gauge"
    assert "_created" not in found.text


@pytest.mark.django_db
def test_a_hit_a_miss_a_rehydration_and_a_passivation(products, scrape, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "IDLE_TIMEOUT": 60}
    cart = make_cart({"SKU-1": 2})
    start = scrape()
    assert start("cartimage_carts_in_memory") == 1

    service.get_cart(cart.id)  # a hit: the write published the cart
    hit = scrape()
    assert moved(start, hit, "cartimage_cache_hits_total") == 1
    assert moved(start, hit, "cartimage_cache_misses_total") == 0

    assert image.evict(cart.id)
    assert scrape()("cartimage_carts_in_memory") == 0
    assert service.get_cart(cart.id) == cart  # a miss, rehydrated from the rows
    miss = scrape()
    assert moved(hit, miss, "cartimage_cache_hits_total") == 0
    assert moved(hit, miss, "cartimage_cache_misses_total") == 1
    assert moved(hit, miss, "cartimage_rehydrations_total", source="rows") == 1
    assert moved(hit, miss, "cartimage_rehydrations_total", source="events") == 0
    assert moved(hit, miss, "cartimage_rehydrate_seconds_count", source="rows") == 1
    assert moved(hit, miss, "cartimage_rehydrate_seconds_bucket", source="rows", le="+Inf") == 1
    assert moved(hit, miss, "cartimage_rehydrate_seconds_sum", source="rows") > 0
    assert miss("cartimage_carts_in_memory") == 1

    assert lifecycle.passivate_idle(later(61)) == (1, 1)
    passivated = scrape()
    assert moved(miss, passivated, "cartimage_passivations_total") == 1
    assert passivated("cartimage_carts_in_memory") == 0
    assert moved(miss, passivated, "cartimage_cache_hits_total") == 0

    # The in-process reading agrees with the scrapes (conftest reset it before the test).
    assert metrics.value("cache_hits") == 1
    assert metrics.value("cache_misses") == 1
    assert metrics.value("rehydrations", source="rows") == 1
    assert metrics.value("rehydrate_seconds", source="rows") == 1
    assert metrics.value("passivations") == 1


@pytest.mark.django_db
def test_the_source_label_follows_the_rehydration_setting(products, scrape, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "REHYDRATE_FROM": "events"}
    cart = make_cart({"SKU-1": 1, "SKU-2": 2})
    assert image.evict(cart.id)
    before = scrape()
    assert service.get_cart(cart.id) == cart
    after = scrape()
    assert moved(before, after, "cartimage_rehydrations_total", source="events") == 1
    assert moved(before, after, "cartimage_rehydrations_total", source="rows") == 0
    assert moved(before, after, "cartimage_rehydrate_seconds_count", source="events") == 1
    assert moved(before, after, "cartimage_rehydrate_seconds_count", source="rows") == 0


@pytest.mark.django_db
def test_an_expiration_is_counted_once(products, scrape, settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "ABANDON_AFTER": 3600}
    make_cart({"SKU-1": 1})
    image.clear()  # no read activity in memory
    before = scrape()
    assert lifecycle.expire_abandoned(later(3601)) == 1
    assert lifecycle.expire_abandoned(later(3601)) == 0
    assert moved(before, scrape(), "cartimage_expirations_total") == 1


@pytest.mark.django_db
def test_a_write_conflict_and_its_retry_are_counted(products, scrape, settings):
    # A second writer commits while the first holds the lock and is about to commit: the
    # first one's version check fails, and it decides again on the new version.
    settings.CARTIMAGE = {**settings.CARTIMAGE, "LOCK_WAIT": 0.05, "TRUST_LEASE": 0.05}
    cart = make_cart({"SKU-1": 1})
    interfered = []

    def interfere(**_):
        if not interfered:
            interfered.append(True)
            service.add_line(cart.id, "SKU-2", 1)

    image.HOOKS["before_commit"] = interfere
    before = scrape()
    after_write = service.add_line(cart.id, "SKU-3", 1)
    after = scrape()
    assert after_write.version == cart.version + 2
    assert {line.sku for line in after_write.lines} == {"SKU-1", "SKU-2", "SKU-3"}
    assert moved(before, after, "cartimage_write_conflicts_total") == 1
    assert moved(before, after, "cartimage_write_retries_total") == 1


@pytest.mark.django_db
def test_carts_in_memory_follows_the_cache(products, scrape):
    carts = [make_cart({"SKU-1": 1}) for _ in range(3)]
    assert scrape()("cartimage_carts_in_memory") == 3
    image.evict(carts[0].id)
    assert scrape()("cartimage_carts_in_memory") == 2
    image.clear()
    assert scrape()("cartimage_carts_in_memory") == 0


@pytest.mark.django_db
def test_a_redis_error_is_counted_and_the_gauge_goes_missing(products, scrape, own_redis):
    cart = make_cart({"SKU-1": 1})
    before = scrape()
    assert before("cartimage_carts_in_memory") == 1
    own_redis.kill()
    assert service.get_cart(cart.id) == cart  # from the database
    after = scrape()
    assert moved(before, after, "cartimage_redis_errors_total") >= 1
    assert after.get("cartimage_carts_in_memory") is None
    assert after.types["cartimage_carts_in_memory"] == "gauge"


def test_reset_restarts_value_but_the_exported_series_keep_counting(scrape):
    metrics.inc("bad_entries", 2)
    before = scrape()
    metrics.reset()
    assert metrics.value("bad_entries") == 0
    metrics.inc("bad_entries")
    assert metrics.value("bad_entries") == 1
    assert moved(before, scrape(), "cartimage_bad_entries_total") == 1
    assert before("cartimage_bad_entries_total") >= 2


def test_an_undeclared_name_is_exported_on_first_use(scrape):
    metrics.inc("ops_test_things", 3, kind="blue")
    metrics.observe("ops_test_seconds", 0.2)
    found = scrape()
    assert found("cartimage_ops_test_things_total", kind="blue") >= 3
    assert found("cartimage_ops_test_seconds_count") >= 1
    assert metrics.value("ops_test_things", kind="blue") == 3
    assert metrics.value("ops_test_seconds") == 1


def test_multiprocess_mode_sums_every_process(tmp_path):
    """Two 'workers' count in their own processes; a third one's scrape has both."""
    count = textwrap.dedent(
        """
        from cartsvc import metrics
        metrics.inc("cache_hits", 3)
        metrics.observe("rehydrate_seconds", 0.002, source="rows")
        print(metrics.value("cache_hits"))
        """
    )
    for _ in range(2):
        assert run_python(count, PROMETHEUS_MULTIPROC_DIR=str(tmp_path)).strip() == "3"
    serve = textwrap.dedent(
        """
        import sys, django
        django.setup()
        from django.test import Client
        response = Client().get("/metrics")
        assert response.status_code == 200, response.status_code
        sys.stdout.write(response.content.decode())
        """
    )
    found = Scrape(run_python(serve, PROMETHEUS_MULTIPROC_DIR=str(tmp_path)))
    assert found("cartimage_cache_hits_total") == 6
    assert found("cartimage_rehydrate_seconds_count", source="rows") == 2
    assert found("cartimage_rehydrate_seconds_bucket", source="rows", le="0.0025") == 2
    assert found("cartimage_rehydrations_total", source="rows") == 0
    assert found.get("cartimage_carts_in_memory") is not None


def test_a_registered_gauge_is_asked_at_each_scrape(scrape, monkeypatch):
    """The gauges come from callbacks their owners register (the image registers
    carts_in_memory), so metrics imports nothing of the app."""
    answers = iter([7, None])
    monkeypatch.setattr(metrics, "_gauges", dict(metrics._gauges))
    metrics.gauge("test_answers", "A test's gauge.", lambda: next(answers))
    first, second = scrape(), scrape()
    assert first("cartimage_test_answers") == 7
    assert second.get("cartimage_test_answers") is None
    assert second.types["cartimage_test_answers"] == "gauge"
    assert second.get("cartimage_carts_in_memory") is not None
