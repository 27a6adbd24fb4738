#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the root-only integration tests
# against real runc, CNI plugins, overlay mounts and a local registry.
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
