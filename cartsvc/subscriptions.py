"""Subscriptions: named handlers fed every cart event, in order, from durable checkpoints.

Order and gaps. Every event has a position (migration 0005): on PostgreSQL the inserting
transaction's id, or the cart's previous event's position if that is higher. A drain reads
events after its checkpoint by (position, id), and only below `pg_snapshot_xmin`, the oldest
transaction still running: every event that can still commit will have a position at or
above it, so reading by position never skips an event that a slow transaction commits late
(the trap of `id > last_seen`). The "previous event's position" part keeps each cart's events
in version order, even when a transaction that started earlier writes the later version.
On SQLite writers commit one at a time, so the id order is the commit order.

Delivery. At least once, in batches, each cart's events in version order. The handler runs in
the drain's own transaction, the one that moves the checkpoint and holds the subscription's
row lock (so two drains never hand out the same batch): what a handler writes to the database
commits exactly once with the checkpoint. A handler that raises is given the batch's events
one at a time, so the events before the failing one are delivered; the failing one is retried
with backoff, and after `SUBSCRIPTION_MAX_FAILURES` the subscription stops there, logged,
counted and shown (`manage.py cart_subscriptions`, /healthz), until `resume`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from celery import current_app
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from cartsvc import metrics, store
from cartsvc.conf import conf
from cartsvc.domain import InvalidInput

log = logging.getLogger("cartsvc.subscriptions")


BATCH = 200
DRAIN_TASK = "cartsvc.tasks.drain_subscriptions"
# A handler that keeps failing is tried again after 2, 4, 8, ... seconds, at most this.
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class Delivered:
    """One event as a subscriber gets it."""

    id: int
    position: int
    cart_id: str
    version: int
    type: str
    schema: int
    data: dict[str, Any]
    command_id: str | None
    recorded_at: datetime

    @classmethod
    def of(cls, row: Any) -> Delivered:
        """From a `store.events_after` row (a CartEvent)."""
        return cls(
            id=row.id,
            position=row.position,
            cart_id=str(row.cart_id),
            version=row.version,
            type=row.type,
            schema=row.schema,
            data=row.data,
            command_id=row.command_id,
            recorded_at=row.recorded_at,
        )


Handler = Callable[[list[Delivered]], None]


@dataclass(frozen=True)
class Subscriber:
    name: str
    handler: str  # dotted path
    start: str  # "beginning" or "now": where a new subscription's checkpoint starts
    # Hand the events one at a time (each in a savepoint of its own, the checkpoint moving
    # past each), for a handler whose effects are outside the database: a failure then runs
    # nothing again that already ran (an e-mail sent is not rolled back).
    one_at_a_time: bool = False


# The app's own subscribers, always on. Their checkpoints are made when the app's tables are
# migrated (`create_builtin`), so an upgraded shop does not get its history announced.
# The demand read model starts from the beginning: it is the whole log's fold. Webhooks start
# from now (an endpoint gets the events recorded after it was made, in any case).
BUILTIN = (
    Subscriber("cartsvc.abandoned", "cartsvc.lifecycle.announce_abandoned", "now", True),
    Subscriber("cartsvc.demand", "cartsvc.demand.handle", "beginning"),
    Subscriber("cartsvc.webhooks", "cartsvc.webhooks.handle", "now"),
)


def create_builtin(using: str = "default", **kwargs: Any) -> None:
    """post_migrate: the built-in subscriptions' checkpoints, if they have none yet (not
    before their table exists: a migration back to before it, or an upgrade on its way)."""
    if "cartsvc_subscription" not in connections[using].introspection.table_names():
        return
    for subscriber in BUILTIN:
        store.ensure_subscription(subscriber.name, subscriber.start, timezone.now())


def subscribers() -> dict[str, Subscriber]:
    """Every subscriber: the built-in ones and `CARTIMAGE["SUBSCRIBERS"]` (name -> handler
    path, or name -> {"handler": path, "start": "beginning" | "now", "one_at_a_time": bool})."""
    found = {subscriber.name: subscriber for subscriber in BUILTIN}
    for name, value in (conf.SUBSCRIBERS or {}).items():
        if isinstance(value, str):
            found[name] = Subscriber(name, value, "beginning")
        else:
            found[name] = Subscriber(
                name,
                value["handler"],
                value.get("start", "beginning"),
                bool(value.get("one_at_a_time", False)),
            )
    return found


@cache
def _handler(path: str) -> Handler:
    handler: Handler = import_string(path)
    return handler


def _subscriber(name: str) -> Subscriber:
    found = subscribers().get(name)
    if found is None:
        raise InvalidInput(f"no subscription named {name!r}")
    return found


# ---------------------------------------------------------------- draining


def drain(
    name: str | None = None,
    budget: float = 5.0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Deliver what is pending to one subscription (or to each), batch after batch, until it
    is caught up, busy in another drain, stopped, waiting to retry, or `budget` seconds have
    passed. Returns the events delivered per subscription (`progress(n)` after each batch)."""
    deadline = time.monotonic() + budget
    names = [name] if name is not None else list(subscribers())
    delivered = {}
    for each in names:
        subscriber = _subscriber(each)
        store.ensure_subscription(each, subscriber.start, timezone.now())
        total = 0
        while time.monotonic() < deadline:
            try:
                count = _one_batch(subscriber)
            except DatabaseError as exc:
                # The batch's transaction is gone (the connection lost, or a handler that
                # outlived idle_in_transaction_session_timeout): counted against its first
                # event on a fresh connection, and the next subscription goes on.
                _batch_lost(subscriber, exc)
                break
            if count <= 0:
                break
            total += count
            if progress is not None:
                progress(count)
        delivered[each] = total
    return delivered


