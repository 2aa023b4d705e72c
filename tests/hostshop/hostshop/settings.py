"""The host project's settings: cartsvc configured through CARTIMAGE, nothing else."""

import os
from pathlib import Path

from cartsvc.schedule import beat_schedule

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "hostshop-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
    "bookshop",
    "cartsvc",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "hostshop.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "cartsvc.context_processors.mini_cart",
            ]
        },
    }
]
AUTH_USER_MODEL = "accounts.User"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("HOSTSHOP_DB_NAME", "hostshop"),
        "HOST": os.environ.get("HOSTSHOP_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("HOSTSHOP_DB_PORT", "5432"),
        "USER": os.environ.get("HOSTSHOP_DB_USER", "postgres"),
        "TEST": {"NAME": "test_" + os.environ.get("HOSTSHOP_DB_NAME", "hostshop")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The shop's own cache is django-redis; the cart image shares its connection ("carts" alias).
REDIS_URL = os.environ.get("HOSTSHOP_REDIS_URL", "redis://127.0.0.1:6379/13")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "carts": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            "SERIALIZER": "cartsvc.serializers.OrjsonSerializer",
            "SOCKET_CONNECT_TIMEOUT": 0.25,
            "SOCKET_TIMEOUT": 0.25,
        },
    },
}

CARTIMAGE = {
    # The module path (the short name "redis" works too): the wheel must carry its scripts.
    "BACKEND": "cartsvc.backends.redis",
    "REDIS_ALIAS": "carts",
    "KEY_PREFIX": os.environ.get("HOSTSHOP_KEY_PREFIX", "hostshop"),
    "CATALOG": os.environ.get("HOSTSHOP_CATALOG", "bookshop.catalog.BookCatalog"),
    "CURRENCY": "GBP",
    "MAX_LINE_QUANTITY": 20,
}

CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE = beat_schedule(passivate_every=30)

STATIC_URL = "static/"
USE_TZ = True
TIME_ZONE = "UTC"
LOGIN_URL = "/accounts/login/"
