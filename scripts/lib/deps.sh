# Sourced by scripts/test.sh and scripts/bench.sh: installs with apt-get whatever real
# component the tests and benchmarks start and is missing, and puts PostgreSQL's server
# binaries on the PATH. A clean clone on a fresh machine needs nothing else.

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

# PostgreSQL 15 server binaries (initdb, postgres, pg_ctl).
if ! have initdb || ! have postgres; then
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && export PATH="$d:$PATH"; done
  if ! have initdb; then need_apt+=(postgresql); fi
fi
have nats-server || need_apt+=(nats-server)
have prometheus || need_apt+=(prometheus)
have promtool || need_apt+=(prometheus)
have runuser || need_apt+=(util-linux)
# The benchmarks' peer and load tool.
have prometheus-blackbox-exporter || need_apt+=(prometheus-blackbox-exporter)
have wrk || need_apt+=(wrk)
# The status page's browser test: headless Chromium, driven from node.
have chromium || need_apt+=(chromium)
have node || need_apt+=(nodejs)
have npm || need_apt+=(npm)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && export PATH="$d:$PATH"; done
fi
# Debian starts the packaged services; the benchmarks start their own on loopback.
if have systemctl; then
  systemctl stop prometheus-blackbox-exporter prometheus nats-server >/dev/null 2>&1 || true
fi

# PostgreSQL refuses to run as root; the harness runs it as this user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
fi

# schemathesis (pinned) for scripts/conformance.sh, in a venv of its own.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/catalogd/schemathesis-$SCHEMATHESIS_VERSION"
export SCHEMATHESIS_VERSION SCHEMATHESIS_VENV
if [ ! -x "$SCHEMATHESIS_VENV/bin/st" ]; then
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
  have python3 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null; }
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# playwright-core (drives /usr/bin/chromium; downloads no browser of its own) and axe-core
# (the accessibility check), pinned, for tests/it/status_browser.rs, in a cache dir of their own.
BROWSER_TEST_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/catalogd/browser-test-1"
export CATALOGD_BROWSER_MODULES="$BROWSER_TEST_DIR/node_modules"
if [ ! -d "$CATALOGD_BROWSER_MODULES/playwright-core" ] || [ ! -f "$CATALOGD_BROWSER_MODULES/axe-core/axe.min.js" ]; then
  echo "==> installing playwright-core and axe-core into $BROWSER_TEST_DIR"
  mkdir -p "$BROWSER_TEST_DIR"
  npm install --prefix "$BROWSER_TEST_DIR" --no-audit --no-fund --silent \
    playwright-core@1.65.1 axe-core@4.14.1 >/dev/null
fi
