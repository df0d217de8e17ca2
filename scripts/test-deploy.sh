#!/usr/bin/env bash
# Follows the README's "Deploy on Debian/Ubuntu" steps on this machine, as far as they go
# without systemd running, so that section cannot rot silently: the steps between the
# README's deploy-steps markers run as written (the built binary stands in for the release
# one, and runuser for sudo where sudo is missing), then systemd-analyze verifies the unit, the
# daemon starts from /var/lib/callbridge as the callbridge user with the installed config,
# answers /healthz, and a room is minted from the shell as that user.
#
#   CALLBRIDGE_BIN   the daemon binary (scripts/test sets it)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CALLBRIDGE_BIN:?set CALLBRIDGE_BIN to the daemon binary}"
[ "$(id -u)" = 0 ] || { echo "test-deploy: the deploy steps run as root (useradd, /etc, /var/lib)" >&2; exit 1; }

steps=$(awk '/<!-- deploy-steps -->/ {on = 1; next} /<!-- \/deploy-steps -->/ {on = 0} on && !/^```/' README.md)
[ -n "$steps" ] || { echo "test-deploy: no deploy steps between the README's markers" >&2; exit 1; }
steps=${steps//target\/release\/callbridge/$bin}
command -v sudo >/dev/null || steps=${steps//sudo -u callbridge/runuser -u callbridge --}
echo "==> the README's deploy steps"
bash -euxo pipefail -c "$steps"

echo "==> the unit"
systemd-analyze verify contrib/callbridge.service

echo "==> the daemon as callbridge, from /var/lib/callbridge"
config=/etc/callbridge/callbridge.toml
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# This machine's free port instead of 8080, and the SFU on loopback.
sed -i -e "s|^listen = \"127.0.0.1:8080\"|listen = \"127.0.0.1:$port\"|" \
       -e 's|^listen = "0.0.0.0:50000"|listen = "127.0.0.1:0"|' "$config"
# The database an earlier run of this test left (this machine runs it again and again, from
# builds whose unreleased migrations may differ): each run starts the daemon on a fresh one.
rm -f /var/lib/callbridge/callbridge.db /var/lib/callbridge/callbridge.db-wal /var/lib/callbridge/callbridge.db-shm
clean_env=(env -u CALLBRIDGE_BIN -u CALLBRIDGE_TEST_PG -u CALLBRIDGE_LOAD -u CALLBRIDGE_ARTIFACTS)
log=$(mktemp)
(cd /var/lib/callbridge && exec "${clean_env[@]}" runuser -u callbridge -- /usr/local/bin/callbridge run --config "$config") >"$log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null || true; wait $daemon 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { cat "$log"; echo "test-deploy: the daemon exited" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/healthz"; echo
[ "$(stat -c '%U %a' /var/lib/callbridge)" = "callbridge 700" ] || { echo "test-deploy: /var/lib/callbridge is not the daemon's alone" >&2; exit 1; }
[ "$(stat -c '%U %a' /var/lib/callbridge/api-token)" = "callbridge 600" ] || { echo "test-deploy: api-token is readable by others" >&2; exit 1; }
link=$(cd / && "${clean_env[@]}" runuser -u callbridge -- /usr/local/bin/callbridge --config "$config" create --title "Deploy check")
echo "minted: $(grep -o "https://call.example.org/r/[A-Za-z0-9]*" <<<"$link" | head -1)"
grep -q "https://call.example.org/r/" <<<"$link" || { echo "test-deploy: no link under the configured public_url" >&2; exit 1; }
echo "==> the deploy steps hold"
