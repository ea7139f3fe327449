#!/usr/bin/env bash
# What the test suite needs beyond npm: a redis-server binary (the Redis Streams tests start their own,
# on a loopback port, with persistence off). Installs Debian's package when it is missing.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q redis-server
# The package starts a system-wide server; the tests do not use it.
$SUDO service redis-server stop >/dev/null 2>&1 || true
