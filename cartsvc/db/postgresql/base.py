"""Django's PostgreSQL engine whose per-request health check asks the socket, not the server."""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    """With CONN_HEALTH_CHECKS, Django runs `SELECT 1` before the first query of every
    request that uses a persistent connection: a round trip that, for a cart command, is one
    in five of its whole cost on a busy host (bench/profile.md). A server that closed the
    connection (a restart, a failover, pg_terminate_backend, an idle timeout, a pooler
    going away) says so on the socket: its error message and end of stream make the socket
    readable. An idle connection whose socket has nothing to read is trusted as it is; one
    with something unasked to read, or not idle, gets Django's own `SELECT 1`. What it does
    not see is a peer gone without a word (a host that crashed, an address moved to another
    host): the request's first statement then fails where Django's check, answered by a
    reset, would have reconnected. The service retries its own calls on a fresh connection;
    a query outside it (a session, the shop's views, ATOMIC_REQUESTS) fails that once, as
    without CONN_HEALTH_CHECKS. psycopg 3 only."""

    health_check_done: bool  # Django's BaseDatabaseWrapper sets it (django-stubs omits it)

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.settings_dict["CONN_HEALTH_CHECKS"]
            and not self.health_check_done
            and self._quiet()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _quiet(self) -> bool:
        """Open, idle, and nothing on its socket that nobody asked for."""
        connection = self.connection
        try:
            idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            if connection.closed or not idle:
                return False
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return False
        return not readable
