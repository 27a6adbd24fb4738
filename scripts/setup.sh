#!/usr/bin/env bash
# Sets a Debian 12 host up for crio-rs and starts the daemon on its default
# configuration: host packages, a release build, the binaries in
# /usr/local/bin, a default CNI network, and `crio` serving /run/crio/crio.sock.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "setup: building release binaries (a cold build takes about 11 minutes on 2 cores)"
cargo build --release --locked --bin crio --bin crioctl
# The shim runs once per pod: optimised for size and statically linked
# (its own profile and an explicit target, so build scripts stay dynamic),
# not position-independent: no start-up relocations, so the pages they
# would touch stay shared and out of each shim's RSS (about 100 KiB less;
# like Go's default binaries, its code has a fixed address).
triple="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
  cargo build --profile shim --locked --target "$triple" --bin containerd-shim-crio-v2

install -m 0755 target/release/crio target/release/crioctl /usr/local/bin/
install -m 0755 "target/$triple/shim/containerd-shim-crio-v2" /usr/local/bin/

# A default pod network, as CRI-O's packages ship one, unless one exists.
mkdir -p /etc/cni/net.d /etc/crio/crio.conf.d
if ! ls /etc/cni/net.d/*.conf* >/dev/null 2>&1; then
  install -m 0644 packaging/cni/10-crio-bridge.conflist /etc/cni/net.d/
fi

bash scripts/start-daemon.sh
