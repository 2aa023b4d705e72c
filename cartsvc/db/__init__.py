"""Database engines for the shop's settings (optional: see docs/use-in-your-shop.md)."""
