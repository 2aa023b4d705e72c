"""The Django admin over carts: read-only inspection; operations through cartsvc.operations.

Outside the core, this is the one module that imports `cartsvc.models` (tests/test_architecture.py):
it reads the tables to list, search and show carts, and never writes them. Everything that
touches cart state or memory (evict, rehydrate, rebuild rows, verify, the live image, the
state at a past version) is a `cartsvc.operations` or `cartsvc.service` call.

Reads here are side-effect free on purpose: the detail page peeks at memory
(`operations.memory_image`) and reads the event log from its table, because `service.history`
goes through `get_cart`, which would rehydrate a cold cart and count the inspection as the
customer's activity (so an evicted cart would be back in memory on the very next page).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import (
    Count,
    DecimalField,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.text import smart_split, unescape_string_literal
from django.utils.timesince import timesince

from cartsvc import demand, operations, service, subscriptions, webhooks
from cartsvc import domain as d
from cartsvc.compare import against_log, panel
from cartsvc.models import (
    Cart,
    CartEvent,
    CartLine,
    DemandItem,
    IdempotencyKey,
    Subscription,
    WebhookDelivery,
    WebhookEndpoint,
)
from cartsvc.templatetags.cartimage import money, status_label


def _owner_lookup() -> str:
    """The owner's field to show, search and sort by: the user model's e-mail field when it
    has one (a custom user model may not), else its USERNAME_FIELD."""
    user_model = get_user_model()
    name = user_model.get_email_field_name()
    try:
        user_model._meta.get_field(name)
    except FieldDoesNotExist:
        name = user_model.USERNAME_FIELD
    return f"owner__{name}"


OWNER = _owner_lookup()

# The most carts one changelist action (or the in-memory filter) looks at in one request.
ACTION_LIMIT = 1000
# Mismatches shown one by one after "verify"; the rest are counted.
MAX_MISMATCH_MESSAGES = 25
HISTORY_PER_PAGE = 20
# The digits of a cart id the list shows (the search finds a cart by 4 or more).
SHORT_ID = 8

_MONEY: DecimalField = DecimalField(max_digits=14, decimal_places=2)


def _open_lines() -> QuerySet:
    """The cart's lines counted in its totals (not saved for later), grouped by cart."""
    return CartLine.objects.filter(cart=OuterRef("pk"), saved=False).order_by().values("cart")


# Correlated subqueries, not a JOIN + GROUP BY: PostgreSQL computes them for the rows of the
# page only, and the number of queries does not depend on the page's size.
LINE_COUNT = Coalesce(
    Subquery(_open_lines().annotate(n=Count("pk")).values("n"), output_field=IntegerField()),
    Value(0),
)
SUBTOTAL = Coalesce(
    Subquery(
        _open_lines().annotate(s=Sum(F("quantity") * F("unit_price"))).values("s"),
        output_field=_MONEY,
    ),
    Value(Decimal("0.00")),
    output_field=_MONEY,
)


def total_of(cart: Cart) -> Decimal:
    """subtotal - discount, with the domain's own rule, from the annotated subtotal."""
    subtotal = getattr(cart, "subtotal", None) or Decimal("0.00")
    if not cart.discount_code or cart.discount_value is None:
        return subtotal
    discount = d.Discount(cart.discount_code, cart.discount_kind, cart.discount_value)
    return subtotal - discount.amount_for(subtotal)


def ago(moment: datetime) -> str:
    """Like "3 minutes ago"; "just now" under a minute."""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


# ---------------------------------------------------------------- the rows, read-only


def rows_state(cart_id: Any) -> d.Cart | None:
    """The cart as its rows say (one query: a concurrent write can not show up as a false
    difference)."""
    return operations.rows_state(cart_id)


def _options_as_maps(data: Any) -> Any:
    """The payload with every "options" list of [name, value] pairs (at the top, or in a
    carried line) as a map, the way the cart shows them."""
    if isinstance(data, list):
        return [_options_as_maps(item) for item in data]
    if not isinstance(data, dict):
        return data
    shown = {key: _options_as_maps(value) for key, value in data.items()}
    pairs = data.get("options")
    if isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 for p in pairs):
        shown["options"] = {str(name): value for name, value in pairs}
    return shown


