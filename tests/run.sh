#!/usr/bin/env bash
# Runs Proctor's whole test suite against real Postgres and Redis.
#
# On a fresh Debian machine it installs what is missing (redis-server, PostgreSQL 15, Chromium,
# Node.js and npm from Debian packages; mdBook from crates.io), starts a throwaway Postgres cluster and a Redis on free loopback ports,
# runs `cargo nextest run --workspace` against them with CI=true (so no test can skip for lack
# of infrastructure), stops both on every exit path, and exits with the suite's status.
#
# Extra arguments go to nextest, e.g. `./tests/run.sh -E 'test(readyz)'`; `./tests/run.sh --bench all`
# runs the benchmark (tests/bench) instead: against one release proctord it starts on the same
# Postgres and Redis, or with `--bench --own-servers all` against servers the bench starts itself.
# The benchmark's Postgres keeps the default durability; the test suite's does not fsync.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "need root (or sudo) to run: $*"
    return 1
  fi
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

PGBIN=/usr/lib/postgresql/15/bin
command -v redis-server >/dev/null 2>&1 || { log "installing redis-server"; apt_install redis-server; }
[ -x "$PGBIN/initdb" ] || { log "installing postgresql-15"; apt_install postgresql-15; }
cargo nextest --version >/dev/null 2>&1 || { log "installing cargo-nextest"; cargo install --locked cargo-nextest; }
# The playground's assets are built by proctor-server's build script with npm; its browser test
# drives Debian's Chromium.
command -v npm >/dev/null 2>&1 || { log "installing nodejs and npm"; apt_install nodejs npm; }
command -v chromium >/dev/null 2>&1 || { log "installing chromium"; apt_install chromium; }
command -v tmux >/dev/null 2>&1 || { log "installing tmux (the CLI's terminal test)"; apt_install tmux; }
command -v script >/dev/null 2>&1 || { log "installing bsdutils (script, for terminal tests)"; apt_install bsdutils; }
# `promtool check metrics` lints /metrics (tests/it/metrics.rs); Debian ships it in prometheus.
command -v promtool >/dev/null 2>&1 || { log "installing prometheus (for promtool)"; apt_install prometheus; }
# kubernetes-validate (PyPI, Kubernetes schemas offline) checks deploy/ (tests/it/deploy.rs).
if [ ! -x target/tools/venv/bin/kubernetes-validate ]; then
  log "installing kubernetes-validate into target/tools/venv"
  python3 -m venv target/tools/venv 2>/dev/null \
    || { apt_install python3-venv && python3 -m venv target/tools/venv; } || exit 1
  target/tools/venv/bin/pip install -q kubernetes-validate || exit 1
fi
# mdBook builds the book under docs/ (tests/it/docs.rs); Debian has no package, so it is built
# once from crates.io into target/tools (about a minute on two cores), without its `serve` and
# `watch` features, which the suite does not use.
MDBOOK_VERSION=0.5.4
if [ "$(target/tools/bin/mdbook --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]; then
  log "installing mdbook $MDBOOK_VERSION into target/tools/bin"
  cargo install --quiet --locked mdbook --version "$MDBOOK_VERSION" --no-default-features \
    --features search --root target/tools || exit 1
fi
export PROCTOR_MDBOOK="$PWD/target/tools/bin/mdbook"

# A loopback port nobody listens on (bash's /dev/tcp fails to connect to a free port).
free_port() {
  local port
  while :; do
    port=$(( (RANDOM << 15 | RANDOM) % 20000 + 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

wait_for_port() {
  local port=$1 what=$2
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "$what did not start on port $port"
  return 1
}

work=$(mktemp -d /tmp/proctor-tests-XXXXXX)
pgdata="$work/pg"
redis_pid=
pg_started=

# Postgres refuses to run as root: run it as the postgres user then.
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$work"
  as_postgres() { runuser -u postgres -- "$@"; }
else
  as_postgres() { "$@"; }
fi

proctord_pid=

cleanup() {
  local status=$?
  if [ -n "$proctord_pid" ]; then
    kill "$proctord_pid" 2>/dev/null || true
    wait "$proctord_pid" 2>/dev/null || true
  fi
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [ -n "$pg_started" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The test suite trades durability for speed; the benchmark measures what production gets:
# Postgres's default durability (fsync, synchronous commit, full-page writes all on).
if [ "${1:-}" = "--bench" ]; then
  pg_durability="durable (default fsync, synchronous_commit, full_page_writes)"
  pg_options=""
else
  pg_durability="fast (fsync=off, synchronous_commit=off: tests only)"
  pg_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
pg_port=$(free_port)
log "starting PostgreSQL 15 on 127.0.0.1:$pg_port, $pg_durability"
# Without -N: initdb syncs its files, as a real cluster's would be.
as_postgres "$PGBIN/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
  $([ -n "$pg_options" ] && echo -N) >"$work/initdb.log"
as_postgres "$PGBIN/pg_ctl" -D "$pgdata" -l "$work/postgres.log" -w -t 60 \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $work -c max_connections=300 $pg_options" \
  start >/dev/null
pg_started=1

redis_port=$(free_port)
log "starting Redis on 127.0.0.1:$redis_port"
mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/redis" \
  >"$work/redis.log" 2>&1 &
redis_pid=$!
wait_for_port "$redis_port" Redis

export PROCTOR_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export PROCTOR_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export CI="${CI:-true}"

set +e
if [ "${1:-}" = "--bench" ]; then
  # `./tests/run.sh --bench [scenario] [--quick]`: the benchmark against the same throwaway
  # Postgres and Redis (see tests/bench/main.rs).
  shift
  export PROCTOR_BENCH_DATABASE_URL="$PROCTOR_TEST_DATABASE_URL"
  export PROCTOR_BENCH_REDIS_URL="$PROCTOR_TEST_REDIS_URL"
  log "building the benchmark (release)"
  cargo build --release --bin proctord --bin proctor-run --bin proctor-bench || exit 1
  if [ "${1:-}" = "--own-servers" ]; then
    # The bench starts a server per scenario (and compares the in-memory bus with Redis).
    shift
    target/release/proctor-bench "$@"
  else
    # The bench measures one running proctord on Postgres and Redis.
    app_port=$(free_port)
    log "starting proctord (release, Postgres + Redis) on 127.0.0.1:$app_port"
    mkdir -p "$work/proctord"
    env -i PATH="$PATH" HOME="$work/proctord" \
      PROCTOR_APP_PORT="$app_port" PROCTOR_DATA_DIR="$work/proctord" \
      PROCTOR_DATABASE_URL="$PROCTOR_TEST_DATABASE_URL" PROCTOR_AUTO_MIGRATE=true \
      PROCTOR_REDIS_URL="$PROCTOR_TEST_REDIS_URL" PROCTOR_MAX_PARALLEL_RUNS=64 \
      PROCTOR_SCHEDULER_ENABLED=true PROCTOR_REGISTER_EXAMPLES=false \
      PROCTOR_GRAPHQL_MAX_COMPLEXITY=100000 PROCTOR_LOG_LEVEL=warn \
      target/release/proctord >"$work/proctord.log" 2>&1 &
    proctord_pid=$!
    wait_for_port "$app_port" proctord
    target/release/proctor-bench --url "http://127.0.0.1:$app_port" --pid "$proctord_pid" "$@"
  fi
else
  log "running the test suite"
  cargo nextest run --workspace --no-fail-fast "$@"
fi
status=$?
set -e
exit "$status"
