#!/usr/bin/env bash
# Builds the Debian package crio-rs_VERSION_amd64.deb with cargo-deb.
#
#   bash scripts/package.sh [--profile release|dev] [--no-build] [--deb-version V] [--out DIR]
#
# --profile release (the default, for real use): the LTO release daemon and
#   client and the static, size-optimised shim (profile `shim`), as
#   scripts/setup.sh builds them; a cold build takes about 11 minutes here.
# --profile dev: the debug build already there (CI and the tests), binaries
#   stripped; same layout and scripts, slower and bigger binaries.
# --no-build: package what that profile's build left in the target directory
#   (the tests do, after the suite's build).
# --deb-version: the package's version (default: the workspace's, revision 1).
# --out: where the .deb goes (default: target/debian). Its path is printed last.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
deb_version=
out=target/debian
build=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --deb-version) deb_version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) build=no; shift ;;
    *) echo "package: unknown argument $1" >&2; exit 2 ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "package: cargo-deb missing: run scripts/install-deps.sh" >&2
  exit 1
fi

target=${CARGO_TARGET_DIR:-target}
# The staged files' paths are fixed in crio-daemon/Cargo.toml's assets.
stage=packaging/generated
rm -rf "$stage"
mkdir -p "$stage/man" "$stage/completions"

case "$profile" in
  release)
    triple="$(rustc -vV | sed -n 's/^host: //p')"
    if [ "$build" = yes ]; then
      cargo build --release --locked --bin crio --bin crioctl
      RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
        cargo build --profile shim --locked --target "$triple" --bin containerd-shim-crio-v2
    fi
    bin="$target/release"
    shim="$target/$triple/shim/containerd-shim-crio-v2"
    ;;
  dev)
    if [ "$build" = yes ]; then
      cargo build --locked --bin crio --bin crioctl --bin containerd-shim-crio-v2
    fi
    bin="$target/debug"
    shim="$bin/containerd-shim-crio-v2"
    ;;
  *) echo "package: --profile is release or dev" >&2; exit 2 ;;
esac

# cargo-deb strips the binaries it knows (target/release/…); the shim is
# staged, so stripped here.
strip -o "$stage/containerd-shim-crio-v2" "$shim"

# Generated from the programs themselves: one source of truth with
# `crio config`, `crio --help` and `crioctl --help`.
"$bin/crio" man crio | gzip -9n > "$stage/man/crio.8.gz"
"$bin/crio" man crio.conf | gzip -9n > "$stage/man/crio.conf.5.gz"
"$bin/crioctl" man | gzip -9n > "$stage/man/crioctl.1.gz"
for prog in crio crioctl; do
  "$bin/$prog" completion bash > "$stage/completions/$prog.bash"
  "$bin/$prog" completion zsh > "$stage/completions/_$prog"
  "$bin/$prog" completion fish > "$stage/completions/$prog.fish"
done
# Every key with its description and default, commented out: the file
# loads as the built-in defaults, which then follow upgrades; drop-ins in
# /etc/crio/crio.conf.d/ are where changes go.
{
  echo "# /etc/crio/crio.conf: crio-rs's main configuration (crio.conf(5))."
  echo "# The values below are the built-in defaults, commented out. Set keys"
  echo "# here or, better, in drop-in files under /etc/crio/crio.conf.d/."
  "$bin/crio" config --default | sed -E 's/^([^#].*)$/# \1/'
} > "$stage/crio.conf"

mkdir -p "$out"
args=(--no-build --locked -p crio-daemon --profile "$profile" --strip --output "$out")
if [ -n "$deb_version" ]; then
  args+=(--deb-version "$deb_version")
fi
if [ "$profile" = dev ]; then
  # Quicker compression of the bigger debug binaries.
  args+=(--fast)
fi
cargo deb "${args[@]}"
