#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the root-only integration tests
# against real runc, CNI plugins, overlay mounts and a local registry, then
# the VM suite (a Debian 12 guest with systemd and cgroup v2 under qemu).
# Installs the host packages first, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test: the integration tests need root" >&2
  exit 1
fi
bash scripts/install-deps.sh

cargo build --workspace --all-targets --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
# The VM suite (test/vm/, docs/vm-test-host.md): systemd as PID 1, cgroup
# v2, the package installed, upgraded, rebooted and purged. Not with a test
# filter, nor with CRIO_TEST_VM=0.
if [ $# -eq 0 ] && [ "${CRIO_TEST_VM:-1}" != 0 ]; then
  bash test/vm/suite.sh --no-build
fi
