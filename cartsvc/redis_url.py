"""`CARTIMAGE["REDIS_URL"]` read into what it names: the topology, its nodes and options."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

# A hung Redis must cost milliseconds, not redis-py's default of forever.
DEFAULT_TIMEOUTS = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}


class RedisTarget(NamedTuple):
    """What a `REDIS_URL` names. `options`: the client's keyword arguments (timeouts, and
    the credentials of a Sentinel or Cluster URL)."""

    kind: Literal["primary", "sentinel", "cluster"]
    url: str
    nodes: list[tuple[str, int]]
    options: dict[str, Any]
    service: str = ""
    db: int = 0


def parse_redis_url(url: Any) -> RedisTarget:
    """Read `REDIS_URL`; a bad one raises ImproperlyConfigured (check cartimage.E008):

    * `redis://[[user]:password@]host:port/db` (or `rediss://`, `unix://`): a plain primary;
    * `redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`: the
      primary that Sentinel names for `service` (the password is the primary's);
    * `redis+cluster://[[user]:password@]host:port[,host:port...]`: a Redis Cluster.

    `?socket_timeout=` and `?socket_connect_timeout=` (seconds) default to 0.25."""
    if not isinstance(url, str):
        raise ImproperlyConfigured(f"REDIS_URL {url!r} is not a string")
    parts = urlsplit(url)
    options = _timeouts(url, dict(parse_qsl(parts.query)))
    if parts.scheme in ("redis", "rediss", "unix"):
        return RedisTarget("primary", url, [], options)
    if parts.scheme not in ("redis+sentinel", "redis+cluster"):
        raise ImproperlyConfigured(
            f"REDIS_URL {url!r}: the scheme must be redis, rediss, unix, redis+sentinel or "
            "redis+cluster"
        )
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if userinfo:
        user, _, password = userinfo.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    nodes = [_host_port(host, url) for host in hosts.split(",") if host]
    if not nodes:
        raise ImproperlyConfigured(f"REDIS_URL {url!r} names no host")
    path = [part for part in parts.path.split("/") if part]
    if parts.scheme == "redis+cluster":
        if path:
            raise ImproperlyConfigured(f"REDIS_URL {url!r}: a Cluster has no database number")
        return RedisTarget("cluster", url, nodes, options)
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ImproperlyConfigured(
            f"REDIS_URL {url!r}: expected redis+sentinel://host:port,.../service[/db]"
        )
    db = int(path[1]) if path[1:] else 0
    return RedisTarget("sentinel", url, nodes, options, path[0], db)


def _timeouts(url: str, query: dict[str, str]) -> dict[str, Any]:
    try:
        return {name: float(query.get(name, default)) for name, default in DEFAULT_TIMEOUTS.items()}
    except ValueError:
        raise ImproperlyConfigured(f"REDIS_URL {url!r}: a timeout is not a number") from None


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ImproperlyConfigured(f"REDIS_URL {url!r}: {text!r} is not host:port")
    return host, int(port)
