"""A host project: its Celery app is loaded with Django, as cookiecutter-django does it."""

from hostshop.celery import app as celery_app

__all__ = ("celery_app",)
