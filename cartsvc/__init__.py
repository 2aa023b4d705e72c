"""cartsvc: shopping carts for Django kept as a memory image (Redis) over an event log (SQL)."""

__version__ = "0.2.0"