def _batch_lost(subscriber: Subscriber, exc: DatabaseError) -> None:
    log.error("subscription %s: its batch's transaction was lost: %s", subscriber.name, exc)
    connection.close()
    try:
        with transaction.atomic():
            sub = store.lock_subscription(subscriber.name, wait=True)
            rows = store.events_after(sub.position, sub.last_id, 1) if sub else []
            if sub is not None and rows:
                error = f"the batch's database transaction was lost: {exc}"
                _record_failure(subscriber.name, sub, Delivered.of(rows[0]), error, timezone.now())
    except DatabaseError as again:
        log.error("subscription %s: its failure could not be recorded: %s", subscriber.name, again)
        connection.close()


def _one_batch(subscriber: Subscriber) -> int:
    """One batch in one transaction: the events delivered, 0 when there was nothing to do,
    -1 when the handler failed."""
    now = timezone.now()
    with transaction.atomic():
        sub = store.lock_subscription(subscriber.name)
        if sub is None or sub.stopped or (sub.retry_at is not None and sub.retry_at > now):
            return 0
        rows = store.events_after(sub.position, sub.last_id, BATCH)
        if not rows:
            return 0
        events = [Delivered.of(row) for row in rows]
        handler = _handler(subscriber.handler)
        if not subscriber.one_at_a_time and _failure(handler, events) is None:
            store.subscription_advanced(sub, rows[-1], len(rows), now)
            metrics.inc("subscription_deliveries", len(rows), subscription=subscriber.name)
            return len(rows)
        # One at a time: deliver those before the failing event, stop at it.
        done, failed = 0, False
        for row, event in zip(rows, events, strict=True):
            error = _failure(handler, [event])
            if error is None:
                store.subscription_advanced(sub, row, 1, now)
                done += 1
                continue
            _record_failure(subscriber.name, sub, event, error, now)
            failed = True
            break
        if done:
            metrics.inc("subscription_deliveries", done, subscription=subscriber.name)
        return -1 if failed else done


