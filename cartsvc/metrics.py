"""Counters and timings of the image, exported in Prometheus text format by `/metrics`."""

# Callers use a small API that does not name Prometheus: inc(name, amount, **labels),
# observe(name, seconds, **labels); tests read value(name, **labels) since the last reset().
# Every name becomes `cartimage_<name>_total` (a counter) or `cartimage_<name>` (a histogram,
# for observe()). Names are declared in DECLARED for their help text and so that they are
# exported (at 0) before they first move; an undeclared name is registered on first use.
#
# The exported series never go down (Prometheus computes rates from them): reset() only
# moves the baseline that value() subtracts, in this process.
#
# Processes. Without PROMETHEUS_MULTIPROC_DIR each process counts in its own memory and
# /metrics shows the process that answers the scrape: right for `runserver` and for one
# gunicorn worker. With several gunicorn workers, set PROMETHEUS_MULTIPROC_DIR (in the
# environment, before Python starts: prometheus_client reads it at import) to an empty
# directory that is wiped at each start (e.g. in gunicorn's `on_starting` hook); each process
# then writes its counts to files there and a scrape sums them over every process that has
# written since the wipe, the exited ones included (so totals never go backwards). Caveats:
# value() and reset() still see this process only; the directory grows by a few files per
# process (worker recycling with max_requests adds more) until the next wipe; no
# `mark_process_dead` hook is needed because no gauge is kept in the files (carts_in_memory is
# asked of the cache at scrape time). Passivations and expirations are counted where the
# sweep runs, in the Celery worker: they reach the web's /metrics only if the worker shares
# the web's PROMETHEUS_MULTIPROC_DIR (same machine), otherwise they stay in the worker.

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "cartimage_"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Rehydrating from rows takes about a millisecond; a long event log replay, much longer.
REHYDRATE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
SOURCES = ("rows", "events")

# name -> (kind, help, label names, label values to export from the start)
DECLARED: dict[str, tuple[str, str, tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "cache_hits": ("counter", "Cart reads answered from memory.", (), ()),
    "cache_misses": ("counter", "Cart reads that found the cart cold and rehydrated it.", (), ()),
    "rehydrations": (
        "counter",
        "Carts loaded from the database into memory, by source (rows or events).",
        ("source",),
        tuple((s,) for s in SOURCES),
    ),
    "rehydrate_seconds": (
        "histogram",
        "Time to load a cold cart from the database, by source.",
        ("source",),
        tuple((s,) for s in SOURCES),
    ),
    "write_conflicts": (
        "counter",
        "Commands whose cart version moved before commit (each is retried).",
        (),
        (),
    ),
    "write_retries": ("counter", "Retries of commands after a write conflict.", (), ()),
    "passivations": ("counter", "Idle carts evicted from memory by the sweep.", (), ()),
    "expirations": ("counter", "Abandoned carts marked expired by the sweep.", (), ()),
    "redis_errors": (
        "counter",
        "Cache operations that failed (the database answered instead).",
        (),
        (),
    ),
    "bad_entries": ("counter", "Undecodable cache entries dropped.", (), ()),
    "lease_grants": (
        "counter",
        "Cache trust leases granted (after applying the dirty list).",
        (),
        (),
    ),
    "reconcile_timeouts": (
        "counter",
        "Times a caller gave up waiting for another process's reconcile (it used the database).",
        (),
        (),
    ),
    "database_errors": (
        "counter",
        "Commands and reads that lost their database connection, by outcome.",
        ("outcome",),
        (),
    ),
    "lock_waits": (
        "counter",
        "Times a writer found its cart locked by another and waited for the release.",
        (),
        (),
    ),
    "idempotent_replays": (
        "counter",
        "Mutations answered from a recorded Idempotency-Key.",
        (),
        (),
    ),
    "subscription_deliveries": (
        "counter",
        "Events handed to a subscription's handler (and checkpointed), by subscription.",
        ("subscription",),
        (),
    ),
    "subscription_failures": (
        "counter",
        "Times a subscription's handler raised (the event is retried, or the subscription "
        "stops), by subscription.",
        ("subscription",),
        (),
    ),
    "subscription_nudge_errors": (
        "counter",
        "Nudges to drain subscriptions the broker did not take (the periodic drain delivers).",
        (),
        (),
    ),
    "webhook_deliveries": (
        "counter",
        "Webhook POST attempts, by outcome (delivered, retried, failed).",
        ("outcome",),
        (("delivered",), ("retried",), ("failed",)),
    ),
}

_lock = threading.Lock()
_registry = CollectorRegistry(auto_describe=True)
_metrics: dict[str, tuple[str, Any]] = {}  # name -> (kind, prometheus metric)
_children: dict[Any, Any] = {}  # (name, *label items) -> labelled child, or name -> metric
_baseline: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}


