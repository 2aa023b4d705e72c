"""The host's own Celery app: autodiscovery finds cartsvc.tasks like any app's tasks."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostshop.settings")

app = Celery("hostshop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
