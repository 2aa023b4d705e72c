"""The admin's subscriptions list: state, lag and error; a superuser resumes a stopped one."""

from __future__ import annotations

import pytest

from cartsvc import subscriptions
from cartsvc.models import CartEvent, Subscription
from tests import subscribers
from tests.factories import make_cart

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_list_shows_a_stopped_subscription_and_a_superuser_resumes_it(
    products, admin_client, settings
):
    subscribers.FAIL_ON.clear()
    settings.CARTIMAGE = {
        **settings.CARTIMAGE,
        "SUBSCRIBERS": {"picky": "tests.subscribers.failing"},
        "SUBSCRIPTION_MAX_FAILURES": 1,
    }
    make_cart({"SKU-1": 1})
    first = CartEvent.objects.order_by("position", "id").first()
    subscribers.FAIL_ON.add(first.id)
    subscriptions.drain("picky")
    page = admin_client.get("/admin/cartsvc/subscription/").content.decode()
    assert f"STOPPED at event {first.id}" in page and "handler bug" in page

    subscribers.FAIL_ON.clear()
    response = admin_client.post(
        "/admin/cartsvc/subscription/",
        {"action": "resume", "_selected_action": ["picky"]},
        follow=True,
    )
    assert response.status_code == 200
    assert Subscription.objects.get(name="picky").stopped is False
    subscriptions.drain("picky")
    page = admin_client.get("/admin/cartsvc/subscription/").content.decode()
    assert "running" in page
    subscribers.RECORDED.clear()


def test_staff_without_superuser_rights_can_not_resume(products, client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_subscription"))
    client.force_login(staff)
    page = client.get("/admin/cartsvc/subscription/").content.decode()
    assert "cartsvc.abandoned" in page and 'value="resume"' not in page
