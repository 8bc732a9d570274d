# Sourced by run.sh and run-smoke.sh.
LOADTEST_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARTILLERY="$LOADTEST_DIR/node_modules/.bin/artillery"

# Installs artillery (pinned in package-lock.json) when it is missing.
loadtest_deps() {
  if [ ! -x "$ARTILLERY" ]; then
    echo "loadtest: installing artillery (npm ci in loadtest/, ~1 min)" >&2
    # A dependency would otherwise try to download a browser build.
    (cd "$LOADTEST_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
}

# Refuses any target that is not on this machine's loopback.
loadtest_check_target() {
  case "$1" in
    http://127.*|https://127.*|http://localhost[:/]*|http://localhost|https://localhost[:/]*|http://\[::1\]*|https://\[::1\]*) return 0 ;;
    *) echo "loadtest: refusing target '$1': only loopback addresses (127.0.0.0/8, localhost, [::1])" >&2; return 1 ;;
  esac
}

# Preloads the telemetry stub into every node process started afterwards
# (otherwise each artillery run stalls ~12 s at exit on a telemetry DNS look-up).
loadtest_env() {
  export NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--require $LOADTEST_DIR/lib/no-telemetry.cjs"
  export ARTILLERY_DISABLE_TELEMETRY=true
}
