"""The installed cartsvc in a host project: its catalog, its user model, its URLs, its Celery."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from bookshop.models import Book
from django.core import checks
from django.db import connection
from django.test.utils import CaptureQueriesContext

import cartsvc
from cartsvc import operations, service

pytestmark = pytest.mark.django_db
API = "/shop/cart-api"


def post(client, path, body=None, **headers):
    return client.post(
        API + path, json.dumps(body or {}), content_type="application/json", headers=headers
    )


def test_cartsvc_comes_from_the_installed_wheel_not_a_source_tree():
    installed = Path(cartsvc.__file__).resolve()
    assert "site-packages" in installed.parts, installed
    assert not (installed.parent.parent / "carts").exists()  # no demo shop beside it
    assert (installed.parent / "py.typed").exists()


def test_the_host_settings_pass_the_system_checks():
    found = [m for m in checks.run_checks() if m.id and m.id.startswith("cartimage.")]
    assert found == []


def test_a_wrong_catalog_is_reported_by_the_check(settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "CATALOG": "bookshop.catalog.NoSuchCatalog"}
    assert "cartimage.E003" in {m.id for m in checks.run_checks()}


def test_the_api_lists_the_hosts_books(client, books):
    answer = client.get(f"{API}/products")
    assert answer.status_code == 200
    assert answer.json() == [
        {"sku": "9780000000001", "name": "Dune", "price": "9.99", "stock": 5},
        {"sku": "9780000000002", "name": "Emma", "price": "4.50", "stock": 1},
    ]


def test_a_cart_through_the_api_under_the_hosts_prefix(client, books, voucher):
    opened = post(client, "/carts")
    assert opened.status_code == 201
    cart_id = opened.json()["id"]
    assert opened["Location"] == f"{API}/carts/{cart_id}"
    added = post(client, f"/carts/{cart_id}/lines", {"sku": "9780000000001", "quantity": 2})
    assert added.status_code == 200, added.content
    line = added.json()["lines"][0]
    assert (line["name"], line["unit_price"], line["line_total"]) == ("Dune", "9.99", "19.98")
    assert added.json()["currency"] == "GBP"
    discounted = post(client, f"/carts/{cart_id}/discount", {"code": "read10"})
    assert discounted.json()["total"] == "17.98"
    fetched = client.get(f"{API}/carts/{cart_id}")
    assert fetched["ETag"] == f'"{fetched.json()["version"]}"'
    unknown = post(client, f"/carts/{cart_id}/lines", {"sku": "nope", "quantity": 1})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_sku"
    too_many = post(client, f"/carts/{cart_id}/lines", {"sku": "9780000000001", "quantity": 19})
    assert too_many.json()["error"]["code"] == "quantity_limit"  # the host's limit, 20
    done = post(client, f"/carts/{cart_id}/checkout")
    assert done.status_code == 200 and done.json()["status"] == "checked_out"
    assert Book.objects.get(isbn="9780000000001").stock == 3  # reserved by the host's catalog
    history = client.get(f"{API}/carts/{cart_id}/events").json()["events"]
    assert [e["type"] for e in history][-1] == "checked_out"


def test_stock_is_taken_by_one_checkout_only(books):
    first, second = service.open_cart(), service.open_cart()
    for cart in (first, second):
        service.add_line(cart.id, "9780000000002", 1)
    service.checkout(first.id)
    with pytest.raises(service.InsufficientStock):
        service.checkout(second.id)
    assert Book.objects.get(isbn="9780000000002").stock == 0


def test_a_custom_user_owns_their_cart_and_nobody_else_sees_it(client, books, reader):
    client.force_login(reader)
    cart_id = post(client, "/carts").json()["id"]
    assert service.get_cart(cart_id).owner_id == reader.pk
    client.logout()
    assert client.get(f"{API}/carts/{cart_id}").status_code == 404


def test_deleting_a_custom_user_closes_their_cart(client, books, reader):
    client.force_login(reader)
    cart_id = post(client, "/carts").json()["id"]
    client.logout()
    reader.delete()
    cart = service.get_cart(cart_id)
    assert (cart.status, cart.owner_id) == (service.CLOSED, None)
    assert client.get(f"{API}/carts/{cart_id}").status_code == 404
    assert list(operations.verify_carts([cart_id])) == []


def test_deleting_a_user_through_a_proxy_model_closes_their_cart(books, reader):
    from accounts.models import Staff

    cart = service.open_cart(owner_id=reader.pk)
    Staff.objects.get(pk=reader.pk).delete()
    assert service.get_cart(cart.id).status == service.CLOSED
    assert list(operations.verify_carts([cart.id])) == []


def test_the_hosts_basket_page_and_login_merge(client, books, reader):
    client.post("/shop/basket/add/", {"isbn": "9780000000001"})
    client.post("/shop/basket/add/", {"isbn": "9780000000001"})
    page = client.get("/shop/basket/").content.decode()
    assert "Basket (2) / 2" in page  # the template tag and the context processor agree
    assert "2 x Dune £19.98" in page
    visitor_id = client.session["cartimage_cart_id"]
    mine = service.open_cart(owner_id=reader.pk)
    service.add_line(mine.id, "9780000000002", 1)
    answer = client.post("/accounts/login/", {"username": "reader", "password": "pages-and-pages"})
    assert answer.status_code == 302
    merged = service.cart_for_user(reader.pk)
    assert merged.id == mine.id
    assert {line.sku: line.quantity for line in merged.lines} == {
        "9780000000001": 2,
        "9780000000002": 1,
    }
    assert service.get_cart(visitor_id).status == service.MERGED
    assert "Basket (3)" in client.get("/shop/basket/").content.decode()


def test_a_warm_read_costs_no_sql(books):
    cart = service.open_cart()
    service.add_line(cart.id, "9780000000001", 1)
    service.get_cart(cart.id)
    with CaptureQueriesContext(connection) as queries:
        again = service.get_cart(cart.id)
    assert len(queries) == 0
    assert again.total == Decimal("9.99")


def test_the_admin_inspects_carts_for_a_custom_superuser(client, books, django_user_model):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "s3cret-pw")
    cart = service.add_line(service.open_cart().id, "9780000000001", 1)
    client.force_login(boss)
    listing = client.get("/backoffice/cartsvc/cart/")
    assert listing.status_code == 200
    assert cart.id[:8] in listing.content.decode()
    detail = client.get(f"/backoffice/cartsvc/cart/{cart.id}/change/")
    assert detail.status_code == 200
    assert "Dune" in detail.content.decode()


def test_the_hosts_celery_app_finds_the_sweeps():
    from hostshop.celery import app

    app.loader.import_default_modules()
    names = {
        "passivate_idle_carts",
        "expire_abandoned_carts",
        "sweep_carts",
        "drain_subscriptions",
        "send_webhooks",
    }
    assert {f"cartsvc.tasks.{n}" for n in names} <= set(app.tasks)
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled == {f"cartsvc.tasks.{n}" for n in names}
    result = app.tasks["cartsvc.tasks.sweep_carts"].apply().get()
    assert set(result) >= {"passivated", "expired", "keys_purged"}


def test_healthz_under_the_hosts_url(client):
    answer = client.get("/ops/healthz")
    assert answer.status_code == 200
    assert answer.json()["cache"]["ok"] is True
