#!/usr/bin/env bash
# Installs the system tools the tests use as independent peers (mbpoll, node-opcua, chromium).
# Idempotent and quiet when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v mbpoll >/dev/null 2>&1 || need_apt+=(mbpoll)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup_system: missing ${need_apt[*]} and not root; dependent tests will be skipped" >&2
  fi
fi
