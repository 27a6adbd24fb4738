#!/usr/bin/env bash
# Boots the VM test host built by test/vm/build-image.sh twice from the same
# disk (the second boot is the reboot the first one's checks prepare) and
# reports the checks of both boots (test/vm/guest-test.sh, run by
# crio-vm-test.service at boot).
#
#   test/vm/run.sh [--timeout SECS] IMAGE_DIR
#
# Each boot's serial console is written to IMAGE_DIR/serial-N.log; the checks
# are read from between its markers and printed. Exit status 0 when every
# check of both boots passed, 1 when one failed (then that boot's journal is
# printed too), 2 when a boot gave no result before the timeout (default
# 900 s per boot; then the end of its console is printed). The boots write
# to IMAGE_DIR/run.qcow2, an overlay made afresh on disk.img, which stays as
# built. qemu runs with software emulation (tcg) unless CRIO_VM_ACCEL says
# otherwise (e.g. kvm); it never outlives this script.
set -euo pipefail

timeout_s=900
while [ $# -gt 0 ]; do
  case $1 in
    --timeout) timeout_s=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--timeout SECS] IMAGE_DIR" >&2; exit 2; }
dir=$(cd "$1" && pwd)
for f in disk.img vmlinuz initrd.img; do
  [ -e "$dir/$f" ] || { echo "run: $dir/$f missing (test/vm/build-image.sh)" >&2; exit 2; }
done
for tool in qemu-system-x86_64 qemu-img; do
  command -v "$tool" >/dev/null || { echo "run: no $tool (test/vm/install-qemu.sh)" >&2; exit 2; }
done

qemu_pid=
stop_qemu() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  qemu_pid=
}
trap stop_qemu EXIT
trap 'exit 130' INT TERM

overlay=$dir/run.qcow2
rm -f "$overlay"
qemu-img create -q -f qcow2 -b "$dir/disk.img" -F raw "$overlay"

# boot N: boots the overlay until the guest powers off (or the timeout),
# prints its checks; returns 0 (pass), 1 (a check failed) or 2 (no result).
boot() {
  local n=$1 log=$dir/serial-$1.log start=$SECONDS timed_out=0
  : >"$log"
  qemu-system-x86_64 -accel "${CRIO_VM_ACCEL:-tcg}" -m 2048 -smp 2 \
    -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=false" \
    -drive "file=$overlay,format=qcow2,if=virtio" \
    -display none -monitor none -serial "file:$log" -no-reboot -nic none &
  qemu_pid=$!
  while kill -0 "$qemu_pid" 2>/dev/null && [ $((SECONDS - start)) -lt "$timeout_s" ]; do
    sleep 2
  done
  kill -0 "$qemu_pid" 2>/dev/null && timed_out=1
  stop_qemu
  local elapsed=$((SECONDS - start)) end
  # section BEGIN_MARKER END_PATTERN: the lines between the markers.
  section() { tr -d '\r' <"$log" | sed -n "/^$1\$/,/^$2/p" | sed '1d;$d'; }
  end=$(tr -d '\r' <"$log" | grep -m1 '^=== CRIO-VM-TEST END failed=' || true)
  if [ -z "$end" ]; then
    if [ "$timed_out" = 1 ]; then
      echo "run: boot $n: no result from the guest within ${timeout_s} s; the end of its console:"
    else
      echo "run: boot $n: the guest stopped after ${elapsed} s without a result; the end of its console:"
    fi
    tail -n 80 "$log"
    return 2
  fi
  section '=== CRIO-VM-TEST BEGIN ===' '=== CRIO-VM-TEST END'
  if [ "$end" = "=== CRIO-VM-TEST END failed=0 ===" ]; then
    echo "run: boot $n: PASS in ${elapsed} s (boot, checks, power-off)"
    return 0
  fi
  echo "run: boot $n: FAIL in ${elapsed} s; the guest's journal:"
  section '=== CRIO-VM-JOURNAL BEGIN ===' '=== CRIO-VM-JOURNAL END ==='
  return 1
}

status=0
boot 1 || status=$?
# The second boot checks what the first left; without a first result there
# is nothing to check.
if [ "$status" -ne 2 ]; then
  second=0
  boot 2 || second=$?
  [ "$second" -gt "$status" ] && status=$second
fi
rm -f "$overlay"
exit "$status"
