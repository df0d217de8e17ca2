#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with schemathesis: starts the daemon on a
# throwaway SQLite database and port, lets schemathesis generate valid and invalid requests for
# every operation (and chains of them: create a room, then lock, join, knock, end it), and fails
# on any 5xx, on an answer the document does not describe (status, content type, schema), on a
# valid request refused or an invalid one accepted, on a request that skips auth and succeeds,
# and on every other check schemathesis has.
#
#   CALLBRIDGE_BIN       daemon binary (default $CARGO_TARGET_DIR/debug/callbridge; built if missing)
#   FUZZ_API_EXAMPLES    test cases per operation and phase (default 500: ~1 min, ~5,000 requests)
#   FUZZ_API_SECONDS     instead of a count: fuzz and chain requests until this many seconds pass
#   FUZZ_API_CHECKS      schemathesis checks, comma-separated (default: all)
#   FUZZ_API_SEED        fixes schemathesis's random seed (to replay a run)
#   FUZZ_API_REPORT_DIR  keep the JUnit/JSON/HAR reports and the daemon's log here
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '==> %s\n' "$*"; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/callbridge-target}"
bin="${CALLBRIDGE_BIN:-$CARGO_TARGET_DIR/debug/callbridge}"
examples="${FUZZ_API_EXAMPLES:-500}"
checks="${FUZZ_API_CHECKS:-all}"
st_version=4.32.5
venv="$HOME/.cache/callbridge-peers/schemathesis"

# --- schemathesis, in a venv outside the clone ------------------------------------------------
if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$st_version"; then
  log "installing schemathesis $st_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$st_version"
fi

# --- the daemon -------------------------------------------------------------------------------
if [ ! -x "$bin" ]; then
  log "building $bin"
  cargo build --locked --bin callbridge
fi
work=$(mktemp -d)
reports="${FUZZ_API_REPORT_DIR:-$work/reports}"
mkdir -p "$reports" && reports=$(cd "$reports" && pwd)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
cat >"$work/config.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
# Fuzz the join gate itself, not its rate limiter.
join_rate_per_minute = 0
socket_rate_per_minute = 0

[storage]
url = "sqlite://$work/fuzz.db"
data_dir = "$work/data"

[api]
token = "$token"

[sfu]
listen = "127.0.0.1:0"
EOF
base="http://127.0.0.1:$port"
RUST_LOG="${RUST_LOG:-warn}" "$bin" --config "$work/config.toml" run >"$reports/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$reports/daemon.log" >&2; echo "fuzz-api: the daemon exited" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null || { cat "$reports/daemon.log" >&2; echo "fuzz-api: no /healthz at $base" >&2; exit 1; }
log "daemon $bin answers at $base"

# State, not data, decides these answers to valid requests: an ended room (410), a locked one
# (423), a scheduled one that has not opened yet (425: the fuzzer may create one with a far
# `starts_at`, then join it).
cat >"$work/schemathesis.toml" <<'EOF'
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "410", "423", "425", "429"]
EOF

# --- schemathesis -----------------------------------------------------------------------------
log "schemathesis $st_version: ${FUZZ_API_SECONDS:+${FUZZ_API_SECONDS}s, }$examples examples per operation"
status=0
# From the temporary directory: schemathesis and hypothesis keep their state (.schemathesis/,
# .hypothesis/) in the working directory, and the clone should not get them.
(cd "$work" && "$venv/bin/st" --config-file "$work/schemathesis.toml" run "$base/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks "$checks" \
  --max-examples "$examples" --workers 1 \
  ${FUZZ_API_SECONDS:+--max-time "$FUZZ_API_SECONDS"} ${FUZZ_API_SEED:+--seed "$FUZZ_API_SEED"} \
  --request-timeout 10 --no-color \
  --report junit,json,har --report-dir "$reports" \
  --report-json-path "$reports/schemathesis.json" --report-har-path "$reports/requests.har") \
  || status=$?

if ! kill -0 "$pid" 2>/dev/null; then
  tail -n 40 "$reports/daemon.log" >&2
  echo "fuzz-api: the daemon died during the run" >&2
  status=1
fi
summary=$(python3 - "$reports/schemathesis.json" "$reports/requests.har" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
try:
    requests = len(json.load(open(sys.argv[2]))["log"]["entries"])
except (OSError, ValueError, KeyError):
    requests = "?"
ops, cases = run["operations"], run["test_cases"]
failures = sum(f.get("count", 1) for f in run.get("failures", []))
print(f'{ops["tested"]}/{ops["total"]} operations, {cases["generated"]} test cases, {requests} requests, '
      f'{failures} failures, {len(run.get("errors", []))} errors in {run["running_time"]:.0f}s')
EOF
) || summary="(no report)"
if [ "$status" -ne 0 ]; then
  echo "fuzz-api: FAILED (schemathesis exit $status): $summary" >&2
  exit 1
fi
echo "fuzz-api: $summary"
