"""gunicorn settings: `gunicorn -c gunicorn.conf.py config.wsgi` (2 workers by default)."""

import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Metrics from every worker are added up at scrape time; the directory must exist before
# any worker imports prometheus_client, and start empty (see cartsvc/metrics.py).
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "cartimage-metrics")
)


def on_starting(server: object) -> None:
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
