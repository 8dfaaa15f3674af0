#!/usr/bin/env bash
# Installs whatever the tests need and is missing, then runs every check and test.
# This is the README's test command and what .ci/run calls, on a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

# PostgreSQL 15 server binaries (initdb, postgres, pg_ctl) for the PostgreSQL half of the tests.
if ! have initdb || ! have postgres; then
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && export PATH="$d:$PATH"; done
  if ! have initdb; then need_apt+=(postgresql); fi
fi
have nats-server || need_apt+=(nats-server)
have prometheus || need_apt+=(prometheus)
have promtool || need_apt+=(prometheus)
have runuser || need_apt+=(util-linux)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && export PATH="$d:$PATH"; done
fi

# PostgreSQL refuses to run as root; the test harness runs it as this user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
fi

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
cargo test --workspace --all-targets "$@"
