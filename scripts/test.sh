#!/usr/bin/env bash
# Installs whatever the tests need and is missing, then runs every check and test, and the
# benchmark runner's smoke tier. This is the README's test command and what .ci/run calls,
# on a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/deps.sh

echo "==> versions"
rustc --version
postgres --version
nats-server --version 2>/dev/null || true
prometheus --version 2>&1 | head -1 || true

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
# The corpora run on their own below, with their output shown.
cargo test --workspace --all-targets "$@" -- --skip chaos:: --skip corpus:: --skip ssrf:: --skip cluster::

echo "==> corpora: chaos, SSRF, malformed input, tenant matrix, rate limits, the 3-node cluster (each prints its counts)"
cargo test -p catalogd --test it -- chaos:: corpus:: ssrf:: cluster:: --show-output

echo "==> OpenAPI conformance (schemathesis: every operation, all phases and checks)"
scripts/conformance.sh --binary target/debug/catalogd

echo "==> benchmark runner, smoke tier (checks the runner works, not the figures)"
scripts/bench.sh --tier smoke
