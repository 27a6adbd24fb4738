#!/usr/bin/env bash
# The checks that run inside the VM test host (test/vm/), as
# crio-vm-test.service at boot: crio started by systemd (Type=notify) with the
# systemd cgroup driver on cgroup v2, answering on its CRI socket, and a pod
# whose container gets its systemd scope and cgroup v2 limits. Prints
# `ok NAME` or `not ok NAME: DETAIL` per check between the markers run.sh
# parses, then the boot's journal (the kernel's lines left out) between
# journal markers, and exits non-zero when a check failed.
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

# The guest's docker-registry serves the busybox image build-image.sh stored.
IMAGE=localhost:5000/busybox:latest
POD_SLICE=kubepods-besteffort-podvm1.slice
cri() { timeout 300 crioctl --timeout 2m "$@"; }

wait_registry() {
  local i
  for i in $(seq 1 120); do
    (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && return 0
    sleep 1
  done
  return 1
}

# PID namespace mode CONTAINER (the kubelet's default): no infra container, so
# no pause image is needed offline.
write_configs() {
  cat >/tmp/pod.json <<JSON
{"metadata": {"name": "vm-pod", "namespace": "default", "uid": "vm1", "attempt": 0},
 "log_directory": "/var/log/crio-vm-pods",
 "linux": {"cgroup_parent": "$POD_SLICE", "security_context": {"namespace_options": {"pid": 1}}}}
JSON
  cat >/tmp/ctr.json <<JSON
{"metadata": {"name": "sleeper"}, "image": {"image": "$IMAGE"},
 "command": ["/bin/sleep", "3600"], "log_path": "sleeper.log",
 "linux": {"resources": {"cpu_period": 100000, "cpu_quota": 50000, "memory_limit_in_bytes": 67108864},
           "security_context": {"namespace_options": {"pid": 1}}}}
JSON
}

# Where the pods' processes are: every non-empty cgroup below kubepods.slice
# and crio-shims, and the shims' cgroups (for a failed check).
cgroup_report() {
  local d procs p
  echo "# cgroups:"
  for d in $(find /sys/fs/cgroup/kubepods.slice /sys/fs/cgroup/crio-shims -type d 2>/dev/null); do
    procs=$(tr '\n' ' ' <"$d/cgroup.procs")
    echo "#   $d: procs=[$procs] type=$(cat "$d/cgroup.type") subtree=[$(cat "$d/cgroup.subtree_control")]"
  done
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = containerd-shim ] && echo "#   shim ${p#/proc/}: $(cat "$p/cgroup")"
  done
}

# Diagnosis of the failed create above (docs/vm-test-host.md): the shim is
# moved by hand from the pod slice's own cgroup into a leaf below it and the
# create is tried again, so the checks after it still run. The failure
# stays counted. Prints the container ID when the retry succeeds.
shim_to_leaf_and_retry() {
  local slice=/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/$POD_SLICE p ctr
  mkdir -p "$slice/crio-vm-shim-leaf" || return 1
  for p in $(cat "$slice/cgroup.procs"); do echo "$p" >"$slice/crio-vm-shim-leaf/cgroup.procs"; done
  if ctr=$(cri create "$1" /tmp/ctr.json /tmp/pod.json 2>&1); then
    echo "# with the shim moved to a leaf cgroup by hand, CreateContainer succeeds" >&2
    echo "$ctr"
  else
    echo "# with the shim moved to a leaf cgroup by hand, CreateContainer still fails: $ctr" >&2
    return 1
  fi
}

# A pod with a container under the systemd driver: its scope below the
# kubelet's slice, its limits in the cgroup v2 files.
pod_checks() {
  local out pod ctr pid cg
  if wait_registry; then ok "the guest registry answers"; else not_ok "the guest registry answers" "no answer on :5000"; return; fi
  if out=$(cri pull "$IMAGE" 2>&1); then ok "pull $IMAGE"; else not_ok "pull $IMAGE" "$out"; return; fi
  write_configs
  if ! pod=$(cri runp /tmp/pod.json 2>&1); then not_ok "run a pod" "$pod"; return; fi
  ok "run a pod"
  if ! ctr=$(cri create "$pod" /tmp/ctr.json /tmp/pod.json 2>&1); then
    not_ok "create a container" "$ctr"
    cgroup_report
    ctr=$(shim_to_leaf_and_retry "$pod") || return
  fi
  if out=$(cri start "$ctr" 2>&1); then ok "start a container"; else not_ok "start a container" "$out"; return; fi
  pid=$(cri inspect "$ctr" | grep -o '"pid": *[0-9]*' | head -n1 | grep -o '[0-9]*$')
  cg=$(sed -n 's/^0:://p' "/proc/${pid:-0}/cgroup" 2>/dev/null)
  echo "# container $ctr pid ${pid:-?} cgroup ${cg:-?}"
  case $cg in
    /kubepods.slice/kubepods-besteffort.slice/$POD_SLICE/crio-$ctr.scope) ok "the container's cgroup is crio-<id>.scope in the pod's slice" ;;
    *) not_ok "the container's cgroup is crio-<id>.scope in the pod's slice" "got '$cg'" ;;
  esac
  check "cpu.max holds the CPU limit" "50000 100000" "$(cat "/sys/fs/cgroup$cg/cpu.max" 2>&1)"
  check "memory.max holds the memory limit" 67108864 "$(cat "/sys/fs/cgroup$cg/memory.max" 2>&1)"
}

echo "=== CRIO-VM-TEST BEGIN ==="
run_checks
pod_checks
echo "=== CRIO-VM-TEST END failed=$failed ==="
echo "=== CRIO-VM-JOURNAL BEGIN ==="
journalctl -b --no-pager -o short-monotonic | grep -v ' kernel: ' | tail -n 400
echo "=== CRIO-VM-JOURNAL END ==="
exit "$failed"
