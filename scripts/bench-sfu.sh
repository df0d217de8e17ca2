#!/usr/bin/env bash
# The SFU benchmark (benches/sfu) with Janus's VideoRoom beside callbridge in the same run, as
# BENCHMARKS.md reports it. Installs Debian's janus (idempotently), builds the benchmark, then
# runs everything inside a network namespace of its own: Janus offers no loopback candidates,
# so the namespace gets an interface of its own (one end of a veth pair, 10.99.0.1) that Janus
# and its synthetic clients use.
# Extra arguments go to the benchmark (e.g. --sizes 10,25 --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/callbridge-target}"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
command -v janus >/dev/null || { $sudo apt-get update -qq; DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq janus; }

# Built outside the namespace (it needs the registry); the executable is run inside.
bench=$(cargo bench --locked --bench sfu --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "sfu": print(m["executable"])')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r /etc/janus "$work/conf"
python3 - "$work/conf" <<'PY'
import os, re, sys
conf = sys.argv[1]
def edit(name, pairs):
    p = os.path.join(conf, name); s = open(p).read()
    for section, key, value in pairs:
        # `key = value` first in `section: {`, and no other setting of it there (libconfig
        # refuses a key twice).
        start = re.search(r'^%s: \{\n' % section, s, flags=re.M).end()
        end = s.index('\n}', start)
        body = re.sub(r'^\s*%s\s*=.*\n' % key, '', s[start:end + 1], flags=re.M)
        s = s[:start] + '\t%s = %s\n' % (key, value) + body + s[end + 1:]
    open(p, 'w').write(s)
plugins = ",".join(f for f in os.listdir("/usr/lib/x86_64-linux-gnu/janus/plugins") if f.endswith(".so") and "videoroom" not in f)
transports = ",".join(f for f in os.listdir("/usr/lib/x86_64-linux-gnu/janus/transports") if f.endswith(".so") and "http" not in f)
events = ",".join(f for f in os.listdir("/usr/lib/x86_64-linux-gnu/janus/events") if f.endswith(".so"))
edit("janus.jcfg", [("general", "configs_folder", '"%s"' % conf), ("general", "debug_level", "3"),
    ("nat", "ice_enforce_list", '"sfu0"'), ("plugins", "disable", '"%s"' % plugins),
    ("transports", "disable", '"%s"' % transports), ("loggers", "disable", '"libjanus_jsonlog.so"'), ("events", "disable", '"%s"' % events)])
edit("janus.transport.http.jcfg", [("general", "ip", '"10.99.0.1"'), ("general", "port", "8088")])
PY

unshare -n bash -s "$bench" "$work" "$@" <<'IN_NAMESPACE'
set -euo pipefail
bench=$1 work=$2; shift 2
ip link set lo up
ip link add sfu0 type veth peer name sfu1
ip addr add 10.99.0.1/24 dev sfu0
ip link set sfu0 up
ip link set sfu1 up
janus -F "$work/conf" -C "$work/conf/janus.jcfg" -L "$work/janus.log" -o >/dev/null 2>&1 &
janus=$!
trap 'kill $janus 2>/dev/null' EXIT
for _ in $(seq 100); do curl -fsS http://10.99.0.1:8088/janus/info >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS http://10.99.0.1:8088/janus/info >/dev/null || { tail -20 "$work/janus.log"; echo "janus did not start" >&2; exit 1; }
"$bench" --bench --janus http://10.99.0.1:8088/janus --janus-pid "$janus" --janus-ip 10.99.0.1 "$@"
IN_NAMESPACE
