#!/usr/bin/env bash
# What the test suite needs beyond npm, from Debian's packages, each installed only when missing:
# - redis-server: the Redis Streams tests start their own, on a loopback port, with persistence off;
# - chromium: the dashboard test drives it headless through playwright-core (which downloads no browser);
# - wrk and nghttp2-client (h2load): `bench/protocols` drives REST and gRPC with them, load generators in C, so the
#   figures measure the server, not a Node client sharing its cores;
# - docker.io and debootstrap: the container test builds a base image from Debian's packages and the Dockerfile on
#   it, and needs a running dockerd, started here when none answers. Without them that test skips, saying why, so
#   nothing in this part fails the script.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
optional=()
command -v dockerd >/dev/null 2>&1 || optional+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || optional+=(debootstrap)

if [ "${#missing[@]}" -gt 0 ] || [ "${#optional[@]}" -gt 0 ]; then
  $SUDO apt-get update -q
fi
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The redis package starts a system-wide server; the tests do not use it.
  $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
if [ "${#optional[@]}" -gt 0 ]; then
  $SUDO apt-get install -y -q --no-install-recommends "${optional[@]}" ||
    echo "install-test-deps: could not install ${optional[*]}; the container test will skip" >&2
fi

# dockerd, when installed and not answering: started in the background, in a session of its own so that it outlives
# this script, with its log in /var/log/batched-fn-dockerd.log. Its defaults (overlay2, iptables) work on these
# machines; where they do not, a second try without iptables and with the vfs storage driver (slow, but it needs
# nothing of the kernel) is enough for the tests, which use the host's network only.
docker_up() { timeout 10 docker info >/dev/null 2>&1; }
start_dockerd() {
  local pid
  # In `sh -c` without job control the background child leads no group, so setsid makes the session without forking
  # and $! is dockerd's own pid.
  pid="$($SUDO sh -c 'setsid dockerd "$@" >>/var/log/batched-fn-dockerd.log 2>&1 </dev/null & echo $!' sh "$@")"
  for _ in $(seq 1 30); do
    docker_up && return 0
    sleep 1
  done
  # Stop the daemon this try started, and only it, so the next try does not meet it.
  $SUDO kill "$pid" >/dev/null 2>&1 || true
  for _ in $(seq 1 10); do
    $SUDO kill -0 "$pid" >/dev/null 2>&1 || break
    sleep 1
  done
  return 1
}
if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && ! docker_up; then
  if start_dockerd || start_dockerd --iptables=false --storage-driver=vfs; then
    echo "install-test-deps: started dockerd (log: /var/log/batched-fn-dockerd.log)" >&2
  else
    echo "install-test-deps: dockerd did not start (see /var/log/batched-fn-dockerd.log);" \
      "the container test will skip" >&2
  fi
fi
exit 0
