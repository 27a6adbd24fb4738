#!/usr/bin/env bash
# Installs the host packages crio-rs needs to build, run and test, from Debian's apt
# (qemu for the VM suite from bookworm-backports), the pinned Rust toolchain's
# name, cargo-deny and cargo-deb.
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
  prometheus
  openssl
  # The Debian package (scripts/package.sh) and its tests.
  conntrack
  lintian
  debootstrap
  man-db
  # apparmor_parser: a unit test parses the crio-default profile (no kernel load).
  apparmor
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

# The VM test host (test/vm/): qemu-system-x86 from bookworm-backports.
bash "$(dirname "$0")/../test/vm/install-qemu.sh" >/dev/null

# Debian's prometheus (installed for promtool) would serve on 9090, crio's
# default metrics port, from the next boot on: masked, as `systemctl mask`
# does (with or without systemd running), and off in the SysV runlevels.
if [ -e /lib/systemd/system/prometheus.service ] && [ ! -e /etc/systemd/system/prometheus.service ]; then
  ln -s /dev/null /etc/systemd/system/prometheus.service
fi
if [ -x /etc/init.d/prometheus ] && ls /etc/rc[2-5].d/S*prometheus >/dev/null 2>&1; then
  update-rc.d prometheus disable >/dev/null 2>&1
fi

# rust-toolchain.toml pins the toolchain by version. The machines have exactly
# one, known to rustup as "stable", and nothing can be downloaded: when it is
# the pinned version, register it under that name too (rustup's `toolchain
# link` refuses official names, so a symlink as rustup itself lays it out).
pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
host=$(rustup run stable rustc -vV | sed -n 's/^host: //p')
if ! rustup toolchain list | grep -q "^$pinned-$host"; then
  have=$(rustup run stable rustc --version | awk '{print $2}')
  if [ "$have" != "$pinned" ]; then
    echo "install-deps: rust-toolchain.toml pins $pinned but this machine's toolchain is $have: move the pin" >&2
    exit 1
  fi
  ln -sfn "$(rustup run stable rustc --print sysroot)" \
    "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$pinned-$host"
  echo "install-deps: toolchain $pinned is the machine's stable toolchain"
fi

# cargo-deny (licences, duplicate versions, sources: deny.toml) for .ci/run.
# A cold build of it took 6 minutes on 2 cores (others building): only when
# missing or another version.
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q " $CARGO_DENY_VERSION\$"; then
  echo "install-deps: installing cargo-deny $CARGO_DENY_VERSION from crates.io"
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi

# cargo-deb builds the Debian package (scripts/package.sh); a cold build
# takes a few minutes: only when missing or another version.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "install-deps: installing cargo-deb $CARGO_DEB_VERSION from crates.io"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi

if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: cargo-nextest missing, tests will run with cargo test"
fi
echo "install-deps: host packages ready"
