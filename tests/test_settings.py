"""Production defaults of the demo project's settings (config/settings.py) are safe."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "shop.example.com",
    "DJANGO_PROXY_SSL_HEADER": "1",
    "DJANGO_HSTS_PRELOAD": "1",
}


def django_in(env: dict[str, str], code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    clean.update(CART_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings", **env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("key", [None, "", "dev-only-not-secret-change-me"])
def test_debug_off_refuses_to_start_without_a_key_of_its_own(tmp_path, key):
    env = {} if key is None else {"DJANGO_SECRET_KEY": key}
    done = django_in(env, "print('started')", tmp_path)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in done.stderr
    assert "started" not in done.stdout


def test_debug_is_off_unless_asked_for(tmp_path):
    done = django_in(
        {"DJANGO_SECRET_KEY": "x" * 50},
        "from django.conf import settings; print(settings.DEBUG, settings.SESSION_COOKIE_SECURE)",
        tmp_path,
    )
    assert done.stdout.split() == ["False", "True"], done.stderr


def test_development_mode_runs_on_the_published_key(tmp_path):
    done = django_in(
        {"DJANGO_DEBUG": "1"},
        "from django.conf import settings; print(settings.DEBUG, settings.SECURE_SSL_REDIRECT)",
        tmp_path,
    )
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_make_run_is_development_mode():
    assert "run: export DJANGO_DEBUG ?= 1" in (ROOT / "Makefile").read_text().splitlines()


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    done = django_in(
        PRODUCTION,
        "from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING')",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_the_production_settings_are_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in (*PRODUCTION, "DJANGO_HTTPS", "DJANGO_SSL_REDIRECT", "DJANGO_HSTS_SECONDS"):
        assert name in readme, name


def test_the_production_settings_are_secure(tmp_path):
    done = django_in(
        PRODUCTION,
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)",
        tmp_path,
    )
    assert done.stdout.strip() == (
        "True True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https')"
    ), done.stderr


def explode(request):
    raise RuntimeError("kaboom in a view")


urlpatterns = [path("explode", explode), path("fine", lambda r: HttpResponse("ok"))]


@pytest.mark.urls("tests.test_settings")
def test_unhandled_errors_are_logged_to_stderr_with_debug_off(capfd, settings):
    import logging.config

    settings.DEBUG = False
    logging.config.dictConfig(settings.LOGGING)  # handlers bound to this test's stderr
    answer = Client(raise_request_exception=False).get("/explode")
    assert answer.status_code == 500
    err = capfd.readouterr().err
    assert "Internal Server Error: /explode" in err
    assert "RuntimeError: kaboom in a view" in err


def test_processes_started_in_different_folders_share_one_embedded_store(tmp_path):
    """A relative CART_VAR_DIR is under the project, not the working directory."""
    code = (
        "import django; django.setup(); from cartsvc.conf import conf; "
        "from django.conf import settings; print(conf.EMBEDDED_PATH); print(settings.VAR_DIR)"
    )
    skip = ("DJANGO_", "DATABASE_", "REDIS_", "CART_", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        PRODUCTION,
        CART_VAR_DIR="var-shared",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONPATH=str(ROOT),
    )
    seen = []
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path / folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        seen.append(done.stdout.split())
    shared = ROOT / "var-shared"
    assert seen[0] == seen[1] == [str(shared / "image.sqlite3"), str(shared)]


@pytest.mark.parametrize(
    ("url", "image_url", "django_cache"),
    [
        ("redis://127.0.0.1:6379/3", "None", "django_redis.cache.RedisCache"),
        (
            "redis+sentinel://127.0.0.1:26379/carts/0",
            "redis+sentinel://127.0.0.1:26379/carts/0",
            "django.core.cache.backends.locmem.LocMemCache",
        ),
        (
            "redis+cluster://127.0.0.1:7000",
            "redis+cluster://127.0.0.1:7000",
            "django.core.cache.backends.locmem.LocMemCache",
        ),
    ],
)
def test_redis_url_of_each_topology_reaches_the_image(tmp_path, url, image_url, django_cache):
    done = django_in(
        {"DJANGO_DEBUG": "1", "REDIS_URL": url},
        "from django.conf import settings as s; "
        "print(s.CARTIMAGE['BACKEND'], s.CARTIMAGE['REDIS_URL'], s.CACHES['default']['BACKEND'])",
        tmp_path,
    )
    assert done.stdout.split() == ["redis", image_url, django_cache], done.stderr


@pytest.mark.parametrize(
    ("raw", "threshold"), [(None, "5"), ("0", "0"), ("12", "12"), ("off", "None"), ("", "None")]
)
def test_postgresql_binds_parameters_and_prepares_what_runs_often(tmp_path, raw, threshold):
    env = {"DJANGO_SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://u@db.invalid:5432/shop"}
    if raw is not None:
        env["DB_PREPARE_THRESHOLD"] = raw
    done = django_in(
        env,
        "from django.conf import settings as s; o = s.DATABASES['default']['OPTIONS'];"
        " print(o['server_side_binding'], o['prepare_threshold'])",
        tmp_path,
    )
    assert done.stdout.split() == ["True", threshold], done.stderr


def test_a_prepare_threshold_that_is_not_a_number_is_refused_at_start(tmp_path):
    env = {
        "DJANGO_SECRET_KEY": "x" * 50,
        "DATABASE_URL": "postgres://u@db.invalid:5432/shop",
        "DB_PREPARE_THRESHOLD": "sometimes",
    }
    done = django_in(env, "print('started')", tmp_path)
    assert done.returncode != 0 and "started" not in done.stdout
    assert "DB_PREPARE_THRESHOLD must be a whole number of executions or 'off'" in done.stderr
