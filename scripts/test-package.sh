#!/usr/bin/env bash
# The Debian package: `cargo deb` packs the built binary (the test command's debug build stands
# in for the release one), and the package must hold the binary, the example config as a
# conffile, the systemd unit (which systemd-analyze accepts) and a postinst that makes the
# callbridge user and its 0700 data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/callbridge-target}"
fail() { echo "test-package: $*" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The dev profile's binary (cargo-deb warns that packages are for releases: this one is only
# looked into, never shipped, and a release build would double the test command's build).
cargo deb --locked --profile dev --no-build --output "$out/callbridge.deb" >/dev/null
deb="$out/callbridge.deb"
info=$(dpkg-deb --info "$deb")
contents=$(dpkg-deb --contents "$deb")
echo "$info" | grep -E '^ (Package|Version|Depends|Section):'
for line in ' Package: callbridge' ' Section: net'; do
  grep -qx "$line" <<<"$info" || fail "no '$line' in the control file"
done
grep -q '^ Depends:.*adduser' <<<"$info" || fail "the package does not depend on adduser"
for path in ./usr/bin/callbridge ./etc/callbridge/callbridge.toml ./usr/lib/systemd/system/callbridge.service ./usr/share/doc/callbridge/README.md; do
  grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
grep -q '^-rwxr-xr-x .* ./usr/bin/callbridge$' <<<"$contents" || fail "the binary is not executable"

dpkg-deb --control "$deb" "$out/control"
grep -qx '/etc/callbridge/callbridge.toml' "$out/control/conffiles" || fail "the config is not a conffile"
grep -q 'adduser --system' "$out/control/postinst" || fail "postinst makes no system user"
grep -q 'install -d -m 0700 -o callbridge' "$out/control/postinst" || fail "postinst makes no private data directory"
grep -q 'systemctl' "$out/control/postinst" || fail "postinst does not enable the unit"

dpkg-deb --extract "$deb" "$out/root"
cmp -s "$out/root/etc/callbridge/callbridge.toml" config.example.toml || fail "the packaged config is not the example"
systemd-analyze verify "$out/root/usr/lib/systemd/system/callbridge.service"
for hardening in 'User=callbridge' 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/callbridge' 'NoNewPrivileges=true' \
                 'PrivateTmp=true' 'RestrictAddressFamilies=' 'CapabilityBoundingSet=' 'Restart=on-failure'; do
  grep -q "^$hardening" "$out/root/usr/lib/systemd/system/callbridge.service" || fail "the unit lacks $hardening"
done
echo "test-package: $(basename "$deb") holds the binary, the conffile, the unit and the user"
