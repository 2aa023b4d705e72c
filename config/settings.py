"""Settings, read from the environment; every variable has an embedded default."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from cartsvc.schedule import beat_schedule

BASE_DIR = Path(__file__).resolve().parent.parent
# A relative CART_VAR_DIR is under BASE_DIR, not the working directory: every process of
# the project, wherever it was started, shares the same files.
VAR_DIR = BASE_DIR / os.environ.get("CART_VAR_DIR", "var")

# DEBUG is off unless asked for: `make run` (development) sets DJANGO_DEBUG=1.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
# The development key is published in this repository: anyone knowing it can forge signed
# cookies (sessions, messages). It is accepted only with DEBUG on.
DEVELOPMENT_SECRET_KEY = "dev-only-not-secret-change-me"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = DEVELOPMENT_SECRET_KEY
if not DEBUG and SECRET_KEY in ("", DEVELOPMENT_SECRET_KEY):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a secret value of your own when DEBUG is off "
        "(for development, run with DJANGO_DEBUG=1, as `make run` does)"
    )
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

# ------------------------------------------------------------------ HTTPS (production)

# With DEBUG off the site is assumed to be served over HTTPS (directly or behind a proxy):
# Secure cookies, HSTS and a redirect to https. DJANGO_HTTPS=0 turns all of it off (a plain
# HTTP staging box); each part has its own variable.
HTTPS = os.environ.get("DJANGO_HTTPS", "0" if DEBUG else "1") == "1"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000" if HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = os.environ.get("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "1") == "1"
SECURE_HSTS_PRELOAD = os.environ.get("DJANGO_HSTS_PRELOAD", "0") == "1"
SECURE_SSL_REDIRECT = os.environ.get("DJANGO_SSL_REDIRECT", "1" if HTTPS else "0") == "1"
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients):
# DJANGO_PROXY_SSL_HEADER=1, or the SSL redirect would loop.
if os.environ.get("DJANGO_PROXY_SSL_HEADER", "0") == "1":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "cartsvc",
    "carts",
]
if os.environ.get("CARTIMAGE_BENCH") == "1":
    INSTALLED_APPS.append("bench.naivecart")
    # django-oscar's basket, the bench's other comparison (requirements-dev.txt): oscar's
    # apps as its documentation lists them (its models refer to one another), with the
    # simple search backend and the sites framework it needs; its URLs are not mounted.
    INSTALLED_APPS += [
        "django.contrib.sites",
        "django.contrib.flatpages",
        "oscar.config.Shop",
        *(
            f"oscar.apps.{name}.apps.{config}Config"
            for name, config in [
                ("analytics", "Analytics"),
                ("checkout", "Checkout"),
                ("address", "Address"),
                ("shipping", "Shipping"),
                ("catalogue", "Catalogue"),
                ("catalogue.reviews", "CatalogueReviews"),
                ("communication", "Communication"),
                ("partner", "Partner"),
                ("basket", "Basket"),
                ("payment", "Payment"),
                ("offer", "Offer"),
                ("order", "Order"),
                ("customer", "Customer"),
                ("search", "Search"),
                ("voucher", "Voucher"),
                ("wishlists", "Wishlists"),
                ("dashboard", "Dashboard"),
                ("dashboard.reports", "ReportsDashboard"),
                ("dashboard.users", "UsersDashboard"),
                ("dashboard.orders", "OrdersDashboard"),
                ("dashboard.catalogue", "CatalogueDashboard"),
                ("dashboard.offers", "OffersDashboard"),
                ("dashboard.partners", "PartnersDashboard"),
                ("dashboard.pages", "PagesDashboard"),
                ("dashboard.ranges", "RangesDashboard"),
                ("dashboard.reviews", "ReviewsDashboard"),
                ("dashboard.vouchers", "VouchersDashboard"),
                ("dashboard.communications", "CommunicationsDashboard"),
                ("dashboard.shipping", "ShippingDashboard"),
            ]
        ),
        "widget_tweaks",
        "haystack",
        "treebeard",
        "django_tables2",
        "bench.oscarbasket",
    ]
    from oscar import defaults as oscar_defaults  # its OSCAR_* settings, as its docs import

    globals().update({k: v for k, v in vars(oscar_defaults).items() if k.startswith("OSCAR_")})
    SITE_ID = 1
    HAYSTACK_CONNECTIONS = {"default": {"ENGINE": "haystack.backends.simple_backend.SimpleEngine"}}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# ------------------------------------------------------------------ database

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")


def _prepare_threshold(raw: str) -> int | None:
    """psycopg's prepare_threshold from DB_PREPARE_THRESHOLD: "off" (or empty) for None."""
    if raw.strip().lower() in ("", "off", "none"):
        return None
    if not raw.strip().isdigit():
        raise ImproperlyConfigured(
            f"DB_PREPARE_THRESHOLD must be a whole number of executions or 'off', not {raw!r}"
        )
    return int(raw)


DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's engine, with a health check that asks the socket before it asks the server
    # (no `SELECT 1` round trip per request on a healthy connection).
    _db["ENGINE"] = "cartsvc.db.postgresql"
    _db["CONN_MAX_AGE"] = int(os.environ.get("DB_CONN_MAX_AGE", "300"))
    _db["CONN_HEALTH_CHECKS"] = True
    # A stuck lock or statement fails fast instead of holding a worker forever.
    _db["OPTIONS"] = {
        "options": " ".join(
            [
                f"-c lock_timeout={os.environ.get('DB_LOCK_TIMEOUT_MS', '5000')}",
                f"-c statement_timeout={os.environ.get('DB_STATEMENT_TIMEOUT_MS', '15000')}",
                "-c idle_in_transaction_session_timeout="
                + os.environ.get("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "30000"),
            ]
        ),
        "connect_timeout": 5,
        # Parameters bound by the server, and a statement run DB_PREPARE_THRESHOLD times on a
        # connection prepared there: the cart's commit is one large statement whose parsing
        # and planning cost PostgreSQL more than running it (bench/binding.md). Behind a
        # pooler in transaction mode that can not keep prepared statements (PgBouncer before
        # 1.22, or without max_prepared_statements), set DB_PREPARE_THRESHOLD to "off".
        "server_side_binding": True,
        "prepare_threshold": _prepare_threshold(os.environ.get("DB_PREPARE_THRESHOLD", "5")),
    }
    if os.environ.get("DATABASE_TEST_NAME"):
        _db["TEST"] = {"NAME": os.environ["DATABASE_TEST_NAME"]}
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serializes writers; IMMEDIATE takes the write lock at BEGIN so two processes
    # never deadlock upgrading a read lock, and WAL lets readers run beside the writer.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory: multi-process tests share the test database.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ------------------------------------------------------------------ cache

REDIS_URL = os.environ.get("REDIS_URL", "")
# redis+sentinel://host:port,.../service[/db] and redis+cluster://host:port,... are given to
# the image as they are (redis-py's own Sentinel and RedisCluster clients; django-redis has no
# Cluster support); this project's Django cache, which holds nothing of the carts, then stays
# in process memory.
REDIS_TOPOLOGY = REDIS_URL.startswith(("redis+sentinel:", "redis+cluster:"))
if REDIS_URL and not REDIS_TOPOLOGY:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "cartimage"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # Never pickle: a cache must not be a code-execution channel.
                "SERIALIZER": "cartsvc.serializers.OrjsonSerializer",
                # redis-py waits forever by default; a hung Redis must cost milliseconds.
                "SOCKET_CONNECT_TIMEOUT": float(os.environ.get("REDIS_CONNECT_TIMEOUT", "0.25")),
                "SOCKET_TIMEOUT": float(os.environ.get("REDIS_SOCKET_TIMEOUT", "0.25")),
                "CONNECTION_POOL_KWARGS": {"max_connections": 64, "health_check_interval": 30},
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ------------------------------------------------------------------ cart image

CARTIMAGE = {
    "IDLE_TIMEOUT": int(os.environ.get("CART_IDLE_TIMEOUT", "1800")),
    "ABANDON_AFTER": int(os.environ.get("CART_ABANDON_AFTER", "604800")),
    "SNAPSHOT_EVERY": int(os.environ.get("CART_SNAPSHOT_EVERY", "50")),
    "REHYDRATE_FROM": os.environ.get("CART_REHYDRATE_FROM", "rows"),
    "MAX_LINE_QUANTITY": int(os.environ.get("CART_MAX_LINE_QUANTITY", "99")),
    # "redis" uses the django-redis connection (or REDIS_URL's own client: Sentinel, Cluster);
    # "embedded" a SQLite file shared by every process on this machine (see README: why not
    # an in-process cache).
    "BACKEND": "redis" if REDIS_URL else "embedded",
    "EMBEDDED_PATH": str(VAR_DIR / "image.sqlite3"),
    "KEY_PREFIX": os.environ.get("CART_KEY_PREFIX", "ci"),
    "REDIS_URL": REDIS_URL if REDIS_TOPOLOGY else None,
    "CATALOG": "carts.catalog.DemoCatalog",
    # 0: no nudge to a worker after each commit, only the periodic drain (the test suite: its
    # own tests drain, and a worker of another test must not do it behind their back).
    "SUBSCRIPTION_NUDGE": os.environ.get("CART_SUBSCRIPTION_NUDGE", "1") != "0",
}

# ------------------------------------------------------------------ celery (config/celery.py)

# The embedded default needs no server: kombu's filesystem transport under VAR_DIR (one
# machine, development and demos). Production: redis://... (an instance of its own, not the
# cache's) or amqp://...
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queues = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queues / "queue"),
        "data_folder_out": str(_queues / "queue"),
        "control_folder": str(_queues / "control"),
        "processed_folder": str(_queues / "processed"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # redis-py waits forever by default; a dead or hung broker must cost milliseconds.
        "socket_connect_timeout": float(os.environ.get("CELERY_BROKER_CONNECT_TIMEOUT", "0.5")),
        "socket_timeout": float(os.environ.get("CELERY_BROKER_SOCKET_TIMEOUT", "2")),
        "health_check_interval": 10,
        # A late-acked task not acknowledged within this long is delivered again; longer than
        # the time limit below, so a running sweep is never duplicated by redelivery.
        "visibility_timeout": 3600,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_BROKER_CONNECTION_TIMEOUT = float(os.environ.get("CELERY_BROKER_CONNECT_TIMEOUT", "0.5"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing gives up quickly instead of retrying for seconds (a sweep missed is made up by
# the next tick; nothing in a request's path waits on the broker).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# JSON only: a message must not be a code-execution channel either.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_EVENT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
# No result backend: the tasks log what they did; nobody waits for a result.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = None
# The sweeps are idempotent, so a task is acknowledged after it ran: a worker that dies
# mid-sweep leaves the message to be delivered again.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "240"))
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "300"))
CELERY_TIMEZONE = "UTC"
# Beat keeps its schedule in memory: the shelve file of the default scheduler is pickle, and
# sweeps found by predicate lose nothing when a restarted beat starts its intervals afresh.
CELERY_BEAT_SCHEDULER = "celery.beat:Scheduler"
CART_SWEEP_EVERY = float(os.environ.get("CART_SWEEP_EVERY", "60"))
CART_ABANDON_SWEEP_EVERY = float(os.environ.get("CART_ABANDON_SWEEP_EVERY", "300"))
CART_FULL_SWEEP_EVERY = float(os.environ.get("CART_FULL_SWEEP_EVERY", "3600"))
# Event subscriptions: drained after each commit (a nudge) and at least this often.
CART_DRAIN_EVERY = float(os.environ.get("CART_DRAIN_EVERY", "5"))
# Webhook deliveries that are due (new ones, retries whose wait is over) are sent this often.
CART_WEBHOOKS_EVERY = float(os.environ.get("CART_WEBHOOKS_EVERY", "10"))
CELERY_BEAT_SCHEDULE = beat_schedule(
    CART_SWEEP_EVERY,
    CART_ABANDON_SWEEP_EVERY,
    CART_FULL_SWEEP_EVERY,
    CART_DRAIN_EVERY,
    webhooks_every=CART_WEBHOOKS_EVERY,
)

# ------------------------------------------------------------------ misc

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
        }
    },
    "loggers": {
        "cartsvc": {"handlers": ["console"], "level": os.environ.get("CART_LOG_LEVEL", "INFO")},
        # Unhandled errors (500s) with their tracebacks, on stderr, DEBUG on or off; Django's
        # default only mails them to ADMINS, so without this they went nowhere.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
