"""The shopper's words and pages (issue 13): stock notes on cart lines, the shop's own error
pages, an order page that promises only what is true, one way to say a removal."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import path

from carts import views
from carts.models import Product
from cartsvc import service
from config import urls as project_urls
from tests.storefront.conftest import add, cart_id_of, cart_of, login, post, texts

pytestmark = pytest.mark.django_db

# ---------------------------------------------------------------- a URLconf with a failing view


def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


# pytest.mark.urls(__name__): the project's URLs and error handlers, plus a view that raises.
# (Django's defaults where the project names none.)
handler404 = getattr(project_urls, "handler404", "django.views.defaults.page_not_found")
handler500 = getattr(project_urls, "handler500", "django.views.defaults.server_error")
urlpatterns = [path("boom/", _boom), *project_urls.urlpatterns]


def notes(html: str) -> dict[str, str]:
    """sku -> the stock note on its cart line."""
    found = re.findall(
        r'<li class="line" data-line-id="\d+" data-sku="([^"]+)">(.*?)</li>', html, re.S
    )
    result = {}
    for sku, body in found:
        note = re.search(r'data-testid="stock-note">([^<]*)<', body)
        if note:
            result[sku] = note.group(1)
    return result


class TestStockNotes:
    def test_a_line_says_only_n_left_when_stock_is_short_or_low(self, shopper):
        # shopper: SKU-1 x2, SKU-2 x1; add SKU-3 x1 and SKU-4 x3.
        add(shopper, "SKU-3", 1)
        add(shopper, "SKU-4", 3)
        Product.objects.filter(sku="SKU-1").update(stock=1)  # fewer than the line holds
        Product.objects.filter(sku="SKU-2").update(stock=5)  # low
        Product.objects.filter(sku="SKU-3").update(stock=6)  # plenty for one
        Product.objects.filter(sku="SKU-4").update(stock=0)  # gone
        html = shopper.get("/cart/").content.decode()
        assert notes(html) == {
            "SKU-1": "Only 1 left",
            "SKU-2": "Only 5 left",
            "SKU-4": "Out of stock",
        }

    def test_the_lines_of_one_sku_are_counted_together(self, shopper):
        service.add_line(cart_id_of(shopper), "SKU-1", 5, {"size": "M"})  # 2 + 5 of SKU-1
        Product.objects.filter(sku="SKU-1").update(stock=6)
        html = shopper.get("/cart/").content.decode()
        assert notes(html) == {"SKU-1": "Only 6 left"}  # both lines say it, keyed by sku here
        assert html.count("Only 6 left") == 2
        Product.objects.filter(sku="SKU-1").update(stock=7)
        assert notes(shopper.get("/cart/").content.decode()) == {}

    def test_plenty_of_stock_says_nothing(self, shopper):
        html = shopper.get("/cart/").content.decode()
        assert notes(html) == {}
        assert "{#" not in html and "{%" not in html  # no template comment leaks

    def test_the_stock_is_read_in_one_query_for_all_lines(self, shopper):
        for sku in ("SKU-3", "SKU-4", "SKU-5"):
            add(shopper, sku, 1)
        Product.objects.update(stock=2)  # every line low: five notes
        shopper.get("/cart/")  # warm: the session's cart is in memory
        with CaptureQueriesContext(connection) as queries:
            html = shopper.get("/cart/").content.decode()
        assert len(notes(html)) == 5
        table = Product._meta.db_table
        reads = [q["sql"] for q in queries if table in q["sql"]]
        # One for the price refresh (the service's), one for the stock notes (the page's).
        assert len(reads) <= 2, reads
        stock_reads = [sql for sql in reads if "stock" in sql]
        assert len(stock_reads) >= 1 and all("IN (" in sql for sql in stock_reads), reads


class TestErrorPages:
    def test_404_is_the_shops_own_page_with_its_styles_inline(self, client):
        response = client.get("/no-such-page/")
        html = response.content.decode()
        assert response.status_code == 404
        assert "cartimage" in html and "Page not found" in html
        assert "<style>" in html and 'rel="stylesheet"' not in html  # no static file needed
        assert "<main" in html and 'lang="en"' in html

    def test_a_view_raising_http404_gets_the_same_page(self, client):
        response = client.get("/orders/00000000-0000-0000-0000-000000000000/")
        assert response.status_code == 404
        assert "Page not found" in response.content.decode()

    @pytest.mark.urls(__name__)
    def test_500_is_the_shops_own_page_with_its_styles_inline(self, client):
        client.raise_request_exception = False
        response = client.get("/boom/")
        html = response.content.decode()
        assert response.status_code == 500
        assert "cartimage" in html and "Something went wrong" in html
        assert "<style>" in html and 'rel="stylesheet"' not in html

    def test_the_500_page_needs_no_database_session_or_context_processor(
        self, django_assert_num_queries
    ):
        request = RequestFactory().get("/")  # no session, no user: no middleware ran
        with django_assert_num_queries(0):
            response = views.server_error(request)
        assert response.status_code == 500
        assert "Something went wrong" in response.content.decode()


class TestOrderPage:
    def checkout(self, client: Client) -> str:
        order_id = cart_id_of(client)
        response = post(client, "/cart/checkout/", {"version": cart_of(client).version})
        assert response.redirect_chain[-1][0] == f"/orders/{order_id}/"
        return response.content.decode()

    def test_a_visitor_is_promised_no_email(self, shopper):
        html = self.checkout(shopper)
        assert "email" not in html.lower() and "e-mail" not in html.lower()

    def test_a_user_with_an_email_is_told_where_it_goes(self, products):
        get_user_model().objects.create_user("erin", "erin@example.org", "pw-erin-123")
        client = Client()
        login(client, "erin", "pw-erin-123")
        add(client, "SKU-1", 1)
        assert "We will email you at erin@example.org when it ships." in self.checkout(client)

    def test_a_user_without_an_email_is_promised_none(self, products, alice):
        client = Client()
        login(client, "alice")
        add(client, "SKU-1", 1)
        assert "email" not in self.checkout(client).lower()

    def test_the_order_page_says_thank_you_once(self, shopper):
        response = post(shopper, "/cart/checkout/", {"version": cart_of(shopper).version})
        assert texts(response) == []
        assert response.content.decode().lower().count("thank you") == 1


class TestWords:
    def test_removals_say_what_they_were_removed_from(self, shopper):
        cart = cart_of(shopper)
        ids = {line.sku: line.id for line in cart.lines}
        response = post(shopper, f"/cart/lines/{ids['SKU-2']}/remove/")
        assert texts(response) == ["Removed Product SKU-2 from your cart."]
        response = post(shopper, f"/cart/lines/{ids['SKU-1']}/quantity/", {"quantity": 0})
        assert texts(response) == ["Removed Product SKU-1 from your cart."]

    def test_removing_a_saved_item_says_so(self, shopper):
        line_id = cart_of(shopper).lines[0].id
        post(shopper, f"/cart/lines/{line_id}/save/")
        response = post(shopper, f"/cart/saved/{line_id}/remove/")
        assert texts(response) == ["Removed Product SKU-1 from your saved items."]

    def test_the_empty_cart_icon_is_drawn(self, client, products):
        html = client.get("/cart/").content.decode()
        icon = re.search(r'<div class="empty-icon"[^>]*>(.*?)</div>', html, re.S)
        assert icon and "<svg" in icon.group(1)
