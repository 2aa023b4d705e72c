"""Tables: cart header, line rows, the event log, snapshots, the dirty list, read models, webhooks.

Cart rows are written only by `cartsvc.store`, a read model's rows only by its module
(`cartsvc.demand`), webhook rows only by `cartsvc.webhooks`; models carry no behaviour that
writes.
"""

from django.conf import settings
from django.db import models


class Cart(models.Model):
    id = models.UUIDField(primary_key=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING
    )
    # No index of its own: (status, last_activity_at) below serves every filter on status,
    # and each index here is written by every command (the UPDATE can not be HOT: it sets
    # last_activity_at, which is indexed).
    status = models.CharField(max_length=16)
    currency = models.CharField(max_length=3)
    version = models.PositiveIntegerField()
    next_line_id = models.PositiveIntegerField(default=1)
    discount_code = models.CharField(max_length=64, blank=True, default="")
    discount_kind = models.CharField(max_length=16, blank=True, default="")
    discount_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    merged_into = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    last_activity_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["status", "last_activity_at"])]

    def __str__(self) -> str:
        return f"cart {self.id} v{self.version} {self.status}"


class CartLine(models.Model):
    # Indexed by cartline_unique_line_id (cart, line_id), as CartEvent's and CartSnapshot's
    # carts are by their (cart, version): a second index on the column alone would only
    # cost every insert.
    cart = models.ForeignKey(
        Cart, on_delete=models.CASCADE, related_name="line_rows", db_index=False
    )
    line_id = models.PositiveIntegerField()
    # Not indexed: nothing looks lines up by sku (the admin's search matches it
    # case-insensitively, per cart).
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    options = models.JSONField(default=list)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    saved = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cart", "line_id"], name="cartline_unique_line_id")
        ]
        ordering = ["cart", "line_id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class CartEvent(models.Model):
    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="events", db_index=False)
    version = models.PositiveIntegerField()
    type = models.CharField(max_length=32)
    schema = models.PositiveSmallIntegerField()
    data = models.JSONField()
    command_id = models.CharField(max_length=64, null=True, blank=True)
    recorded_at = models.DateTimeField()
    # The event's place in the one order subscribers read (with id): set by the database, on
    # PostgreSQL by a trigger (migration 0005, see cartsvc.subscriptions); 0 on SQLite.
    position = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cart", "version"], name="cartevent_unique_version")
        ]
        indexes = [
            models.Index(fields=["cart", "command_id"]),
            models.Index(fields=["position", "id"], name="cartevent_position"),
        ]
        ordering = ["cart", "version"]

    def __str__(self) -> str:
        return f"{self.cart_id} v{self.version} {self.type}"


class CartSnapshot(models.Model):
    cart = models.ForeignKey(
        Cart, on_delete=models.CASCADE, related_name="snapshots", db_index=False
    )
    version = models.PositiveIntegerField()
    schema = models.PositiveSmallIntegerField()
    state = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cart", "version"], name="cartsnapshot_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.cart_id} snapshot v{self.version}"


class Subscription(models.Model):
    """A named subscriber's durable checkpoint: the last event it was handed, by (position,
    id), and why it stopped if it did. Written only by `cartsvc.subscriptions` (via store)."""

    name = models.CharField(max_length=100, primary_key=True)
    position = models.BigIntegerField()
    last_id = models.BigIntegerField()
    stopped = models.BooleanField(default=False)
    failures = models.PositiveIntegerField(default=0)
    failing_event_id = models.BigIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    retry_at = models.DateTimeField(null=True, blank=True)
    delivered = models.BigIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"subscription {self.name} at ({self.position}, {self.last_id})"


class CartCacheDirty(models.Model):
    """Carts written while the cache could not be fenced; their entries must be dropped."""

    cart_id = models.UUIDField(primary_key=True)
    marked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.cart_id} dirty since {self.marked_at}"


class IdempotencyKey(models.Model):
    """A mutation's Idempotency-Key, written in the same transaction as its events."""

    scope = models.CharField(max_length=80)  # the cart id, or who opened a cart
    key = models.CharField(max_length=128)
    fingerprint = models.CharField(max_length=64)
    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="+")
    # The version of the cart the first request was answered with: a retry's answer is
    # rebuilt from the event log (a few bytes per key instead of the whole cart).
    version = models.PositiveIntegerField()
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotencykey_unique")
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}"


class DemandItem(models.Model):
    """The demand read model: a SKU's units and carts in open carts right now (saved-for-
    later items aside). A projection of the event log kept by `cartsvc.demand`, which
    alone writes it; a SKU no open cart holds has no row."""

    sku = models.CharField(max_length=64, primary_key=True)
    units = models.PositiveIntegerField()
    carts = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["-units", "sku"], name="demanditem_units")]

    def __str__(self) -> str:
        return f"{self.sku}: {self.units} in {self.carts} carts"


class DemandCart(models.Model):
    """What one cart contributes to the demand read model: its last applied event version
    (a redelivered event is recognised and skipped), whether it is open, and its lines as
    {line_id: [sku, quantity, saved]} (saved lines too: one can come back). No foreign
    key: the projection is rebuilt from the log, never cascaded from the rows."""

    cart_id = models.UUIDField(primary_key=True)
    version = models.PositiveIntegerField()
    open = models.BooleanField()
    lines = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"demand of {self.cart_id} at v{self.version}"


class WebhookEndpoint(models.Model):
    """A shop's receiver of cart events: every matching event is POSTed to `url`, signed."""

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128)
    # Event type names (cartsvc.domain); empty: every type.
    event_types = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event owed to one endpoint, with its attempts so far (the same delivery id on
    every retry: a receiver deduplicates by it)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    STATUSES = [(PENDING, "pending"), (DELIVERED, "delivered"), (FAILED, "failed")]

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    delivery_id = models.UUIDField(unique=True)
    event_id = models.BigIntegerField()
    cart_id = models.UUIDField()
    version = models.PositiveIntegerField()
    event_type = models.CharField(max_length=32)
    # The JSON body's fields, fixed when the event is handed over (identical on every retry).
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=STATUSES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="webhookdelivery_unique_event"
            )
        ]
        # The sender's query: due pending deliveries, oldest first.
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhookdelivery_due",
                condition=models.Q(status="pending"),
            )
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} {self.cart_id} v{self.version} -> {self.endpoint_id}"
