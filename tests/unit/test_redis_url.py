"""`REDIS_URL`: which client each form builds, and a clear error for a bad one."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from redis import Redis
from redis.cluster import RedisCluster

from cartsvc.backends.redis import CLUSTER_BUCKETS, RedisStore, redis_connector


def test_a_plain_url_is_a_plain_client_with_short_timeouts():
    client = redis_connector("redis://127.0.0.1:6379/3")()
    assert isinstance(client, Redis)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["db"] == 3 and kwargs["socket_timeout"] == 0.25
    assert kwargs["socket_connect_timeout"] == 0.25


def test_timeouts_come_from_the_query():
    client = redis_connector("redis://127.0.0.1:6379/0?socket_timeout=1.5")()
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 1.5


def test_a_sentinel_url_names_the_service_and_the_sentinels():
    connect = redis_connector("redis+sentinel://:secret@10.0.0.1:26379,10.0.0.2:26380/shop/2")
    client = connect()  # no connection yet: Sentinel is asked at the first command
    pool = client.connection_pool
    assert pool.service_name == "shop"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "secret"
    sentinels = [c.connection_pool.connection_kwargs for c in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"]) for s in sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert all(s.get("password") is None for s in sentinels)  # the primary's password only


def test_a_cluster_url_is_made_only_when_first_used():
    connect = redis_connector("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    assert connect.func is RedisCluster  # checked now, connected later
    store = RedisStore(connect, "p", CLUSTER_BUCKETS)
    assert store.buckets == CLUSTER_BUCKETS
    assert store.key("abc") == f"p:{{{store.scope('abc')}}}:c:abc"


@pytest.mark.parametrize(
    "url",
    [
        "memcached://127.0.0.1:11211",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/shop/x",
        "redis+sentinel:///shop",
        "redis+cluster://127.0.0.1:7000/0",
        "redis+cluster://127.0.0.1",
        "redis://127.0.0.1:6379/0?socket_timeout=soon",
    ],
)
def test_a_bad_url_is_refused_at_once(url):
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        redis_connector(url)
