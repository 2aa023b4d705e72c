"""The image stores, one module per backend; `CARTIMAGE["BACKEND"]` names the one in use."""

from __future__ import annotations

from importlib import import_module

from cartsvc.backends.base import ImageStore
from cartsvc.conf import backend_module


def open_store(backend: str) -> ImageStore:
    """A store of `backend` (a module path, or "redis" / "embedded"), built from the
    settings: the module's `Store.from_settings()`, the way SESSION_ENGINE names a module
    whose `SessionStore` Django uses."""
    return import_module(backend_module(backend)).Store.from_settings()