def shown_payload(data: Any) -> str:
    """An event's payload as JSON for people: options as a map, as the cart shows them
    (the log stores them as [name, value] pairs, in their canonical order)."""
    shown = _options_as_maps(data)
    return json.dumps(shown, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def history_page(cart_id: Any, page: Any) -> Page:
    """One page of the event log, newest first (the same fields as `service.history`), each
    event with the Idempotency-Key of the request answered at its version, if one was sent
    (the keys live in their own table: the events only carry a `command_id=` of the door)."""
    events = (
        CartEvent.objects.filter(cart_id=cart_id)
        .order_by("-version")
        .values("version", "type", "schema", "data", "command_id", "recorded_at")
    )
    # Rows of values(), given two keys more below (typed loosely: values() rows are TypedDicts).
    found: Page[Any] = Paginator(events, HISTORY_PER_PAGE).get_page(page)
    found.object_list = list(found.object_list)
    keys = dict(
        IdempotencyKey.objects.filter(
            cart_id=cart_id, version__in=[event["version"] for event in found.object_list]
        ).values_list("version", "key")
    )
    for event in found.object_list:
        event["payload"] = shown_payload(event["data"])
        event["idempotency_key"] = keys.get(event["version"])
    return found


def log_state(cart_id: str) -> tuple[d.Cart | None, str]:
    """The cart as its event log says (its latest snapshot plus the events after it), or
    None with why: the log has no events, or it can not be replayed (a damaged event: the
    very cart an operator opens this page for, so it is said, never a crash)."""
    latest = CartEvent.objects.filter(cart_id=cart_id).aggregate(v=Max("version"))["v"]
    if latest is None:
        return None, ""
    try:
        return service.cart_at(cart_id, latest), ""
    except d.NotFound:
        return None, ""
    except ValueError as exc:  # CodecError (a payload that does not decode) is one too
        return None, f"the event log can not be replayed up to version {latest}: {exc}"


VENDORS = {"postgresql": "PostgreSQL", "sqlite": "SQLite", "mysql": "MySQL", "oracle": "Oracle"}


def database_name() -> str:
    """The database in use, by name (the rows panel says where its rows come from)."""
    return VENDORS.get(connection.vendor, connection.display_name)


def memory_of(cart_id: str) -> d.Cart | None:
    """The live memory image, untouched (None: not in memory, or the cache can not say)."""
    return operations.memory_image(cart_id)


@dataclass(frozen=True)
class AtVersion:
    """The "state at version N" form: what was asked, and the replayed state or an error."""

    asked: str
    version: int | None = None
    state: d.Cart | None = None
    error: str | None = None


def state_at(raw: str | None, latest: int, cart_id: str) -> AtVersion:
    """Replay the cart up to `raw` (validated: a whole number from 1 to `latest`)."""
    asked = (raw or "").strip()
    if not asked:
        return AtVersion("")
    shown = asked if len(asked) <= 24 else asked[:24] + "…"
    try:
        version = int(asked)
    except ValueError:
        return AtVersion(
            asked,
            error=f"“{shown}” is not a version: enter a whole number from 1 to {latest}.",
        )
    if not 1 <= version <= latest:
        return AtVersion(
            asked,
            error=f"There is no version {shown}: this cart has versions 1 to {latest}.",
        )
    try:
        state = service.cart_at(cart_id, version)
    except d.DomainError as exc:
        return AtVersion(asked, error=f"Version {version} could not be replayed: {exc.message}")
    return AtVersion(asked, version, state)


# ---------------------------------------------------------------- operations


def _named(ids: list[str]) -> str:
    return f"cart {ids[0]}" if len(ids) == 1 else f"{len(ids)} carts"


def _evict(request: HttpRequest, ids: list[str]) -> None:
    evicted = [cart_id for cart_id in ids if operations.evict_cart(cart_id)]
    if evicted:
        messages.success(request, f"Evicted {_named(evicted)} from memory.")
    left = [cart_id for cart_id in ids if cart_id not in evicted]
    if left:
        verb = "was" if len(left) == 1 else "were"
        messages.info(
            request, f"{_named(left).capitalize()} {verb} not in memory (or being written)."
        )


def _each(request: HttpRequest, ids: list[str], operation: Callable[[str], d.Cart]) -> list[d.Cart]:
    """Run a service operation on every cart; a refused one becomes an error message."""
    done: list[d.Cart] = []
    for cart_id in ids:
        try:
            done.append(operation(cart_id))
        except d.DomainError as exc:
            messages.error(request, f"Cart {cart_id}: {exc.message}")
    return done


def _rehydrate(request: HttpRequest, ids: list[str]) -> None:
    loaded = _each(request, ids, operations.rehydrate_cart)
    if not loaded:
        return
    present = operations.in_memory([cart.id for cart in loaded]) or set()
    done = [cart for cart in loaded if cart.id in present]
    if len(done) == 1 and len(ids) == 1:
        messages.success(request, f"Rehydrated cart {done[0].id} at version {done[0].version}.")
    elif done:
        messages.success(request, f"Rehydrated {len(done)} carts into memory.")
    missed = [cart.id for cart in loaded if cart.id not in present]
    if missed:
        messages.warning(
            request,
            f"{_named(missed).capitalize()} could not be put in memory "
            "(the cache is unreachable, or a write was in flight).",
        )


def _rebuild(request: HttpRequest, ids: list[str]) -> None:
    rebuilt = _each(request, ids, operations.rebuild_rows)
    if len(rebuilt) == 1 and len(ids) == 1:
        messages.success(
            request,
            f"Rebuilt the rows of cart {rebuilt[0].id} from its event log "
            f"(version {rebuilt[0].version}).",
        )
    elif rebuilt:
        messages.success(request, f"Rebuilt the rows of {len(rebuilt)} carts from their logs.")


def _verify(request: HttpRequest, ids: list[str]) -> None:
    found = list(operations.verify_carts(ids))
    if not found:
        messages.success(
            request, f"Verified {_named(ids)}: rows, event log, snapshots and memory agree."
        )
        return
    carts = len({m.cart_id for m in found})
    messages.error(
        request,
        f"Verify found {len(found)} mismatch{'es' if len(found) > 1 else ''} "
        f"in {carts} cart{'s' if carts > 1 else ''}:",
    )
    for mismatch in found[:MAX_MISMATCH_MESSAGES]:
        messages.warning(request, f"Cart {mismatch}")
    if len(found) > MAX_MISMATCH_MESSAGES:
        messages.warning(
            request,
            f"… and {len(found) - MAX_MISMATCH_MESSAGES} more (manage.py verify_carts "
            "prints them all).",
        )


@dataclass(frozen=True)
class Operation:
    slug: str
    label: str
    help: str
    run: Callable[[HttpRequest, list[str]], None]


OPERATIONS = {
    op.slug: op
    for op in (
        Operation(
            "evict",
            "Evict from memory",
            "Drop the cached entry; the next read rehydrates it.",
            _evict,
        ),
        Operation(
            "rehydrate",
            "Rehydrate now",
            "Load the cart into memory from the database.",
            _rehydrate,
        ),
        Operation(
            "rebuild",
            "Rebuild rows from the event log",
            "Rewrite the header and line rows from the log (the truth).",
            _rebuild,
        ),
        Operation(
            "verify",
            "Verify",
            "Compare rows, event log, snapshots and memory.",
            _verify,
        ),
    )
}


def _action(slug: str) -> Callable[[CartAdmin, HttpRequest, QuerySet], None]:
    operation = OPERATIONS[slug]

    def action(model_admin: CartAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        ids = [
            str(pk) for pk in queryset.order_by().values_list("pk", flat=True)[: ACTION_LIMIT + 1]
        ]
        if len(ids) > ACTION_LIMIT:
            messages.error(
                request,
                f"Select at most {ACTION_LIMIT} carts for one action "
                "(the management commands handle any number).",
            )
            return
        operation.run(request, ids)

    action.__name__ = f"{slug}_selected"
    return admin.action(description=f"{operation.label} (selected carts)", permissions=["operate"])(
        action
    )


# ---------------------------------------------------------------- filters


class StatusFilter(admin.SimpleListFilter):
    """The statuses the domain knows (no DISTINCT over the table to find them)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(status, status_label(status)) for status in d.STATUSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = self.value()
        return queryset.filter(status=value) if value in d.STATUSES else None


class ActivityFilter(admin.SimpleListFilter):
    """Age of `last_activity_at` (writes set it at once; reads are folded in by the sweep)."""

    title = "last activity"
    parameter_name = "active"
    AGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [
            ("hour", "Within the last hour"),
            ("day", "Within the last day"),
            ("week", "Within the last week"),
            ("older", "Older than a week"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value, now = self.value(), timezone.now()
        if value in self.AGES:
            return queryset.filter(last_activity_at__gte=now - self.AGES[value])
        if value == "older":
            return queryset.filter(last_activity_at__lt=now - self.AGES["week"])
        return None


class InMemoryFilter(admin.SimpleListFilter):
    """Whether the cart is in memory right now. Memory is not in the database, so this asks
    the cache about the carts the other filters left, in ONE pipelined call, bounded: only
    the `scan_limit` most recently active of them are looked at (idle carts leave memory, so
    these are where the cached ones are); a message says when the bound cut the list short."""

    title = "in memory"
    parameter_name = "in_memory"
    scan_limit = 5000

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = self.value()
        if value not in ("yes", "no"):
            return None
        ids = [
            str(pk)
            for pk in queryset.order_by("-last_activity_at", "-pk").values_list("pk", flat=True)[
                : self.scan_limit + 1
            ]
        ]
        cut = len(ids) > self.scan_limit
        ids = ids[: self.scan_limit]
        present = (operations.in_memory(ids) if ids else set()) or set()
        # The changelist's "in memory" column reuses this answer instead of asking again
        # (an attribute of this request's own, which HttpRequest does not declare).
        request.cart_presence = {cart_id: cart_id in present for cart_id in ids}  # type: ignore[attr-defined]
        if cut:
            messages.info(
                request,
                f"The in-memory filter looked at the {self.scan_limit:,} most recently active "
                "carts only; narrow the list with the other filters to see older ones.",
            )
        if value == "yes":
            return queryset.filter(pk__in=[i for i in ids if i in present])
        if not cut:
            return queryset.exclude(pk__in=list(present))
        return queryset.filter(pk__in=[i for i in ids if i not in present])


class CartChangeList(ChangeList):
    """The changelist, plus one `operations.in_memory` call for the whole page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        carts = list(self.result_list)  # evaluated once; the template reuses the cache
        known: dict[str, bool] = getattr(request, "cart_presence", {})
        unknown = [str(cart.pk) for cart in carts if str(cart.pk) not in known]
        present = operations.in_memory(unknown) if unknown else set()
        for cart in carts:
            key = str(cart.pk)
            # None when the cache can not say: the admin shows its "unknown" icon.
            cart.in_memory_now = known.get(key, None if present is None else key in present)


# ---------------------------------------------------------------- search

_HEX = re.compile(r"[0-9a-f]{4,32}")


def id_lookup(term: str) -> Q | None:
    """A full cart id, or its first 4+ hex digits (a range on the primary key's index)."""
    digits = term.lower().replace("-", "")
    if not _HEX.fullmatch(digits):
        return None
    if len(digits) == 32:
        return Q(pk=uuid.UUID(digits))
    low = uuid.UUID(digits.ljust(32, "0"))
    high = uuid.UUID(digits.ljust(32, "f"))
    return Q(pk__gte=low, pk__lte=high)


# ---------------------------------------------------------------- the admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and pages to read: nothing is added, changed or deleted through the admin (the
    app's tables are written by its services only)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Cart)
class CartAdmin(ReadOnlyAdmin):
    """Read-only: no add, no change, no delete. State moves only through the operations."""

    list_display = (
        "cart_id",
        "owner_display",
        "status_display",
        "line_count",
        "total",
        "version",
        "last_activity",
        "in_memory",
    )
    list_display_links = ("cart_id",)
    list_filter = (StatusFilter, ActivityFilter, InMemoryFilter)
    list_select_related = ("owner",)
    list_per_page = 50
    list_max_show_all = 200
    ordering = ("-last_activity_at",)
    sortable_by = (
        "cart_id",
        "owner_display",
        "status_display",
        "line_count",
        "version",
        "last_activity",
    )
    search_fields = ("id", OWNER, "line_rows__sku")  # see get_search_results
    search_help_text = "A cart id (or its first digits), part of an owner's e-mail, or a SKU."
    show_full_result_count = False  # no second COUNT(*) over the whole table
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice: too dear on big tables
    raw_id_fields = ("owner",)
    actions = [_action(slug) for slug in OPERATIONS]
    detail_template = "admin/cartsvc/cart/detail.html"

    # -- permissions: read-only; operations need the "operate" permission

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """May run evict / rehydrate / rebuild / verify: superusers, and staff holding
        `cartsvc.change_cart` (the admin itself never edits a cart's fields)."""
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and (user.is_superuser or user.has_perm("cartsvc.change_cart"))
        )

    # -- the list

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(line_count=LINE_COUNT, subtotal=SUBTOTAL)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CartChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            # The app sidebar would take 275 px of a laptop's width from the table.
            "is_nav_sidebar_enabled": False,
            # "Select all N" is offered up to what an action takes (actions.html).
            "action_limit": ACTION_LIMIT,
            "action_limit_text": f"{ACTION_LIMIT:,}",
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Every word must match the cart's id (or id prefix), its owner's e-mail, or the SKU
        of one of its lines. The SKU test is an EXISTS, so a cart is listed once however many
        of its lines match: no DISTINCT, no duplicate rows."""
        for bit in smart_split(search_term):
            if bit[:1] in "\"'" and len(bit) > 1 and bit[0] == bit[-1]:
                bit = unescape_string_literal(bit)
            term = bit.strip()
            if not term:
                continue
            matches = Q(**{f"{OWNER}__icontains": term}) | Q(
                Exists(CartLine.objects.filter(cart=OuterRef("pk"), sku__iexact=term))
            )
            by_id = id_lookup(term)
            if by_id is not None:
                matches |= by_id
            queryset = queryset.filter(matches)
        return queryset, False

    @admin.display(description="id", ordering="id")
    def cart_id(self, cart: Cart) -> str:
        """The id's first 8 digits (the search takes them; the full id is in the title and on
        the detail page): a 36-character id would take a third of a laptop's table."""
        full = str(cart.pk)
        return format_html('<span class="cart-id" title="{}">{}</span>', full, full[:SHORT_ID])

    @admin.display(description="owner", ordering=OWNER)
    def owner_display(self, cart: Cart) -> str:
        if cart.owner is None:
            return mark_safe('<span class="quiet">anonymous</span>')
        email = getattr(cart.owner, cart.owner.get_email_field_name(), "")
        shown = email or cart.owner.get_username()
        return format_html('<span class="owner" title="{}">{}</span>', shown, shown)

    @admin.display(description="status", ordering="status")
    def status_display(self, cart: Cart) -> str:
        return format_html(
            '<span class="cart-status status-{}">{}</span>', cart.status, status_label(cart.status)
        )

    @admin.display(description="lines", ordering="line_count")
    def line_count(self, cart: Cart) -> int:
        # Annotated by get_queryset: the stubs know the model's fields, not the annotation.
        return cart.line_count  # type: ignore[attr-defined]

    @admin.display(description="total")
    def total(self, cart: Cart) -> str:
        return money(total_of(cart), cart.currency)

    @admin.display(description="last activity", ordering="last_activity_at")
    def last_activity(self, cart: Cart) -> str:
        return format_html(
            '<span title="{}">{}</span>',
            timezone.localtime(cart.last_activity_at).isoformat(timespec="seconds"),
            ago(cart.last_activity_at),
        )

    @admin.display(description="in memory", boolean=True)
    def in_memory(self, cart: Cart) -> bool:
        return getattr(cart, "in_memory_now", False)

    # -- the detail page and its operations

    def get_urls(self) -> list[URLPattern]:
        operate = path(
            "<path:object_id>/operate/<slug:operation>/",
            self.admin_site.admin_view(self.operate_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_operate",
        )
        return [operate, *super().get_urls()]

    def _detail_url(self, cart: Cart) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[cart.pk],
            current_app=self.admin_site.name,
        )

    def _missing(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Django's own answer to a change page of a cart that is not there (a message and
        back to the list)."""
        # A private ModelAdmin method that django-stubs do not declare.
        return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]

    def operate_view(self, request: HttpRequest, object_id: str, operation: str) -> HttpResponse:
        """POST (with CSRF) one operation on one cart, then back to its detail page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_operate_permission(request):
            raise PermissionDenied
        found = OPERATIONS.get(operation)
        if found is None:
            raise Http404(f"no operation {operation!r}")
        cart = self.get_object(request, unquote(object_id))
        if cart is None:
            return self._missing(request, object_id)
        found.run(request, [str(cart.pk)])
        return HttpResponseRedirect(self._detail_url(cart))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Read-only detail: header, the rows, the event log's state and the live memory image
        side by side (the rows' and memory's differences from the log marked),
        the event history (paginated, with payloads), and the state at any version."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        cart = self.get_object(request, unquote(object_id))
        if cart is None:
            return self._missing(request, object_id)
        if not self.has_view_permission(request, cart):
            raise PermissionDenied
        cart_id = str(cart.pk)
        memory = memory_of(cart_id)  # before the rows: a race shows memory behind, not ahead
        rows = rows_state(cart_id)
        if rows is None:
            return self._missing(request, object_id)
        log, log_error = log_state(cart_id)  # after the rows: a race shows the log ahead
        at = state_at(request.GET.get("at"), rows.version, cart_id)
        history = history_page(cart_id, request.GET.get("page"))
        context = {
            **self.admin_site.each_context(request),
            "is_nav_sidebar_enabled": False,  # the two panels need the width
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": f"Cart {cart_id}",
            "original": cart,
            "cart": cart,
            "last_activity": ago(cart.last_activity_at),
            "rows": rows,
            "memory": memory,
            "log": log,
            "log_error": log_error,
            "log_panel": panel(log) if log is not None else None,
            "rows_vs_log": against_log(rows, log, ("rows say", "the event log says")),
            "memory_vs_log": (
                against_log(memory, log, ("memory says", "the event log says"))
                if memory is not None
                else None
            ),
            "rows_source": f"{database_name()}: header and line rows",
            "history": history,
            "at": at,
            "at_panel": panel(at.state) if at.state is not None else None,
            "at_title": f"Version {at.version} of {rows.version}",
            "operations": list(OPERATIONS.values()) if self.has_operate_permission(request) else [],
            "operate_url": f"admin:{self.opts.app_label}_{self.opts.model_name}_operate",
            "has_view_permission": True,
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.detail_template, context)


