#!/usr/bin/env bash
# Builds the VM test host (issue 21): a Debian 12 guest with systemd as PID 1
# and cgroup v2, runc, the CNI plugins, iptables and AppArmor from Debian, the
# project's packages to install (two versions of crio-rs's .deb, for the
# install and the upgrade), a drop-in for crio with cgroup_manager =
# "systemd", and crio-vm-test.service, which runs guest-test.sh at boot,
# writes its results to the serial console and powers the VM off.
# test/vm/run.sh boots it.
#
#   test/vm/build-image.sh --debs DIR OUT_DIR
#
# DIR holds crio-rs_*-1_amd64.deb and crio-rs_*-2_amd64.deb (test/vm/suite.sh
# makes them with scripts/package.sh). OUT_DIR gets disk.img (raw ext4, the
# guest's root), vmlinuz and initrd.img. The debootstrap root is cached as a
# tarball under target/vm/, keyed by suite, mirror and package list; a
# missing or broken cache only costs a new debootstrap (about 90 s). Needs
# root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
debs=
while [ $# -gt 0 ]; do
  case $1 in
    --debs) debs=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] && [ -n "$debs" ] || { echo "usage: $0 --debs DIR OUT_DIR" >&2; exit 2; }
out=$1

SUITE=bookworm
PACKAGES=(
  linux-image-amd64 systemd-sysv udev dbus kmod initramfs-tools e2fsprogs
  iproute2 runc containernetworking-plugins iptables conntrack busybox-static
  docker-registry apparmor jq procps
)
DISK_SIZE=3G
for v in 1 2; do
  compgen -G "$debs/crio-rs_*-${v}_amd64.deb" >/dev/null \
    || { echo "build-image: no crio-rs_*-${v}_amd64.deb in $debs" >&2; exit 1; }
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
  install -d "$root/root/crio-vm/debs"
  install -m 0644 "$debs"/crio-rs_*-[12]_amd64.deb "$root/root/crio-vm/debs/"
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
