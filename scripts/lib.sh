# Shared helpers of the project's scripts.

step() { printf '\n==> %s\n' "$*"; }

pg_ready() {
  python3 - "$PAYBRIDGE_TEST_PG_URL" <<'PY' >/dev/null 2>&1
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=2).close()
PY
}

# Starts the machine's PostgreSQL cluster if it is installed but stopped. With CI=true
# an unreachable server is an error; elsewhere the PostgreSQL tests are skipped.
ensure_postgres() {
  if pg_ready; then return 0; fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_ready && return 0; sleep 1; done
  fi
  if [ "${CI:-}" = "true" ]; then
    echo "ERROR: PostgreSQL is unreachable at $PAYBRIDGE_TEST_PG_URL and CI=true" >&2
    exit 1
  fi
  echo "WARNING: PostgreSQL is unreachable at $PAYBRIDGE_TEST_PG_URL: its half of the tests will be SKIPPED" >&2
}

# Drops the databases a test run left behind (tests drop their own; this is for crashes).
drop_test_databases() {
  local run="$1"
  command -v psql >/dev/null 2>&1 || return 0
  pg_ready || return 0
  psql "$PAYBRIDGE_TEST_PG_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'pbt\_${run}\_%'" 2>/dev/null |
    while read -r db; do psql "$PAYBRIDGE_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done
}

# Debian's Chromium and the npm packages of the browser tests (tests/browser:
# playwright-core, typescript), installed when missing. npm packages are reinstalled
# only when package-lock.json changes.
ensure_browser_tools() {
  if [ ! -x "${PAYBRIDGE_CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "installing Debian's chromium for the browser tests"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  fi
  local dir=tests/browser stamp=tests/browser/node_modules/.package-lock.stamp
  if [ -d "$dir/node_modules/playwright-core" ] && cmp -s "$dir/package-lock.json" "$stamp"; then return 0; fi
  echo "installing the browser test packages (npm ci in $dir)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$stamp"
}

# The Python virtualenv of the tests (.venv-test), made or brought up to date from
# scripts/requirements-test.txt. It is rebuilt only when that file changes.
ensure_test_venv() {
  local venv=.venv-test stamp=.venv-test/.requirements
  if [ -x "$venv/bin/python" ] && cmp -s scripts/requirements-test.txt "$stamp"; then return 0; fi
  echo "installing the test tools into $venv (localstripe, stripe, standardwebhooks, schemathesis)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  cp scripts/requirements-test.txt "$stamp"
}
