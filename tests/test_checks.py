"""`manage.py check` names each misconfiguration of CARTIMAGE with its stable id."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from cartsvc.checks import check_cartimage_settings

REDIS_CACHE = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:6379/11"}


def ids(settings, caches=None, **cartimage) -> set[str]:
    settings.CARTIMAGE = {**settings.CARTIMAGE, **cartimage}
    if caches is not None:
        settings.CACHES = caches
    return {message.id for message in check_cartimage_settings()}


def test_the_projects_own_settings_are_clean(settings):
    assert ids(settings) == set()


@pytest.mark.parametrize(
    "backend",
    [
        "memcached",  # neither a short name nor a module
        "cartsvc.backends.nope",  # no such module
        "cartsvc.conf",  # a module, but no backend
        "cartsvc.backends.redis.RedisStore",  # a class path, not the module
        ".redis",  # relative
        "",
        None,
    ],
)
def test_e001_a_wrong_backend(settings, backend):
    assert ids(settings, BACKEND=backend) == {"cartimage.E001"}


@pytest.mark.parametrize("backend", ["embedded", "cartsvc.backends.sqlite"])
def test_e001_accepts_the_embedded_backend_by_short_name_or_module_path(settings, backend):
    assert ids(settings, BACKEND=backend) == set()


@pytest.mark.parametrize("backend", ["redis", "cartsvc.backends.redis"])
def test_the_redis_backend_by_short_name_or_module_path(settings, backend):
    assert ids(settings, {"carts": REDIS_CACHE}, BACKEND=backend, REDIS_ALIAS="carts") == set()
    assert ids(settings, {"default": {}}, BACKEND=backend, REDIS_ALIAS="carts") == {
        "cartimage.E002"
    }


@pytest.mark.parametrize(
    "caches",
    [
        {"default": REDIS_CACHE},  # no "carts" alias
        {"carts": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},  # not redis
    ],
)
def test_e002_a_missing_or_wrong_redis_alias(settings, caches):
    assert ids(settings, caches, BACKEND="redis", REDIS_ALIAS="carts") == {"cartimage.E002"}


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/carts/0",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
    ],
)
def test_a_redis_url_needs_no_django_redis_cache(settings, url):
    assert ids(settings, {"default": {}}, BACKEND="redis", REDIS_URL=url) == set()


@pytest.mark.parametrize(
    "url", ["memcached://127.0.0.1", "redis+sentinel://127.0.0.1:26379", "redis+cluster://x"]
)
def test_e008_a_bad_redis_url(settings, url):
    assert ids(settings, {"default": {}}, BACKEND="redis", REDIS_URL=url) == {"cartimage.E008"}


def test_e002_is_not_raised_for_the_embedded_backend(settings):
    assert ids(settings, {"default": {}}, BACKEND="embedded", REDIS_ALIAS="carts") == set()


@pytest.mark.parametrize(
    "catalog",
    [None, "", "no.such.module.Catalog", "carts.catalog.NoSuchClass", "carts.models.Product"],
)
def test_e003_a_missing_unimportable_or_incomplete_catalog(settings, catalog):
    assert ids(settings, CATALOG=catalog) == {"cartimage.E003"}


@pytest.mark.parametrize(
    "name", ["IDLE_TIMEOUT", "ABANDON_AFTER", "LOCK_TTL", "TRUST_LEASE", "FILL_WAIT", "LOCK_WAIT"]
)
@pytest.mark.parametrize("value", [0, -1, "30", None, True])
def test_e004_bad_timeouts(settings, name, value):
    assert ids(settings, **{name: value}) == {"cartimage.E004"}


def test_e005_a_wrong_rehydration_source(settings):
    assert ids(settings, REHYDRATE_FROM="snapshots") == {"cartimage.E005"}


def test_e006_settings_that_are_not_a_dict(settings):
    settings.CARTIMAGE = [("BACKEND", "redis")]
    assert {m.id for m in check_cartimage_settings()} == {"cartimage.E006"}


def test_w001_an_unknown_key(settings):
    assert ids(settings, IDLE_TIMEOUTS=60) == {"cartimage.W001"}


def test_manage_py_check_fails_naming_the_id(settings):
    settings.CARTIMAGE = {**settings.CARTIMAGE, "CATALOG": "no.such.Catalog"}
    with pytest.raises(SystemCheckError, match=r"cartimage\.E003"):
        call_command("check")


def test_the_embedded_path_is_under_base_dir_wherever_the_process_started(
    settings, tmp_path, monkeypatch
):
    from cartsvc.conf import conf

    settings.BASE_DIR = tmp_path / "project"
    seen = {}
    for where, embedded in [("a", None), ("b", None), ("a", "data/image.sqlite3")]:
        (tmp_path / where).mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / where)
        cartimage = {k: v for k, v in settings.CARTIMAGE.items() if k != "EMBEDDED_PATH"}
        settings.CARTIMAGE = {**cartimage, **({"EMBEDDED_PATH": embedded} if embedded else {})}
        seen[where, embedded] = conf.EMBEDDED_PATH
    assert seen["a", None] == seen["b", None] == str(tmp_path / "project/var/image.sqlite3")
    assert seen["a", "data/image.sqlite3"] == str(tmp_path / "project/data/image.sqlite3")
    absolute = str(tmp_path / "x.sqlite3")
    settings.CARTIMAGE = {**settings.CARTIMAGE, "EMBEDDED_PATH": absolute}
    found = conf.EMBEDDED_PATH
    assert found == absolute


@pytest.mark.parametrize("embedded", [None, "var/image.sqlite3"])
def test_e007_a_relative_embedded_path_without_base_dir(settings, embedded):
    from django.core.exceptions import ImproperlyConfigured

    from cartsvc.conf import conf

    del settings.BASE_DIR
    assert ids(settings, BACKEND="embedded", EMBEDDED_PATH=embedded) == {"cartimage.E007"}
    with pytest.raises(ImproperlyConfigured, match="EMBEDDED_PATH"):
        conf.EMBEDDED_PATH  # noqa: B018
    # Not needed by the Redis backend, nor when absolute.
    assert ids(settings, {"default": REDIS_CACHE}, BACKEND="redis") == set()
    assert ids(settings, BACKEND="embedded", EMBEDDED_PATH="/srv/shop/image.sqlite3") == set()
