#!/usr/bin/env bash
# Installs and starts the real peers the tests talk to. Safe to run again: each step checks
# first. A peer that cannot be had fails the run here, loudly — tests never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- PostgreSQL -----------------------------------------------------------------------------
pg_url="${CALLBRIDGE_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"
pg_hostport="${pg_url#*@}"; pg_hostport="${pg_hostport%%/*}"
pg_host="${pg_hostport%%:*}"; pg_port="${pg_hostport##*:}"
pg_answers() { command -v pg_isready >/dev/null && pg_isready -q -h "$pg_host" -p "$pg_port"; }
if ! pg_answers; then
  log "PostgreSQL does not answer at $pg_host:$pg_port; starting one"
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then apt_install postgresql; fi
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  if ! pg_answers; then
    # A throwaway cluster with trust auth, owned by the postgres user.
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
    dir=/tmp/callbridge-pg
    as_root mkdir -p "$dir" && as_root chown postgres "$dir"
    [ -f "$dir/PG_VERSION" ] || as_root runuser -u postgres -- "$bin/initdb" -D "$dir" -A trust -U postgres >/dev/null
    as_root runuser -u postgres -- "$bin/pg_ctl" -D "$dir" -o "-p $pg_port -k /tmp" -l "$dir/log" -w start >/dev/null
  fi
  pg_answers || { echo "PostgreSQL could not be started at $pg_host:$pg_port" >&2; exit 1; }
fi
db="${pg_url##*/}"
psql -h "$pg_host" -p "$pg_port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
  || psql -h "$pg_host" -p "$pg_port" -U postgres -d postgres -qc "CREATE DATABASE $db"
# Databases left by interrupted runs.
for stale in $(psql -h "$pg_host" -p "$pg_port" -U postgres -d "$db" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'cbt\_%'"); do
  psql -h "$pg_host" -p "$pg_port" -U postgres -d "$db" -qc "DROP DATABASE IF EXISTS $stale WITH (FORCE)" || true
done
log "PostgreSQL answers at $pg_host:$pg_port"

# --- Chromium and playwright-core (room pages in a real browser) -----------------------------
if ! command -v chromium >/dev/null; then
  log "installing Debian's chromium"
  apt_install chromium fonts-dejavu-core
fi
# The browser tests read the daemon's SQLite file (to seal a personal link as a chat would).
if ! command -v sqlite3 >/dev/null; then
  log "installing sqlite3"
  apt_install sqlite3
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing node and npm"
  apt_install nodejs npm
fi
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.package-lock.json 2>/dev/null; then
  log "installing playwright-core (no browser download: the tests use /usr/bin/chromium)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
log "chromium: $(chromium --version 2>/dev/null | head -1)"

# --- coturn (the TURN server the TURN credential tests run; each test starts its own) -------
if ! command -v turnserver >/dev/null || ! command -v turnutils_uclient >/dev/null; then
  log "installing Debian's coturn"
  apt_install coturn
fi
log "coturn: $(turnserver --version 2>/dev/null | head -1)"

# --- Prometheus (scrapes a daemon in tests/metrics.rs, which starts its own) ----------------
if ! command -v prometheus >/dev/null; then
  log "installing Debian's prometheus"
  apt_install prometheus
fi
log "prometheus: $(prometheus --version 2>&1 | head -1)"

# --- cargo-deb (builds the Debian package scripts/test-package.sh checks) --------------------
cargo_deb_version=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
  log "installing cargo-deb $cargo_deb_version"
  cargo install cargo-deb --locked --version "$cargo_deb_version"
fi
log "cargo-deb: $(cargo deb --version 2>/dev/null | head -1)"

# --- Synapse (Matrix homeserver; each test starts its own, see tests/support/synapse.rs) ------
synapse_version=1.163.2
synapse_venv="${CALLBRIDGE_PEERS:-$HOME/.cache/callbridge-peers}/synapse"
synapse_installed() { "$synapse_venv/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null; }
if [ "$(synapse_installed)" != "$synapse_version" ]; then
  log "installing matrix-synapse $synapse_version into $synapse_venv"
  # Synapse itself only from its binary wheel (its source build needs a Rust extension).
  { python3 -m venv "$synapse_venv" \
      && "$synapse_venv/bin/pip" install --quiet --disable-pip-version-check --prefer-binary \
           --only-binary matrix-synapse "matrix-synapse==$synapse_version"; } \
    || { echo "matrix-synapse $synapse_version could not be installed into $synapse_venv" >&2; exit 1; }
  [ "$(synapse_installed)" = "$synapse_version" ] \
    || { echo "matrix-synapse in $synapse_venv is not $synapse_version after installing it" >&2; exit 1; }
fi
log "synapse: $(synapse_installed) in $synapse_venv"
