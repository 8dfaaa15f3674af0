#!/usr/bin/env bash
# The OpenAPI conformance run: starts a catalogd daemon (SQLite in a temp dir, NATS off,
# the default SSRF-safe egress) with a known HS256 key, mints an admin token, and drives
# every operation of GET /api/v1/openapi.json with schemathesis (pinned in scripts/lib/deps.sh,
# which installs it into a venv under ~/.cache/catalogd) through all its phases (examples,
# coverage, fuzzing, stateful) and all its checks. Any failure is a non-zero exit. The hooks
# in scripts/conformance_hooks.py generate cursors and apply the one allowance of the issue:
# a schema-valid request refused by a documented cross-field rule (`x-cross-field-rules`).
#
# Usage: scripts/conformance.sh [--binary PATH] [extra schemathesis options...]
# Environment: CONFORMANCE_MAX_EXAMPLES (default 30) bounds the fuzzing phase per operation.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
if [ "${1:-}" = "--binary" ]; then
  binary="$2"
  shift 2
fi
if [ -z "$binary" ]; then
  cargo build --quiet -p catalogd --bin catalogd
  binary="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/catalogd"
fi

# Installs what is missing (schemathesis into its venv among them).
. scripts/lib/deps.sh
venv="$SCHEMATHESIS_VENV"

work="$(mktemp -d)"
daemon=""
cleanup() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
http_port="$(free_port)"
metrics_port="$(free_port)"
base="http://127.0.0.1:$http_port"

export CONFORMANCE_JWT_SECRET
CONFORMANCE_JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
cat >"$work/catalogd.toml" <<EOF
[http]
listen = "127.0.0.1:$http_port"
[database]
url = "sqlite://$work/catalogd.db"
[auth]
jwt_secret_env = "CONFORMANCE_JWT_SECRET"
generated_key_file = "$work/jwt.key"
[egress]
allow_private = false
[nats]
url = ""
[metrics]
listen = "127.0.0.1:$metrics_port"
[plugins]
directory = "$work/plugins"
[secrets]
directory = "$work/secrets"
EOF

RUST_LOG="${RUST_LOG:-warn}" "$binary" --config "$work/catalogd.toml" serve >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 1 100); do
  if curl -fsS "$base/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$daemon" 2>/dev/null; then cat "$work/daemon.log"; echo "daemon exited" >&2; exit 1; fi
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null

token="$("$binary" --config "$work/catalogd.toml" token --tenant conformance \
  --scope integrations.admin --scope integrations.read --subject schemathesis --ttl 1h)"

echo "==> schemathesis $SCHEMATHESIS_VERSION against $base (all phases, all checks)"
status=0
# Run from the temp dir: schemathesis keeps a cache of failing cases in ./.schemathesis.
scripts="$PWD/scripts"
(cd "$work" && SCHEMATHESIS_HOOKS=conformance_hooks PYTHONPATH="$scripts${PYTHONPATH:+:$PYTHONPATH}" \
"$venv/bin/st" run "$base/api/v1/openapi.json" \
  --url "$base" \
  --header "Authorization: Bearer $token" \
  --phases examples,coverage,fuzzing,stateful \
  --checks all \
  --max-examples "${CONFORMANCE_MAX_EXAMPLES:-30}" \
  --seed "${CONFORMANCE_SEED:-11}" \
  --workers 1 \
  --no-color \
  --generation-database none \
  "$@") || status=$?

if ! kill -0 "$daemon" 2>/dev/null; then
  echo "the daemon died during the run" >&2
  tail -50 "$work/daemon.log" >&2
  exit 1
fi
if grep -q "panicked" "$work/daemon.log"; then
  echo "the daemon panicked during the run" >&2
  grep -A5 "panicked" "$work/daemon.log" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "conformance: schemathesis reported failures (exit $status)" >&2
fi
exit "$status"
