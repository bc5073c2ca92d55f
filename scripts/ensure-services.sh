#!/usr/bin/env bash
# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) must run for the tests. Start them when they
# are installed but stopped; install Redis/PostgreSQL from Debian when missing. With CI=true a service
# that still cannot be reached fails here, loudly, instead of letting tests skip.
set -uo pipefail
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi

pg_up()    { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
apt_ready=
apt_install() {
  [[ -n $apt_ready ]] || { $SUDO apt-get update -qq; apt_ready=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! pg_up; then
  command -v pg_ctlcluster >/dev/null || { echo "installing PostgreSQL..."; apt_install postgresql; }
  for version in $(ls /etc/postgresql 2>/dev/null); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  done
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
  command -v redis-server >/dev/null || { echo "installing Redis..."; apt_install redis-server; }
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
fi

status=0
pg_up && echo "PostgreSQL: up" || { echo "PostgreSQL: NOT reachable on 127.0.0.1:5432"; status=1; }
redis_up && echo "Redis: up" || { echo "Redis: NOT reachable on 127.0.0.1:6379"; status=1; }
if [[ $status -ne 0 && ${CI:-} == "true" ]]; then
  echo "CI=true: the tests need these services; failing." >&2
  exit 1
fi
exit 0
