#!/usr/bin/env bash
# Fuzzes the chat command parser (fuzz/fuzz_targets/command_parser.rs) with cargo-fuzz and
# libFuzzer for a bounded time. Fails when the fuzzer finds a crash or a broken invariant; the
# input that did it lands in fuzz/artifacts/command_parser/.
#
#   FUZZ_SECONDS        how long to fuzz (default 30)
#   FUZZ_SANITIZER      cargo-fuzz sanitizer (default none: the parser crate has no unsafe code,
#                       and `none` builds on stable rustc; `address` needs RUSTC_BOOTSTRAP=1,
#                       which this script then sets, and runs ~3x slower)
#   FUZZ_TARGET_DIR     build cache of the fuzz target (default ~/.cache/callbridge-fuzz-target)
#   CARGO_FUZZ_VERSION  cargo-fuzz installed when missing (default 0.13.2)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '==> %s\n' "$*"; }

seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-none}"
version="${CARGO_FUZZ_VERSION:-0.13.2}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/callbridge-fuzz-target}"
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo fuzz --version 2>/dev/null | grep -qF "$version"; then
  log "installing cargo-fuzz $version"
  cargo install cargo-fuzz --locked --version "$version"
fi

# Stable rustc builds the target with `-s none` as it is; sanitizers pass -Z flags.
[ "$sanitizer" = none ] || export RUSTC_BOOTSTRAP=1
log "building the fuzz target (sanitizer: $sanitizer, debug assertions on, target dir: $CARGO_TARGET_DIR)"
(cd fuzz && cargo fuzz build --sanitizer "$sanitizer" --debug-assertions command_parser)

triple=$(rustc -vV | sed -n 's/^host: //p')
bin="$CARGO_TARGET_DIR/$triple/release/command_parser"
# The seeds (corpus/command_parser/seed-*) are committed; what the fuzzer adds there is not.
corpus=fuzz/corpus/command_parser
artifacts=fuzz/artifacts/command_parser
mkdir -p "$corpus" "$artifacts"
log_file=$(mktemp)
trap 'rm -f "$log_file"' EXIT

log "fuzzing parse_command for ${seconds}s ($(ls "$corpus" | wc -l) corpus inputs)"
status=0
"$bin" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4200 \
  -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log_file" 2>&1 || status=$?

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_file" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log_file" | tail -1)
if [ "$status" -ne 0 ]; then
  tail -n 60 "$log_file" >&2
  echo "fuzz-parser: FAILED (exit $status) after ${execs:-?} executions; crashing input in $artifacts/" >&2
  echo "  reproduce: $bin $artifacts/<file>" >&2
  exit 1
fi
echo "fuzz-parser: ${execs:-?} executions in ${seconds}s (${rate:-?}/s), $(ls "$corpus" | wc -l) corpus inputs, no crash"