def _failure(handler: Handler, events: list[Delivered]) -> str | None:
    """Run the handler in a savepoint (its writes go if it raises); the error, or None."""
    try:
        with transaction.atomic():
            handler(events)
    except Exception:  # noqa: BLE001 - the shop's handler: any error stops at this event
        return traceback.format_exc(limit=5)[-4000:]
    return None


def _record_failure(name: str, sub: Any, event: Delivered, error: str, now: datetime) -> None:
    failures = sub.failures + 1
    stop = failures >= conf.SUBSCRIPTION_MAX_FAILURES
    retry_at = now + timedelta(seconds=min(2.0**failures, MAX_BACKOFF))
    store.subscription_failed(sub, event.id, error, retry_at, stop)
    metrics.inc("subscription_failures", subscription=name)
    if stop:
        log.error(
            "subscription %s stopped at event %s (cart %s v%s) after %d failures:\n%s",
            name,
            event.id,
            event.cart_id,
            event.version,
            failures,
            error,
        )
    else:
        log.warning(
            "subscription %s failed at event %s (attempt %d), retrying after %s:\n%s",
            name,
            event.id,
            failures,
            retry_at.isoformat(),
            error,
        )


# ---------------------------------------------------------------- operating


@dataclass(frozen=True)
class Status:
    """A subscription as `manage.py cart_subscriptions` and /healthz show it."""

    name: str
    position: int
    last_id: int
    delivered: int
    behind: int  # events not yet delivered
    behind_seconds: float  # age of the oldest of them
    stopped: bool
    failures: int
    failing_event_id: int | None
    last_error: str


def status(now: datetime | None = None) -> list[Status]:
    """Every known subscriber's position and lag (those never drained start where they will)."""
    now = now or timezone.now()
    rows = {sub.name: sub for sub in store.subscriptions()}
    found = []
    for name, subscriber in subscribers().items():
        sub = rows.get(name)
        if sub is None:
            position, last_id = store.subscription_start(subscriber.start)
            found.append(_status(name, position, last_id, 0, False, 0, None, "", now))
            continue
        found.append(
            _status(
                name,
                sub.position,
                sub.last_id,
                sub.delivered,
                sub.stopped,
                sub.failures,
                sub.failing_event_id,
                sub.last_error,
                now,
            )
        )
    return found


def _status(
    name: str,
    position: int,
    last_id: int,
    delivered: int,
    stopped: bool,
    failures: int,
    failing: int | None,
    error: str,
    now: datetime,
) -> Status:
    behind, oldest = store.events_behind(position, last_id)
    seconds = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
    return Status(
        name, position, last_id, delivered, behind, seconds, stopped, failures, failing, error
    )


def stopped() -> list[str]:
    """The subscriptions stopped at an event their handler fails on."""
    return [sub.name for sub in store.subscriptions() if sub.stopped]


# /metrics asks these at each scrape (one status() per second at most).
_scraped: tuple[float, list[Status] | None] = (0.0, None)


def _scrape() -> list[Status] | None:
    global _scraped
    at, found = _scraped
    if time.monotonic() - at > 1.0:
        try:
            found = status()
        except DatabaseError as exc:
            log.warning("subscription lag not measured: %s", exc)
            found = None
        _scraped = (time.monotonic(), found)
    return found


def _per_subscription(field: str) -> Callable[[], dict[str, float] | None]:
    def read() -> dict[str, float] | None:
        found = _scrape()
        return None if found is None else {s.name: float(getattr(s, field)) for s in found}

    return read


metrics.gauge(
    "subscription_lag_events",
    "Events committed that a subscription has not been handed yet.",
    _per_subscription("behind"),
    label="subscription",
)
metrics.gauge(
    "subscription_lag_seconds",
    "Age of the oldest event a subscription has not been handed yet.",
    _per_subscription("behind_seconds"),
    label="subscription",
)
metrics.gauge(
    "subscription_stopped",
    "1 when a subscription stopped at an event its handler fails on.",
    _per_subscription("stopped"),
    label="subscription",
)


