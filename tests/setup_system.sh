#!/usr/bin/env bash
# Installs the system tools the tests use as independent peers (mbpoll, node-opcua, chromium).
# Idempotent and quiet when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v mbpoll >/dev/null 2>&1 || need_apt+=(mbpoll)
# the status page browser test drives Debian's chromium through its chromedriver (selenium)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# the OPC UA interop test installs node-opcua with npm (tests/node/package.json)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    # quiet on success (debconf chatters on stderr); the whole output on failure
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"; } \
      >"$apt_log" 2>&1; then
      cat "$apt_log" >&2
      rm -f "$apt_log"
      exit 1
    fi
    rm -f "$apt_log"
  else
    echo "setup_system: missing ${need_apt[*]} and not root; the tests that need them will fail" >&2
  fi
fi