def _register(name: str, kind: str, labelnames: tuple[str, ...]) -> Any:
    """The metric called `name`, created on first use (call with _lock held)."""
    found = _metrics.get(name)
    if found is not None:
        return found[1]
    declared = DECLARED.get(name)
    if declared is not None:
        kind, help_text, labelnames, initial = declared
    else:
        help_text, initial = f"{name} (undeclared in cartsvc.metrics)", ()
    if kind == "histogram":
        metric: Any = Histogram(
            PREFIX + name,
            help_text,
            labelnames,
            registry=_registry,
            buckets=REHYDRATE_BUCKETS if name == "rehydrate_seconds" else Histogram.DEFAULT_BUCKETS,
        )
    else:
        metric = Counter(PREFIX + name, help_text, labelnames, registry=_registry)
    for values in initial:
        metric.labels(*values)
    _metrics[name] = (kind, metric)
    return metric


def _child(name: str, kind: str, labels: dict[str, str]) -> Any:
    key: Any = (name, *labels.items()) if labels else name
    with _lock:
        metric = _register(name, kind, tuple(sorted(labels)))
        child = metric.labels(**labels) if labels else metric
        _children[key] = child
    return child


with _lock:
    for _name, (_kind, *_rest) in DECLARED.items():
        _register(_name, _kind, ())


def inc(name: str, amount: int = 1, **labels: str) -> None:
    """Count `amount` occurrences of `name`."""
    child = _children.get((name, *labels.items()) if labels else name)
    if child is None:
        child = _child(name, "counter", labels)
    child.inc(amount)


def observe(name: str, seconds: float, **labels: str) -> None:
    """Record one duration of `name` (a histogram)."""
    child = _children.get((name, *labels.items()) if labels else name)
    if child is None:
        child = _child(name, "histogram", labels)
    child.observe(seconds)


def _sample_name(name: str) -> str:
    found = _metrics.get(name)
    kind = found[0] if found else DECLARED.get(name, ("counter",))[0]
    return PREFIX + name + ("_count" if kind == "histogram" else "_total")


def value(name: str, **labels: str) -> int:
    """This process's count of `name` since the last reset() (a histogram: observations)."""
    sample = _sample_name(name)
    now = _registry.get_sample_value(sample, labels) or 0.0
    return int(now - _baseline.get((sample, tuple(sorted(labels.items()))), 0.0))


def reset() -> None:
    """Start value() from zero again (tests); the exported series keep counting."""
    snapshot = {}
    for family in _registry.collect():
        for sample in family.samples:
            snapshot[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    global _baseline
    _baseline = snapshot


# Gauges asked at each scrape: name -> (help, what gives the value now: None for no sample).
# The module that can answer registers its gauge (the image: carts_in_memory), so this
# module imports nothing of the app and everything may import it.
GaugeValue = float | dict[str, float] | None
_gauges: dict[str, tuple[str, Callable[[], GaugeValue], str | None]] = {}


def gauge(
    name: str, help_text: str, read: Callable[[], GaugeValue], label: str | None = None
) -> None:
    """Export `cartimage_<name>`, a gauge whose value `read()` gives at each scrape (no
    sample when it returns None; with `label`, one sample per key of the dict it returns).
    Registering a name again replaces it."""
    _gauges[name] = (help_text, read, label)


def _gauge(name: str) -> Metric:
    help_text, read, label = _gauges[name]
    family = GaugeMetricFamily(PREFIX + name, help_text, labels=[label] if label else None)
    value = read()
    if isinstance(value, dict):
        for key, each in sorted(value.items()):
            family.add_metric([key], each)
    elif value is not None:
        family.add_metric([], value)
    return family


class _Scrape(Collector):
    """What one scrape exports: the counters (of every process in multiprocess mode) and the
    gauges asked of the cache now."""

    def __init__(self, counters: Any) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        for family in self.counters.collect():
            # `_created` series (a timestamp per counter) only add noise here.
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
        for name in sorted(_gauges):
            yield _gauge(name)


def exposition() -> tuple[bytes, str]:
    """The /metrics body and its content type (Prometheus text format 0.0.4)."""
    if MULTIPROCESS:
        from prometheus_client.multiprocess import MultiProcessCollector

        counters: Any = MultiProcessCollector(None)
    else:
        counters = _registry
    return generate_latest(_Scrape(counters)), CONTENT_TYPE
