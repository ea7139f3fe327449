#!/usr/bin/env bash
# What the test suite needs beyond npm, from Debian's packages, each installed only when missing:
# - redis-server: the Redis Streams tests start their own, on a loopback port, with persistence off;
# - chromium: the dashboard test drives it headless through playwright-core (which downloads no browser).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The redis package starts a system-wide server; the tests do not use it.
$SUDO service redis-server stop >/dev/null 2>&1 || true
