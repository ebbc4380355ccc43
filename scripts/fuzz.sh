#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60), starting from the seeds in
# fuzz/seeds/TARGET (the growing corpus stays in fuzz/corpus, untracked). Needs
# cargo-fuzz (`cargo install cargo-fuzz`); works on the stable toolchain without
# sanitizers. `scripts/fuzz.sh 300 path query` runs only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rewrite_json namespace path query respond config identity)
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "fuzz/corpus/$target"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
    -- -max_total_time="$seconds" -max_len=65536
done
