#!/usr/bin/env bash
# The checks that run inside the VM test host (test/vm/), as
# crio-vm-test.service at boot: crio started by systemd (Type=notify) with the
# systemd cgroup driver on cgroup v2, answering on its CRI socket. Prints
# `ok NAME` or `not ok NAME: DETAIL` per check between the markers run.sh
# parses, then the boot's journal between journal markers, and exits non-zero
# when a check failed.
set -uo pipefail

failed=0
ok() { echo "ok $1"; }
not_ok() { echo "not ok $1: $2"; failed=1; }
# check NAME EXPECTED ACTUAL
check() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected '$2', got '$3'"; fi; }

# crio.service may still be starting (software emulation is slow): wait for
# systemd to settle its state, at most 5 minutes.
wait_crio() {
  local state i
  for i in $(seq 1 300); do
    state=$(systemctl is-active crio)
    [ "$state" != activating ] && break
    sleep 1
  done
  echo "$state"
}

run_checks() {
  local t0=$SECONDS
  check "pid 1 is systemd" systemd "$(cat /proc/1/comm)"
  check "cgroup v2 mounted on /sys/fs/cgroup" cgroup2fs "$(stat -fc %T /sys/fs/cgroup)"
  check "crio.service is active" active "$(wait_crio)"
  echo "# crio active after $((SECONDS - t0)) s in the test, $(cut -d' ' -f1 /proc/uptime) s since boot"
  check "crio.service is Type=notify" notify "$(systemctl show -P Type crio)"
  check "crio is the unit's main process" crio "$(cat "/proc/$(systemctl show -P MainPID crio)/comm" 2>/dev/null)"
  local out
  if out=$(timeout 60 crioctl version 2>&1); then ok "crioctl version: $(echo "$out" | tr '\n' ' ')"; else not_ok "crioctl version" "$out"; fi
  if out=$(timeout 60 crioctl info 2>&1) && grep -q RuntimeReady <<<"$out"; then
    ok "crioctl info"
  else
    not_ok "crioctl info" "$out"
  fi
  if out=$(timeout 60 crio status info 2>&1) && grep -Eq '"cgroup_driver": *"systemd"' <<<"$out"; then
    ok "the daemon runs the systemd cgroup driver"
  else
    not_ok "the daemon runs the systemd cgroup driver" "$out"
  fi
}

echo "=== CRIO-VM-TEST BEGIN ==="
run_checks
echo "=== CRIO-VM-TEST END failed=$failed ==="
echo "=== CRIO-VM-JOURNAL BEGIN ==="
journalctl -b --no-pager -o short-monotonic | tail -n 400
echo "=== CRIO-VM-JOURNAL END ==="
exit "$failed"
