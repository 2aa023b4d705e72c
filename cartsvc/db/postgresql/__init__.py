"""Django's PostgreSQL engine with a health check that costs no round trip when it can."""
