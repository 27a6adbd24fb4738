#!/usr/bin/env bash
# Installs the host packages crio-rs needs to build, run and test, from Debian's apt.
# Idempotent: packages already present are not reinstalled and apt's index is
# refreshed only when something is missing.
set -euo pipefail

PACKAGES=(
  runc
  containernetworking-plugins
  docker-registry
  busybox-static
  protobuf-compiler
  iproute2
  iptables
  apache2-utils
  containerd
  crun
  procps
  curl
  psmisc
  util-linux
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting services (containerd,
  # docker-registry) that would hold ports or sockets we manage ourselves.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: cargo-nextest missing, tests will run with cargo test"
fi
echo "install-deps: host packages ready"
