"""If-Match and Idempotency-Key: conflicts, replays, reuse, scopes, a double-clicked add."""

from __future__ import annotations

import threading

import orjson
import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client

from cartsvc import service
from cartsvc.models import Cart
from tests.api.conftest import call, error_of, version_of
from tests.factories import make_cart, make_products

ADD = {"sku": "SKU-1", "quantity": 1}


def replay_matches(first, again) -> None:
    assert again.status_code == first.status_code
    assert again.content == first.content
    assert again["ETag"] == first["ETag"]


@pytest.mark.django_db
class TestIfMatch:
    def test_the_current_version_applies(self, client, cart):
        response = call(client, "POST", f"carts/{cart.id}/lines", ADD, headers={"If-Match": '"3"'})
        assert response.status_code == 200
        assert response["ETag"] == '"4"'

    def test_a_stale_version_is_412_and_nothing_changes(self, client, cart):
        service.add_line(cart.id, "SKU-3", 1)  # another tab moved the cart to version 4
        response = call(
            client,
            "PATCH",
            f"carts/{cart.id}/lines/1",
            {"quantity": 9},
            headers={"If-Match": '"3"'},
        )
        assert response.status_code == 412
        assert error_of(response)["code"] == "version_conflict"
        assert service.get_cart(cart.id).line(1).quantity == 2

    def test_star_means_any_version(self, client, cart):
        response = call(client, "POST", f"carts/{cart.id}/checkout", headers={"If-Match": "*"})
        assert response.status_code == 200

    def test_the_etag_of_a_read_is_what_if_match_takes(self, client, cart):
        tag = client.get(f"/api/v1/carts/{cart.id}")["ETag"]
        first = call(client, "DELETE", f"carts/{cart.id}/lines/2", headers={"If-Match": tag})
        second = call(client, "DELETE", f"carts/{cart.id}/lines/1", headers={"If-Match": tag})
        assert (first.status_code, second.status_code) == (200, 412)


@pytest.mark.django_db
class TestTwoTabs:
    def test_a_line_removed_in_one_tab_and_updated_in_the_other_is_a_clean_404(self, cart):
        tab1, tab2 = Client(), Client()
        assert call(tab1, "DELETE", f"carts/{cart.id}/lines/1").status_code == 200
        for method, path, body in [
            ("PATCH", f"carts/{cart.id}/lines/1", {"quantity": 3}),
            ("DELETE", f"carts/{cart.id}/lines/1", None),
            ("POST", f"carts/{cart.id}/lines/1/save-for-later", None),
        ]:
            response = call(tab2, method, path, body)
            assert response.status_code == 404, (method, response.content)
            assert error_of(response) == {
                "code": "not_found",
                "message": "line not found",
                "field": "line_id",
            }
        assert version_of(cart.id) == 4

    def test_with_the_old_etag_the_second_tab_gets_412_instead(self, cart):
        tab1, tab2 = Client(), Client()
        tag = tab2.get(f"/api/v1/carts/{cart.id}")["ETag"]
        call(tab1, "DELETE", f"carts/{cart.id}/lines/1")
        response = call(
            tab2, "PATCH", f"carts/{cart.id}/lines/1", {"quantity": 3}, headers={"If-Match": tag}
        )
        assert response.status_code == 412


