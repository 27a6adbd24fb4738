#!/usr/bin/env bash
# Boots the VM test host built by test/vm/build-image.sh and reports its
# checks (test/vm/guest-test.sh, run by crio-vm-test.service at boot).
#
#   test/vm/run.sh [--timeout SECS] IMAGE_DIR
#
# The guest's serial console is written to IMAGE_DIR/serial.log; the checks
# are read from between its markers and printed. Exit status 0 when every check
# passed, 1 when one failed (then the guest's journal is printed too), 2 when
# the guest gave no result before the timeout (default 900 s; then the end of
# the console is printed). The disk is booted with snapshot=on: a run leaves
# disk.img as it was built. qemu runs with software emulation (tcg) unless
# CRIO_VM_ACCEL says otherwise (e.g. kvm); it never outlives this script.
set -euo pipefail

timeout_s=900
while [ $# -gt 0 ]; do
  case $1 in
    --timeout) timeout_s=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--timeout SECS] IMAGE_DIR" >&2; exit 2; }
dir=$(cd "$1" && pwd)
for f in disk.img vmlinuz initrd.img; do
  [ -e "$dir/$f" ] || { echo "run: $dir/$f missing (test/vm/build-image.sh $dir)" >&2; exit 2; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run: no qemu-system-x86_64 (test/vm/install-qemu.sh)" >&2; exit 2; }

log=$dir/serial.log
: >"$log"
qemu_pid=
stop_qemu() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
}
trap stop_qemu EXIT
trap 'exit 130' INT TERM

start=$SECONDS
qemu-system-x86_64 -accel "${CRIO_VM_ACCEL:-tcg}" -m 2048 -smp 2 \
  -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=false" \
  -drive "file=$dir/disk.img,format=raw,if=virtio,snapshot=on" \
  -display none -monitor none -serial "file:$log" -no-reboot -nic none &
qemu_pid=$!

while kill -0 "$qemu_pid" 2>/dev/null && [ $((SECONDS - start)) -lt "$timeout_s" ]; do
  sleep 2
done
timed_out=0
kill -0 "$qemu_pid" 2>/dev/null && timed_out=1
stop_qemu
qemu_pid=
elapsed=$((SECONDS - start))

# section BEGIN_MARKER END_PATTERN: the lines between the markers.
section() { tr -d '\r' <"$log" | sed -n "/^$1\$/,/^$2/p" | sed '1d;$d'; }

end=$(tr -d '\r' <"$log" | grep -m1 '^=== CRIO-VM-TEST END failed=' || true)
if [ -z "$end" ]; then
  if [ "$timed_out" = 1 ]; then
    echo "run: no result from the guest within ${timeout_s} s; the end of its console:"
  else
    echo "run: the guest stopped after ${elapsed} s without a result; the end of its console:"
  fi
  tail -n 80 "$log"
  exit 2
fi
section '=== CRIO-VM-TEST BEGIN ===' '=== CRIO-VM-TEST END'
if [ "$end" = "=== CRIO-VM-TEST END failed=0 ===" ]; then
  echo "run: PASS in ${elapsed} s (boot, checks, power-off)"
  exit 0
fi
echo "run: FAIL in ${elapsed} s; the guest's journal:"
section '=== CRIO-VM-JOURNAL BEGIN ===' '=== CRIO-VM-JOURNAL END ==='
exit 1
