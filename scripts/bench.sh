#!/usr/bin/env bash
# tenantgate against nginx, side by side in one run (issue 17): builds the release
# binary, installs nginx, wrk, hey and h2load when missing, and runs scripts/bench.py.
#
#   scripts/bench.sh            full mode: 5 interleaved rounds of 10 s per target
#   scripts/bench.sh --short    CI's proof that it works: 1 round of 2 s per target,
#                               on the debug build the tests already made (its figures
#                               mean nothing; a release build would cost CI minutes)
#
# Extra arguments go to bench.py (--rounds N, --seconds S, --json FILE).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v hey >/dev/null || missing+=(hey)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  # policy-rc.d 101: the nginx package must not start a system nginx on port 80. A
  # policy the machine already has is left as it is.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ " $* " == *" --short "* ]]; then
  # The binary `cargo test --all-targets` builds: a no-op after it.
  cargo test --locked --quiet --no-run --all-targets
  cargo build --locked --quiet --manifest-path scripts/floor/Cargo.toml
  export BENCH_BUILD=debug
else
  cargo build --release --locked --quiet --bin tenantgate
  cargo build --release --locked --quiet --manifest-path scripts/floor/Cargo.toml
  export BENCH_BUILD=release
fi
python3 scripts/bench.py "$@"
