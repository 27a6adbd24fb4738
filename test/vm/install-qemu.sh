#!/usr/bin/env bash
# Installs qemu-system-x86 for the VM test host (test/vm/run.sh) from
# bookworm-backports: the machines carry qemu-utils 10.0 from backports, which
# bookworm's own qemu-system-x86 7.2 conflicts with. The backports suite is
# added beside /etc/apt/sources.list.d/debian.sources with the same mirror.
# Idempotent; scripts/install-deps.sh runs it.
set -euo pipefail

if command -v qemu-system-x86_64 >/dev/null; then
  exit 0
fi
sources=/etc/apt/sources.list.d/debian.sources
mirror=$(awk '/^URIs:/ { print $2; exit }' "$sources")
list=/etc/apt/sources.list.d/bookworm-backports.sources
if [ ! -e "$list" ]; then
  cat >"$list" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
qemu-system-x86_64 --version | head -n 1
