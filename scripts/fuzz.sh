#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60). Needs cargo-fuzz
# (`cargo install cargo-fuzz`); works on the stable toolchain without sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
for target in rewrite_json namespace; do
  echo "== fuzz $target for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -max_len=4096
done