@pytest.mark.django_db
class TestReplays:
    @pytest.mark.parametrize(
        "method,path,body",
        [
            ("POST", "lines", {"sku": "SKU-3", "quantity": 2}),
            ("PATCH", "lines/1", {"quantity": 5}),
            ("DELETE", "lines/2", None),
            ("POST", "lines/1/save-for-later", {}),
            ("POST", "discount", {"code": "TEN"}),
            ("POST", "checkout", None),
        ],
    )
    def test_a_retry_returns_the_first_answer_and_applies_nothing_twice(
        self, client, cart, method, path, body
    ):
        headers = {"Idempotency-Key": f"key-{method}-{path}"}
        url = f"carts/{cart.id}/{path}"
        first = call(client, method, url, body, headers=headers)
        assert first.status_code == 200, first.content
        if path != "checkout":
            service.add_line(cart.id, "SKU-4", 1)  # the cart moves on meanwhile
        moved = version_of(cart.id)
        again = call(client, method, url, body, headers=headers)
        replay_matches(first, again)
        assert version_of(cart.id) == moved

    def test_a_replay_holds_even_with_a_now_stale_if_match(self, client, cart):
        headers = {"Idempotency-Key": "k", "If-Match": '"3"'}
        first = call(client, "POST", f"carts/{cart.id}/lines", ADD, headers=headers)
        again = call(client, "POST", f"carts/{cart.id}/lines", ADD, headers=headers)
        replay_matches(first, again)

    @pytest.mark.parametrize(
        "method,path,body",
        [
            ("POST", "lines", {"sku": "SKU-1", "quantity": 2}),
            ("POST", "lines", {"sku": "SKU-1", "quantity": 1, "options": {"a": "b"}}),
            ("PATCH", "lines/1", {"quantity": 1}),
            ("POST", "discount", {"code": "TEN"}),
        ],
    )
    def test_the_same_key_with_another_request_is_422(self, client, cart, method, path, body):
        headers = {"Idempotency-Key": "one-key"}
        first = call(client, "POST", f"carts/{cart.id}/lines", ADD, headers=headers)
        assert first.status_code == 200, first.content
        version = version_of(cart.id)
        response = call(client, method, f"carts/{cart.id}/{path}", body, headers=headers)
        assert response.status_code == 422
        error = error_of(response)
        assert (error["code"], error["field"]) == ("idempotency_key_reused", "Idempotency-Key")
        assert version_of(cart.id) == version

    def test_keys_are_scoped_to_the_cart(self, client, catalog):
        one, two = make_cart({"SKU-1": 1}), make_cart({"SKU-1": 1})
        headers = {"Idempotency-Key": "shared"}
        for cart in (one, two):
            response = call(client, "POST", f"carts/{cart.id}/lines", ADD, headers=headers)
            assert response.status_code == 200
            assert orjson.loads(response.content)["lines"][0]["quantity"] == 2

    def test_a_key_records_the_answers_version_not_the_cart(self, client, db):
        # 143 KB per key for a 100-line cart when the whole answer was kept.
        make_products(100)
        big = make_cart({f"SKU-{n}": 1 for n in range(1, 100)})
        headers = {"Idempotency-Key": "big-cart"}
        url = f"carts/{big.id}/lines"
        first = call(client, "POST", url, {"sku": "SKU-100", "quantity": 1}, headers=headers)
        assert first.status_code == 200 and len(first.content) > 10_000
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_column_size(k.*), k.version FROM cartsvc_idempotencykey k"
                " WHERE k.key = %s",
                ["big-cart"],
            )
            size, version = cursor.fetchone()
        assert size < 300 and version == version_of(big.id)
        service.add_line(big.id, "SKU-1", 1)  # moves on; the replay still answers v101
        again = call(client, "POST", url, {"sku": "SKU-100", "quantity": 1}, headers=headers)
        replay_matches(first, again)

    def test_a_failed_request_records_no_key(self, client, cart):
        headers = {"Idempotency-Key": "retry-me"}
        body = {"sku": "SKU-1", "quantity": 99}
        version = version_of(cart.id)
        failed = call(client, "POST", f"carts/{cart.id}/lines", body, headers=headers)
        assert failed.status_code == 422, failed.content
        assert error_of(failed)["code"] == "quantity_limit"
        assert version_of(cart.id) == version
        ok = call(client, "POST", f"carts/{cart.id}/lines", ADD, headers=headers)
        assert ok.status_code == 200


