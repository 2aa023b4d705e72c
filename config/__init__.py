"""Project wiring: settings, urls, wsgi."""
