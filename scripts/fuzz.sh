#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each,
# default 20) over its seed corpus in fuzz/corpus/TARGET, and fails on the
# first crash; libFuzzer leaves the crashing input in fuzz/artifacts/TARGET.
# New inputs found go to a temp dir, so a run never changes the repository.
#   bash scripts/fuzz.sh                 # every target
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh layer_unpack
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked --version 0.13.2 --quiet
fi
seconds=${FUZZ_SECONDS:-20}
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
# No sanitizer: stable Rust has none, and the targets check their own
# invariants (nothing written outside the root, round trips) besides panics.
flags=(--sanitizer none --release --debug-assertions)
cargo fuzz build "${flags[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "fuzz: $t for ${seconds}s"
  cargo fuzz run "${flags[@]}" "$t" "$work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 \
    -close_fd_mask=3 2>&1 | tail -n 3
  # tail hides the exit status: pipefail brings it back.
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
