#!/usr/bin/env bash
# Make sure the PostgreSQL the prediction-log tests write to is up and has its
# database: CTR_DL_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/test).
# Starts a local cluster if none answers (service, then pg_ctlcluster), and
# creates the database if it is missing.
set -euo pipefail
url=${CTR_DL_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
rest=${url#*://}
userhost=${rest%%/*}
db=${rest#*/}
user=${userhost%@*}
hostport=${userhost#*@}
host=${hostport%:*}
port=${hostport##*:}
if ! command -v pg_isready >/dev/null; then
  echo "postgres: pg_isready not found; install PostgreSQL (apt-get install postgresql)" >&2
  exit 1
fi
if ! pg_isready -q -h "$host" -p "$port"; then
  echo "postgres: nothing answers at $host:$port; starting the local cluster" >&2
  service postgresql start >/dev/null 2>&1 || {
    for v in /etc/postgresql/*/; do
      pg_ctlcluster "$(basename "$v")" main start || true
    done
  }
  for _ in $(seq 1 30); do
    pg_isready -q -h "$host" -p "$port" && break
    sleep 1
  done
  pg_isready -q -h "$host" -p "$port" || {
    echo "postgres: $host:$port still does not answer; the prediction-log tests need it" >&2
    exit 1
  }
fi
if ! psql -h "$host" -p "$port" -U "$user" -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  createdb -h "$host" -p "$port" -U "$user" "$db"
fi
