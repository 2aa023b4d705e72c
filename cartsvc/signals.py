"""Signals a shop can hook into (outside the main flow: sent after the fact)."""

from django.dispatch import Signal

# Sent once per cart, after its expiry has been committed; kwargs: cart (the expired state).
cart_abandoned = Signal()
