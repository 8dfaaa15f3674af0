#!/usr/bin/env bash
# The benchmark runner (issue 6): builds the release binaries, starts everything on loopback
# and prints one line per figure (`figure, ours, peer/baseline, ratio`).
#
#   scripts/bench.sh                  quick tier (≤ 10 min), table written to BENCHMARKS.md
#   scripts/bench.sh --tier full      100k and 1M integrations (about an hour)
#   scripts/bench.sh --tier smoke     N = 2,000, seconds per figure (CI: the runner works)
#   scripts/bench.sh --only F4,F6     some figures only
#
# Other arguments go to target/release/catalogd-bench (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/deps.sh

tier=quick
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --tier) tier="${args[$((i + 1))]:-quick}" ;;
    --tier=*) tier="${args[$i]#--tier=}" ;;
  esac
done
write=()
# The smoke tier proves the runner works; its figures are not worth recording.
if [ "$tier" != smoke ]; then write=(--write BENCHMARKS.md); fi

# catalogd, the runner, the target fleet, the bare client and engine-fleet (the engine alone:
# the F1/F2 baselines of bare ractor actors and a no-op probe load).
echo "==> cargo build --release (catalogd and the benchmark binaries)"
cargo build --release -p catalogd -p catalogd-bench --bins

# A million integrations keep many sockets and timers; the default 1024 descriptors are not
# enough for the target fleet or a bare client at full rate.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

exec target/release/catalogd-bench "${write[@]}" "$@"
