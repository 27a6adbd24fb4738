#!/usr/bin/env bash
# Builds the VM test host (issue 21): a Debian 12 guest with systemd as PID 1
# and cgroup v2, runc, the CNI plugins and iptables from Debian, the project's
# daemon, client and shim, crio.service from packaging/systemd/ with
# cgroup_manager = "systemd", and crio-vm-test.service, which runs
# guest-test.sh at boot, writes its results to the serial console and powers
# the VM off. test/vm/run.sh boots it.
#
#   test/vm/build-image.sh [--bin-dir DIR] OUT_DIR
#
# OUT_DIR gets disk.img (raw ext4, the guest's root), vmlinuz and initrd.img.
# --bin-dir: where crio, crioctl and containerd-shim-crio-v2 are (default:
# the repository's target/debug). The debootstrap root is cached as a tarball
# under target/vm/, keyed by suite, mirror and package list; a missing or
# broken cache only costs a new debootstrap (about 70 s). Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin_dir=$repo/target/debug
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--bin-dir DIR] OUT_DIR" >&2; exit 2; }
out=$1

SUITE=bookworm
PACKAGES=(
  linux-image-amd64 systemd-sysv udev dbus kmod initramfs-tools e2fsprogs
  iproute2 runc containernetworking-plugins iptables conntrack busybox-static
  docker-registry
)
DISK_SIZE=3G
BINARIES=(crio crioctl containerd-shim-crio-v2)

for b in "${BINARIES[@]}"; do
  [ -x "$bin_dir/$b" ] || { echo "build-image: $bin_dir/$b missing (build it or pass --bin-dir)" >&2; exit 1; }
done
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
pkgs=$(IFS=,; echo "${PACKAGES[*]}")
key=$(printf '%s\n' "$SUITE" "$mirror" "$pkgs" | sha256sum | cut -c1-16)
cache_dir=$repo/target/vm
cache=$cache_dir/rootfs-$SUITE-$key.tar

mkdir -p "$out" "$cache_dir"
out=$(cd "$out" && pwd)
root=$out/root

# debootstrap mounts proc and sys inside the root: never leave them behind.
cleanup() {
  if [ -d "$root" ]; then
    { findmnt -rn -o TARGET | grep -F "$root/" | sort -r || true; } | while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$root"
  fi
  rm -f "$cache.tmp"
}
trap cleanup EXIT
cleanup

start=$SECONDS
mkdir -p "$root"
if [ -s "$cache" ] && tar -C "$root" --numeric-owner -xpf "$cache"; then
  echo "build-image: root from cache $cache"
else
  rm -rf --one-file-system "$root" && mkdir -p "$root"
  echo "build-image: debootstrap $SUITE from $mirror"
  debootstrap --variant=minbase --include="$pkgs" "$SUITE" "$root" "$mirror" >"$out/debootstrap.log" 2>&1 \
    || { tail -n 30 "$out/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # One cached root: the one for this package list replaces older ones.
  rm -f "$cache_dir"/rootfs-*.tar
  tar -C "$root" --numeric-owner -cpf "$cache.tmp" . && mv "$cache.tmp" "$cache"
fi
echo "build-image: root ready in $((SECONDS - start)) s"

install_guest_files() {
  install -D -m 0755 "$bin_dir/crio" "$root/usr/bin/crio"
  install -D -m 0755 "$bin_dir/crioctl" "$root/usr/bin/crioctl"
  install -D -m 0755 "$bin_dir/containerd-shim-crio-v2" "$root/usr/libexec/crio/containerd-shim-crio-v2"
  install -D -m 0644 "$repo/packaging/systemd/crio.service" "$root/usr/lib/systemd/system/crio.service"
  install -D -m 0644 "$repo/packaging/cni/10-crio-bridge.conflist" "$root/etc/cni/net.d/10-crio-bridge.conflist"
  install -D -m 0644 "$here/guest/crio-vm.conf" "$root/etc/crio/crio.conf.d/10-vm.conf"
  install -D -m 0644 "$here/guest/crio-vm-test.service" "$root/etc/systemd/system/crio-vm-test.service"
  install -D -m 0755 "$here/guest-test.sh" "$root/usr/local/lib/crio-vm/guest-test.sh"
  install -D -m 0644 "$here/guest/registry.yml" "$root/etc/docker/registry/config.yml"
  rm -rf "$root/var/lib/docker-registry/docker"
  bash "$here/busybox-image.sh" "$root/var/lib/docker-registry" busybox latest
  chown -R --reference="$root/var/lib/docker-registry" "$root/var/lib/docker-registry/docker"
  echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$root/etc/fstab"
  echo crio-vm >"$root/etc/hostname"
  : >"$root/etc/machine-id"
}

enable_units() {
  local wants=$root/etc/systemd/system/multi-user.target.wants
  mkdir -p "$wants"
  ln -sf /usr/lib/systemd/system/crio.service "$wants/crio.service"
  ln -sf /etc/systemd/system/crio-vm-test.service "$wants/crio-vm-test.service"
  # Nothing else writes to the serial console or wakes up during the test.
  local u
  for u in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer fstrim.timer systemd-timesyncd.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
  done
}

install_guest_files
enable_units
cp -L "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp -L "$root"/boot/initrd.img-* "$out/initrd.img"

rm -f "$out/disk.img"
truncate -s "$DISK_SIZE" "$out/disk.img"
mkfs.ext4 -q -F -L crio-vm -d "$root" "$out/disk.img"
echo "build-image: $out/disk.img ready in $((SECONDS - start)) s"