def reset(name: str, to: str = "beginning") -> None:
    """Replay: move the checkpoint to the beginning of the log (or to now)."""
    subscriber = _subscriber(name)
    if to not in ("beginning", "now"):
        raise InvalidInput('reset to "beginning" or "now"')
    store.ensure_subscription(name, subscriber.start, timezone.now())
    store.subscription_moved(name, *store.subscription_start(to))


def rebuild(name: str) -> None:
    """Rebuild a read model from the whole log: the subscriber's `rebuild` (a function named
    so beside its handler), run holding the subscription (no drain meanwhile). Its handler
    skips what the rebuild already folded, so the checkpoint stays where it is."""
    subscriber = _subscriber(name)
    module, _, _handler_name = subscriber.handler.rpartition(".")
    try:
        rebuild_read_model = import_string(f"{module}.rebuild")
    except ImportError:
        raise InvalidInput(f"subscription {name!r} has no read model to rebuild") from None
    store.ensure_subscription(name, subscriber.start, timezone.now())
    with transaction.atomic():
        store.lock_subscription(name, wait=True)
        rebuild_read_model()


def resume(name: str) -> None:
    """A stopped subscription (its handler fixed) goes on from the event it stopped at."""
    _subscriber(name)
    store.subscription_resumed(name)


# ---------------------------------------------------------------- the nudge after a commit


class _Nudger:
    """Asks a Celery worker to drain soon after a command commits, from a thread of its own,
    at most every NUDGE_EVERY seconds: a request never waits for the broker, and a broker
    that is down only delays delivery until the periodic drain (beat) runs again.

    At the process's exit the thread is stopped and waited for (at most EXIT_WAIT seconds):
    a daemon thread still sending, or writing a warning, while the interpreter shuts down
    can abort the process (a management command that changed a cart, then exited)."""

    NUDGE_EVERY = 0.2
    EXIT_WAIT = 5.0

    def __init__(self) -> None:
        self.wanted = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.lock = threading.Lock()
        self.exit_hooked = False

    def nudge(self) -> None:
        if self.pid != os.getpid():  # not started yet, or a forked worker: no thread here
            with self.lock:
                if self.pid != os.getpid():
                    self.pid = os.getpid()
                    self.wanted, self.stopping = threading.Event(), threading.Event()
                    self.thread = threading.Thread(
                        target=self._run,
                        args=(self.wanted, self.stopping),
                        name="cartsvc-nudge",
                        daemon=True,
                    )
                    self.thread.start()
                    if not self.exit_hooked:  # a forked child inherits the parent's hook
                        atexit.register(self.stop)
                        self.exit_hooked = True
        self.wanted.set()

    def stop(self) -> None:
        """End this process's thread after the send in flight, if any."""
        thread = self.thread
        if thread is None or self.pid != os.getpid():
            return
        self.stopping.set()
        self.wanted.set()
        thread.join(self.EXIT_WAIT)

    @staticmethod
    def _run(wanted: threading.Event, stopping: threading.Event) -> None:
        while True:
            wanted.wait()
            if stopping.is_set():
                return
            wanted.clear()
            try:
                # By name: the task module imports the lifecycle, which imports the image.
                current_app.send_task(DRAIN_TASK, retry=False, expires=30)
            except Exception as exc:  # noqa: BLE001 - the broker's errors, whatever its transport
                metrics.inc("subscription_nudge_errors")
                log.warning("could not ask a worker to drain subscriptions: %s", exc)
            if stopping.wait(_Nudger.NUDGE_EVERY):
                return


_nudger = _Nudger()


def nudge_after_commit() -> None:
    """Called by the image after a command commits (cheap: sets an event)."""
    if conf.SUBSCRIPTION_NUDGE:
        _nudger.nudge()