@pytest.mark.django_db
class TestOpeningCarts:
    KEY = "0f8a3c52-2f0e-4d52-9a4e-6d3f1c2b7e90"

    def test_a_retried_open_returns_the_same_cart_even_when_the_first_answer_was_lost(
        self, catalog
    ):
        # The retry comes from a client that never saw the first answer, nor its cookies.
        first = call(Client(), "POST", "carts", headers={"Idempotency-Key": self.KEY})
        again = call(Client(), "POST", "carts", headers={"Idempotency-Key": self.KEY})
        assert first.status_code == again.status_code == 201
        replay_matches(first, again)
        assert again["Location"] == first["Location"]
        other = call(Client(), "POST", "carts", headers={"Idempotency-Key": self.KEY[::-1]})
        assert orjson.loads(other.content)["id"] != orjson.loads(first.content)["id"]

    def test_a_sessionless_open_makes_no_session(self, catalog):
        before = Session.objects.count()
        for n in range(3):
            key = f"{self.KEY[:-1]}{n}"
            response = call(Client(), "POST", "carts", headers={"Idempotency-Key": key})
            assert response.status_code == 201
            assert settings.SESSION_COOKIE_NAME not in response.cookies
        assert Session.objects.count() == before

    @pytest.mark.parametrize("cookie", [None, "made-up-session-key"])
    def test_without_a_session_a_guessable_key_is_refused_and_opens_nothing(self, catalog, cookie):
        client = Client()
        if cookie:
            client.cookies[settings.SESSION_COOKIE_NAME] = cookie  # not a session either
        carts = Cart.objects.count()
        response = call(client, "POST", "carts", headers={"Idempotency-Key": "1"})
        assert response.status_code == 400
        error = error_of(response)
        assert (error["code"], error["field"]) == ("invalid", "Idempotency-Key")
        assert "32" in error["message"]
        assert Cart.objects.count() == carts

    def test_two_visitors_with_one_key_never_share_a_cart(self, catalog):
        one, two = Client(), Client()
        for client in (one, two):
            session = client.session  # a visitor of the storefront: a session of their own
            session["seen"] = True
            session.save()
            client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
        first = call(one, "POST", "carts", headers={"Idempotency-Key": "1"})
        second = call(two, "POST", "carts", headers={"Idempotency-Key": "1"})
        assert first.status_code == second.status_code == 201
        assert orjson.loads(first.content)["id"] != orjson.loads(second.content)["id"]
        replay_matches(first, call(one, "POST", "carts", headers={"Idempotency-Key": "1"}))

    def test_a_users_key_follows_the_user_not_the_session(self, alice, catalog):
        laptop, phone = Client(), Client()
        laptop.force_login(alice)
        phone.force_login(alice)
        first = call(laptop, "POST", "carts", headers={"Idempotency-Key": "mine"})
        again = call(phone, "POST", "carts", headers={"Idempotency-Key": "mine"})
        replay_matches(first, again)

    def test_users_do_not_share_keys(self, as_alice, as_bob, catalog):
        first = call(as_alice, "POST", "carts", headers={"Idempotency-Key": "k"})
        second = call(as_bob, "POST", "carts", headers={"Idempotency-Key": "k"})
        assert orjson.loads(first.content)["id"] != orjson.loads(second.content)["id"]


@pytest.mark.django_db(transaction=True)
def test_a_double_clicked_add_applies_once():
    make_products(2)
    cart = make_cart({"SKU-1": 1})
    clicks = 8
    barrier = threading.Barrier(clicks)
    responses: list = [None] * clicks
    errors: list[BaseException] = []

    def click(n: int) -> None:
        try:
            client = Client()
            barrier.wait(timeout=10)
            responses[n] = call(
                client,
                "POST",
                f"carts/{cart.id}/lines",
                {"sku": "SKU-1", "quantity": 2},
                headers={"Idempotency-Key": "double-click"},
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(n,)) for n in range(clicks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [r.status_code for r in responses] == [200] * clicks
    assert len({r.content for r in responses}) == 1
    assert {r["ETag"] for r in responses} == {'"3"'}
    final = service.get_cart(cart.id)
    assert final.version == 3
    assert final.line(1).quantity == 3
    assert len(service.history(cart.id)) == 3
