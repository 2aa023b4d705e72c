#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis the tests use are up; start them if they are down,
# and fail loudly, naming the service, if that does not work.
set -u

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo "PostgreSQL is down on 127.0.0.1:5432; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "FATAL: could not start PostgreSQL (127.0.0.1:5432)" >&2; exit 1; }
fi

if ! redis_up; then
  echo "Redis is down on 127.0.0.1:6379; starting it" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
  redis_up || { echo "FATAL: could not start Redis (127.0.0.1:6379)" >&2; exit 1; }
fi
