"""The Celery app (cookiecutter-django's shape): settings come from Django's CELERY_* names."""

import os
from pathlib import Path
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("cartimage")
# Every CELERY_* Django setting configures Celery (CELERY_BROKER_URL -> broker_url, ...).
app.config_from_object("django.conf:settings", namespace="CELERY")
# Finds tasks.py in every installed app (cartsvc.tasks).
app.autodiscover_tasks()


@app.on_after_configure.connect
def make_broker_folders(sender: Celery, **kwargs: Any) -> None:
    """The embedded (filesystem) broker's folders must exist before anything is sent."""
    if not str(sender.conf.broker_url).startswith("filesystem://"):
        return
    options = sender.conf.broker_transport_options
    for name in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        if options.get(name):
            Path(options[name]).mkdir(parents=True, exist_ok=True)
