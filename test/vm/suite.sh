#!/usr/bin/env bash
# The VM suite in one command (scripts/test.sh runs it after the host
# suite): qemu installed, the two packages made from the debug build,
# the guest image built (its debootstrap root cached under target/vm/),
# both boots run. Exit status as test/vm/run.sh's.
#
#   test/vm/suite.sh [--no-build]
#
# --no-build: package the debug binaries already in the target directory
# (scripts/test.sh's build); otherwise `cargo build` them first.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
build=yes
[ "${1:-}" = --no-build ] && build=no

start=$SECONDS
bash "$here/install-qemu.sh"
if [ "$build" = yes ]; then
  cargo build --locked --bin crio --bin crioctl --bin containerd-shim-crio-v2
fi
target=${CARGO_TARGET_DIR:-$repo/target}
work=$target/vm
debs=$work/debs
rm -rf "$debs"
# Two versions: the install and the upgrade.
for rev in 1 2; do
  bash scripts/package.sh --profile dev --no-build --deb-version "0.1.0-$rev" --out "$debs" >/dev/null
done
echo "suite: packages ready in $((SECONDS - start)) s"
bash "$here/build-image.sh" --debs "$debs" "$work/image"
status=0
bash "$here/run.sh" "$work/image" || status=$?
echo "suite: VM suite done in $((SECONDS - start)) s"
exit "$status"
