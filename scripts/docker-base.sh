#!/usr/bin/env bash
# Builds a local stand-in for `node:22-slim`, for machines that reach Debian's archive and npm's registry but no
# container registry: Debian bookworm (debootstrap's minbase variant, brought up to date from bookworm-updates and
# bookworm-security) plus Node 22 from npm's `node-linux-<arch>` package and npm 10 from npm's `npm` package, imported
# with `docker import`. Pass the tag it prints to `docker build --build-arg BASE=...`.
#
#   bash scripts/docker-base.sh              # builds it unless the tag is already there (a build takes minutes)
#   bash scripts/docker-base.sh --rebuild    # builds it again (newer Debian updates, the newest Node 22)
#
# Environment: BATCHED_FN_BASE_TAG (default batched-fn-base:bookworm-node22), DEBIAN_MIRROR and
# DEBIAN_SECURITY_MIRROR (default: the ones this machine's apt uses, else deb.debian.org). Needs root, debootstrap
# and a running dockerd. It prints only the tag on stdout; progress goes to stderr. If this machine sets
# NODE_EXTRA_CA_CERTS or npm's cafile (a TLS-inspecting proxy), that bundle is copied in and trusted (see below).
set -euo pipefail

tag="${BATCHED_FN_BASE_TAG:-batched-fn-base:bookworm-node22}"
suite=bookworm
node_spec=22
npm_spec=10

log() { printf '%s\n' "docker-base: $*" >&2; }

if [ "${1:-}" != "--rebuild" ] && docker image inspect "$tag" >/dev/null 2>&1; then
  log "$tag is already built (--rebuild builds it again)"
  echo "$tag"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  log "needs root (debootstrap creates device nodes and files of other owners)"
  exit 1
fi
command -v debootstrap >/dev/null 2>&1 || { log "needs debootstrap (apt-get install debootstrap)"; exit 1; }

# The archive URI this machine's apt reads SUITE from (deb822 .sources files, then one-line lists), if any.
apt_uri() {
  local want="$1" file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    # Blocks are separated by blank lines; print the URIs of an enabled deb block whose Suites list WANT.
    awk -v want="$want" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled && (" " suites " ") ~ (" " want " ")) print uris
        types = ""; suites = ""; uris = ""; enabled = 1
      }
      BEGIN { enabled = 1 }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      /^Types:/ { sub(/^Types:[[:space:]]*/, ""); types = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $1 }
      /^Enabled:[[:space:]]*no/ { enabled = 0 }
      END { flush() }
    ' "$file"
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    # deb [options] URI SUITE COMPONENT...
    sed -E 's/\[[^]]*\]//' "$file" | awk -v want="$want" '$1 == "deb" && $3 == want { print $2 }'
  done
}
mirror="${DEBIAN_MIRROR:-$(apt_uri "$suite" | sed -n 1p)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="${DEBIAN_SECURITY_MIRROR:-$(apt_uri "$suite-security" | sed -n 1p)}"
security="${security:-http://deb.debian.org/debian-security}"

case "$(uname -m)" in
  x86_64) node_arch=x64 ;;
  aarch64) node_arch=arm64 ;;
  *) log "no node-linux package for $(uname -m)"; exit 1 ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/batched-fn-base-XXXXXX")"
rootfs="$work/rootfs"
cleanup() {
  # A failed chroot step may leave /proc mounted inside: unmount before removing.
  umount "$rootfs/proc" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 20 "$work/debootstrap.log" >&2
  exit 1
}

log "updates from $suite-updates and $suite-security ($security)"
# The same sources a Debian image has, so `apt-get install` works in images built on this one.
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
# As Debian's slim images: no manuals or documentation from later installs, but every copyright file.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -q && apt-get upgrade -y -q && apt-get clean' >"$work/upgrade.log" 2>&1 || {
  tail -n 20 "$work/upgrade.log" >&2
  exit 1
}
umount "$rootfs/proc"

log "node-linux-$node_arch@$node_spec and npm@$npm_spec from npm's registry"
mkdir -p "$work/packs"
(cd "$work/packs" && npm pack --silent "node-linux-$node_arch@$node_spec" "npm@$npm_spec" >/dev/null)
mkdir -p "$work/node" "$work/npm"
tar -xzf "$work"/packs/node-linux-"$node_arch"-*.tgz -C "$work/node"
tar -xzf "$work"/packs/npm-*.tgz -C "$work/npm"
install -D -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"
install -D -m 0644 "$work/node/package/LICENSE" "$rootfs/usr/local/share/doc/node/LICENSE"
mkdir -p "$rootfs/usr/local/lib/node_modules"
mv "$work/npm/package" "$rootfs/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
# A machine whose TLS goes through an inspecting proxy trusts its CA through NODE_EXTRA_CA_CERTS (or npm's `cafile`);
# npm inside the image build must trust the same roots, or every install fails with SELF_SIGNED_CERT_IN_CHAIN. The
# image carries that bundle only when the machine has one (node:22-slim carries none).
ca_bundle="${NODE_EXTRA_CA_CERTS:-}"
if [ -z "$ca_bundle" ]; then ca_bundle="$(cd / && npm config get cafile 2>/dev/null || true)"; fi
ca_change=()
if [ -n "$ca_bundle" ] && [ -r "$ca_bundle" ]; then
  install -D -m 0644 "$ca_bundle" "$rootfs/usr/local/share/batched-fn-base/extra-ca-certs.pem"
  ca_change=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/batched-fn-base/extra-ca-certs.pem')
  log "trusting this machine's extra CA bundle ($ca_bundle), as its npm does"
fi
node_version="$(chroot "$rootfs" /usr/local/bin/node --version)"
npm_version="$(chroot "$rootfs" /usr/local/bin/node /usr/local/bin/npm --version)"

log "slimming"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* "$rootfs"/tmp/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
# Docker supplies these at run time; the build machine's must not travel in the image.
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/machine-id"

previous="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
log "docker import as $tag (node $node_version, npm $npm_version)"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${node_version#v}" \
  --change 'CMD ["node"]' \
  ${ca_change[@]+"${ca_change[@]}"} \
  --message "Debian $suite (debootstrap minbase) + Node $node_version + npm $npm_version, by scripts/docker-base.sh" \
  - "$tag" >/dev/null
# A rebuild leaves the old image untagged: remove it, unless a container or image still uses it.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
  docker image rm "$previous" >/dev/null 2>&1 || true
fi
echo "$tag"