# ---------------------------------------------------------------- demand


class DemandChangeList(ChangeList):
    """The changelist, plus one catalog call for the names of the page's SKUs."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        items = list(self.result_list)  # evaluated once; the template reuses the cache
        names = demand.names_of([item.sku for item in items])
        for item in items:
            item.catalog_name = names.get(item.sku, "")


@admin.register(DemandItem)
class DemandItemAdmin(ReadOnlyAdmin):
    """The demand read model (cartsvc.demand): what sits in open carts now, per SKU. A
    projection of the event log: nothing here writes it (`manage.py cart_subscriptions
    --rebuild` refolds it)."""

    list_display = ("sku", "name", "units", "carts")
    list_display_links = None  # a row has nothing more to show
    list_per_page = 100
    ordering = ("-units", "sku")
    sortable_by = ("sku", "units", "carts")
    search_fields = ("sku",)
    search_help_text = "Part of a SKU."
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DemandChangeList

    @admin.display(description="name")
    def name(self, item: DemandItem) -> str:
        return getattr(item, "catalog_name", "")


# ---------------------------------------------------------------- subscriptions


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Every event subscription: where it is, how far behind, and why it stopped if it did.
    Resuming one whose handler was fixed is an action (`cart_subscriptions --resume`)."""

    list_display = ("name", "state", "delivered", "behind", "lag", "delivered_at", "error")
    list_display_links = None
    ordering = ("name",)
    actions = ["resume"]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # The lag of every subscription, counted once per page (not once per column).
        self._status = {row.name: row for row in subscriptions.status()}
        return super().changelist_view(request, extra_context)

    def _of(self, sub: Subscription) -> subscriptions.Status | None:
        return getattr(self, "_status", {}).get(sub.name)

    @admin.display(description="state")
    def state(self, sub: Subscription) -> str:
        if sub.stopped:
            return f"STOPPED at event {sub.failing_event_id}"
        if sub.failures:
            return f"retrying event {sub.failing_event_id} ({sub.failures} failures)"
        return "running"

    @admin.display(description="events behind")
    def behind(self, sub: Subscription) -> int | None:
        status = self._of(sub)
        return None if status is None else status.behind

    @admin.display(description="lag (s)")
    def lag(self, sub: Subscription) -> str:
        status = self._of(sub)
        return "" if status is None else f"{status.behind_seconds:.1f}"

    @admin.display(description="last error")
    def error(self, sub: Subscription) -> str:
        return (sub.last_error.strip().splitlines() or [""])[-1]

    def has_resume_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    @admin.action(description="Resume (the handler is fixed)", permissions=["resume"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        for sub in queryset:
            subscriptions.resume(sub.name)
        self.message_user(request, f"Resumed {queryset.count()} subscriptions.")


# ---------------------------------------------------------------- webhooks
#
# Endpoints are the shop's configuration: added and changed here, written by
# `cartsvc.webhooks.save_endpoint` (never deleted: deactivate one, its deliveries stay).
# Deliveries are read-only; the one thing done to them is "retry now".


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        help_text="http:// or https:// only; redirects are not followed.",
    )
    event_types = forms.MultipleChoiceField(
        choices=[(name, name) for name in sorted(d.EVENT_TYPES)],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event type.",
    )
    rotate_secret = forms.BooleanField(
        required=False,
        help_text="Make a new signing secret (shown once, after saving); the old one stops "
        "working at once.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "event_types", "active")

    def clean_url(self) -> str:
        try:
            return webhooks.check_url(self.cleaned_data["url"])
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from exc


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Add and change endpoints; the secret is shown once, when it is made."""

    form = WebhookEndpointForm
    list_display = ("url", "types_display", "active", "created_at")
    list_filter = ("active",)
    ordering = ("url",)
    readonly_fields = ("secret_display", "created_at")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("url", "event_types", "active")
        return ("url", "event_types", "active", "secret_display", "rotate_secret", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="event types")
    def types_display(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.event_types) or "all"

    @admin.display(description="secret")
    def secret_display(self, endpoint: WebhookEndpoint) -> str:
        """Masked: its first characters, enough to tell two apart."""
        return f"{endpoint.secret[:10]}…" if endpoint.secret else "-"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        made = webhooks.save_endpoint(obj, rotate_secret=form.cleaned_data.get("rotate_secret"))
        if made:
            messages.warning(
                request,
                format_html(
                    "The signing secret of {} is <code>{}</code>. It is shown this once: "
                    "copy it to the receiving side now.",
                    obj.url,
                    made,
                ),
            )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Read-only: each event owed to an endpoint, with its attempts and their outcome."""

    list_display = (
        "delivery_id",
        "endpoint",
        "event_type",
        "cart_id",
        "version",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "updated_at",
    )
    list_filter = ("status", "endpoint")
    list_select_related = ("endpoint",)
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    actions = ["retry_now"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in WebhookDelivery._meta.fields]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Who may change endpoints may send their deliveries again."""
        return bool(request.user.has_perm("cartsvc.change_webhookendpoint"))

    @admin.action(description="Retry the selected deliveries now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = webhooks.retry_now(queryset.values_list("pk", flat=True)[:ACTION_LIMIT])
        messages.success(
            request,
            f"{count} deliver{'y' if count == 1 else 'ies'} due now (sent by the next run).",
        )
