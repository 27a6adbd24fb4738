#!/usr/bin/env bash
# The checks that run inside the VM test host (test/vm/), as
# crio-vm-test.service at boot, in two boots of the same disk:
#   boot 1: the package installed under systemd (postinst enables and starts
#     crio.service, Type=notify, systemd cgroup driver on cgroup v2); a pod
#     with containers: scopes, cgroup v2 limits, stats under load, an OOM
#     kill; systemctl reload, restart and stop keep the containers; an
#     upgrade to a newer package restarts the daemon only; a pod is left
#     running and the VM powers off.
#   boot 2: the daemon's first start since boot wipes the pod the reboot
#     left (its IPAM lease released); a new pod runs; apt purge leaves no
#     file of the package and no process of ours.
# Prints `ok NAME` or `not ok NAME: DETAIL` per check between the markers
# run.sh parses, then the boot's journal (the kernel's lines left out)
# between journal markers, and exits non-zero when a check failed.
set -uo pipefail

STATE=/var/lib/crio-vm-test
DEBS=/root/crio-vm/debs
IMAGE=localhost:5000/busybox:latest
POD_SLICE=kubepods-besteffort-podvm1.slice
SLICE_DIR=/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/$POD_SLICE
mkdir -p "$STATE"

failed=0
ok() { echo "ok $1"; }
not_ok() { echo "not ok $1: $2"; failed=1; }
# check NAME EXPECTED ACTUAL
check() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected '$2', got '$3'"; fi; }
# try NAME COMMAND...: ok when the command succeeds, else its output.
try() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$(echo "$out" | tail -n 5 | tr '\n' ' ')"; return 1; fi
}
cri() { timeout 300 crioctl --timeout 2m "$@"; }
# eventually SECS COMMAND...: until the command succeeds, at most SECS.
eventually() {
  local secs=$1 i
  shift
  for i in $(seq 1 "$secs"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

# systemd's settled state of crio.service (software emulation is slow).
wait_crio() {
  local state i
  for i in $(seq 1 300); do
    state=$(systemctl is-active crio)
    [ "$state" != activating ] && [ "$state" != reloading ] && break
    sleep 1
  done
  echo "$state"
}
main_pid() { systemctl show -P MainPID crio; }
alive() { kill -0 "$1" 2>/dev/null; }
ctr_pid() { cri inspect "$1" | jq -r '.info.pid // empty'; }
ctr_field() { cri inspect "$1" | jq -r ".status.$2"; }
# CONTAINER_RUNNING is state 1 in the CRI.
running() { [ "$(ctr_field "$1" state)" = 1 ]; }
exited() { [ "$(ctr_field "$1" state)" = 2 ]; }
listed() { cri ps -a -q | grep -qx "$1"; }
lease_of_pod() { cri inspectp "$1" | jq -r '.status.network.ip'; }

wait_registry() { eventually 120 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000'; }

# pod_config NAME UID FILE: a pod in POD_SLICE's parent (its own slice).
pod_config() {
  cat >"$3" <<JSON
{"metadata": {"name": "$1", "namespace": "default", "uid": "$2", "attempt": 0},
 "log_directory": "/var/log/crio-vm-pods/$1",
 "linux": {"cgroup_parent": "kubepods-besteffort-pod$2.slice",
           "security_context": {"namespace_options": {"pid": 1}}}}
JSON
}
# ctr_config NAME FILE COMMAND_JSON [RESOURCES_JSON]
ctr_config() {
  cat >"$2" <<JSON
{"metadata": {"name": "$1"}, "image": {"image": "$IMAGE"},
 "command": $3, "log_path": "$1.log",
 "linux": {"resources": ${4:-{\}},
           "security_context": {"namespace_options": {"pid": 1}}}}
JSON
}
# run_ctr POD NAME COMMAND_JSON [RESOURCES_JSON]: prints the started container's ID.
run_ctr() {
  local id
  ctr_config "$2" "/tmp/$2.json" "$3" "${4:-}"
  id=$(cri create "$1" "/tmp/$2.json" /tmp/pod.json) || { echo "$id"; return 1; }
  cri start "$id" >/dev/null || return 1
  echo "$id"
}

base_checks() {
  check "pid 1 is systemd" systemd "$(cat /proc/1/comm)"
  check "cgroup v2 mounted on /sys/fs/cgroup" cgroup2fs "$(stat -fc %T /sys/fs/cgroup)"
}

# The package, installed under systemd: its postinst enables and starts crio.
install_checks() {
  local deb
  deb=$(ls "$DEBS"/crio-rs_*-1_amd64.deb)
  try "dpkg -i $(basename "$deb")" dpkg -i "$deb" || return 1
  check "crio.service is enabled by the postinst" enabled "$(systemctl is-enabled crio)"
  check "crio.service is active" active "$(wait_crio)"
  echo "# crio active $(cut -d' ' -f1 /proc/uptime) s since boot"
  check "crio.service is Type=notify" notify "$(systemctl show -P Type crio)"
  check "crio.service has KillMode=process" process "$(systemctl show -P KillMode crio)"
  check "crio is the unit's main process" crio "$(cat "/proc/$(main_pid)/comm" 2>/dev/null)"
  check "the shim is where the package puts it" yes "$([ -x /usr/libexec/crio/containerd-shim-crio-v2 ] && echo yes)"
  try "crioctl version" cri version
  try "crioctl info reports RuntimeReady" bash -c 'crioctl info | grep -q RuntimeReady'
  try "the daemon runs the systemd cgroup driver" bash -c "crio status info | grep -Eq '\"cgroup_driver\": *\"systemd\"'"
}

# A pod with a container under the systemd driver: the scopes below the
# kubelet's slice, the limits in the cgroup v2 files.
pod_checks() {
  local pod ctr pid cg shim
  try "the guest registry answers" wait_registry || return 1
  try "pull $IMAGE" cri pull "$IMAGE" || return 1
  pod_config vm-pod vm1 /tmp/pod.json
  pod=$(cri runp /tmp/pod.json 2>&1) && ok "run a pod" || { not_ok "run a pod" "$pod"; return 1; }
  echo "$pod" >"$STATE/pod"
  ctr=$(run_ctr "$pod" sleeper '["/bin/sleep", "3600"]' \
    '{"cpu_period": 100000, "cpu_quota": 50000, "memory_limit_in_bytes": 67108864}' 2>&1) \
    && ok "create and start a container" || { not_ok "create and start a container" "$ctr"; cgroup_report; return 1; }
  echo "$ctr" >"$STATE/ctr"
  pid=$(ctr_pid "$ctr")
  cg=$(sed -n 's/^0:://p' "/proc/${pid:-0}/cgroup" 2>/dev/null)
  echo "# container $ctr pid ${pid:-?} cgroup ${cg:-?}"
  check "the container's cgroup is crio-<id>.scope in the pod's slice" \
    "${SLICE_DIR#/sys/fs/cgroup}/crio-$ctr.scope" "$cg"
  check "cpu.max holds the CPU limit" "50000 100000" "$(cat "/sys/fs/cgroup$cg/cpu.max" 2>&1)"
  check "memory.max holds the memory limit" 67108864 "$(cat "/sys/fs/cgroup$cg/memory.max" 2>&1)"
  shim=$(cri shim ls | awk -v p="$pod" '$1 == p { print $2 }')
  check "the shim's cgroup is crio-shim-<pod>.scope in the pod's slice" \
    "${SLICE_DIR#/sys/fs/cgroup}/crio-shim-$pod.scope" "$(sed -n 's/^0:://p' "/proc/${shim:-0}/cgroup" 2>/dev/null)"
  check "systemd runs the shim's scope" active "$(systemctl is-active "crio-shim-$pod.scope")"
  check "the pod's slice holds no process itself" "" "$(cat "$SLICE_DIR/cgroup.procs" 2>&1)"
  apparmor_checks "$ctr" "$pid"
}

# Debian's kernel enables AppArmor: the daemon loads crio-default and a
# container that asks for nothing runs confined by it.
apparmor_checks() {
  local out
  check "the kernel has AppArmor" Y "$(cat /sys/module/apparmor/parameters/enabled)"
  if grep -qx 'crio-default (enforce)' /sys/kernel/security/apparmor/profiles; then
    ok "the daemon loaded crio-default"
  else
    not_ok "the daemon loaded crio-default" "$(crio status info 2>&1 | grep -i apparmor)"
  fi
  check "the container runs under crio-default" "crio-default (enforce)" "$(cat "/proc/$2/attr/current" 2>&1)"
  # runc masks /proc/kcore with /dev/null (an empty read); only the
  # profile's deny makes the open fail.
  out=$(cri exec -s "$1" cat /proc/kcore 2>&1)
  if [ $? -ne 0 ] && grep -q "Permission denied" <<<"$out"; then
    ok "crio-default denies /proc/kcore"
  else
    not_ok "crio-default denies /proc/kcore" "$out"
  fi
  # The same read in an Unconfined container succeeds: the denial is the
  # profile's. (A deny rule is not audited: no kernel line to look for.)
  cat >/tmp/unconfined.json <<JSON
{"metadata": {"name": "unconfined"}, "image": {"image": "$IMAGE"},
 "command": ["/bin/sleep", "3600"], "log_path": "unconfined.log",
 "linux": {"security_context": {"namespace_options": {"pid": 1},
                                "apparmor": {"profile_type": 1}}}}
JSON
  local plain
  if plain=$(cri create "$(cat "$STATE/pod")" /tmp/unconfined.json /tmp/pod.json 2>&1) && cri start "$plain" >/dev/null 2>&1; then
    check "an Unconfined container runs unconfined" unconfined "$(cat "/proc/$(ctr_pid "$plain")/attr/current" 2>&1)"
    if out=$(cri exec -s "$plain" cat /proc/kcore 2>&1); then
      ok "an Unconfined container reads the masked /proc/kcore"
    else
      not_ok "an Unconfined container reads the masked /proc/kcore" "$out"
    fi
    cri stop -t 0 "$plain" >/dev/null && cri rm "$plain" >/dev/null
  else
    not_ok "an Unconfined container runs" "$plain"
  fi
}

# Where the pods' processes are (for a failed check).
cgroup_report() {
  local d
  echo "# cgroups:"
  for d in $(find /sys/fs/cgroup/kubepods.slice -type d 2>/dev/null); do
    echo "#   $d: procs=[$(tr '\n' ' ' <"$d/cgroup.procs")] subtree=[$(cat "$d/cgroup.subtree_control")]"
  done
}

# stat_of JSON JQ: the number at JQ (0 when absent).
stat_of() { jq -r "$2 // 0" <<<"$1"; }

# ContainerStats and PodSandboxStats read cgroup v2 values that follow load:
# a container fills 32 MiB of its /dev/shm and burns CPU.
stats_checks() {
  local pod ctr s1 s2 p2
  pod=$(cat "$STATE/pod")
  ctr=$(run_ctr "$pod" burner \
    '["/bin/sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=32 2>/dev/null; while :; do :; done"]' 2>&1) \
    || { not_ok "start a busy container" "$ctr"; return; }
  sleep 5
  # The first statsp is the pod's CPU rate's first sample.
  s1=$(cri stats -o json "$ctr") && cri statsp "$pod" >/dev/null || { not_ok "stats" "$s1"; return; }
  sleep 5
  s2=$(cri stats -o json "$ctr") && p2=$(cri statsp -o json "$pod") || { not_ok "stats" "$s2"; return; }
  local c1 c2 m2 pn2 pm2
  c1=$(stat_of "$s1" '.stats[0].cpu.usageCoreNanoSeconds')
  c2=$(stat_of "$s2" '.stats[0].cpu.usageCoreNanoSeconds')
  m2=$(stat_of "$s2" '.stats[0].memory.workingSetBytes')
  pn2=$(stat_of "$p2" '.stats[0].usageNanoCores')
  pm2=$(stat_of "$p2" '.stats[0].workingSetBytes')
  echo "# container cpu $c1 -> $c2 ns, working set $m2; pod $pn2 nanocores, working set $pm2"
  if [ "$((c2 - c1))" -ge 1000000000 ]; then ok "ContainerStats CPU grows with load"; else not_ok "ContainerStats CPU grows with load" "$c1 -> $c2"; fi
  if [ "$m2" -ge 33554432 ]; then ok "ContainerStats working set holds the 32 MiB written"; else not_ok "ContainerStats working set holds the 32 MiB written" "$m2"; fi
  # A rate: from the two samples, a busy loop is at least a tenth of a core.
  if [ "$pn2" -ge 100000000 ]; then ok "PodSandboxStats CPU rate shows the load"; else not_ok "PodSandboxStats CPU rate shows the load" "$pn2 nanocores"; fi
  if [ "$pm2" -ge "$m2" ]; then ok "PodSandboxStats working set covers its container's"; else not_ok "PodSandboxStats working set covers its container's" "$pm2 < $m2"; fi
  cri stop -t 0 "$ctr" >/dev/null && cri rm "$ctr" >/dev/null
}

# A container that allocates past its memory limit: OOMKilled, 137, from
# cgroup v2's memory.events.
oom_checks() {
  local pod ctr
  pod=$(cat "$STATE/pod")
  ctr=$(run_ctr "$pod" hog '["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"]' \
    '{"memory_limit_in_bytes": 33554432}' 2>&1) || { not_ok "start a memory hog" "$ctr"; return; }
  eventually 60 exited "$ctr" || { not_ok "the memory hog exits" "state $(ctr_field "$ctr" state)"; return; }
  check "the memory hog is reported OOMKilled" OOMKilled "$(ctr_field "$ctr" reason)"
  check "the memory hog's exit code is 137" 137 "$(ctr_field "$ctr" exit_code)"
  cri rm "$ctr" >/dev/null
}

# A `vm` handler added by SIGHUP (our shim, copied, started through its
# shim v2 `start` action like a Kata shim): the daemon moves the server the
# action left into the pod's crio-shim-<pod>.scope.
vm_handler_checks() {
  local bin=/usr/local/lib/crio-vm/containerd-shim-vmtest-v2 pod p shim=
  install -m 0755 /usr/libexec/crio/containerd-shim-crio-v2 "$bin"
  printf '[crio.runtime.runtimes.vmtest]\nruntime_type = "vm"\nruntime_path = "%s"\n' "$bin" \
    >/etc/crio/crio.conf.d/50-vmtest.conf
  try "systemctl reload crio (a vm handler added)" systemctl reload crio || return
  pod_config vm-handler vm3 /tmp/vmpod.json
  pod=$(eventually_out 30 cri runp --runtime vmtest /tmp/vmpod.json) \
    && ok "a pod runs on the vm handler" || { not_ok "a pod runs on the vm handler" "$pod"; return; }
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = "$bin" ] && grep -qF "$pod" "$p/cmdline" 2>/dev/null && shim=${p#/proc/}
  done
  check "the vm handler's shim is in crio-shim-<pod>.scope" \
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podvm3.slice/crio-shim-$pod.scope" \
    "$(sed -n 's/^0:://p' "/proc/${shim:-0}/cgroup" 2>/dev/null)"
  cri stopp "$pod" >/dev/null && cri rmp "$pod" >/dev/null
}

# eventually_out SECS COMMAND...: the output of the first success within
# SECS (a handler added by SIGHUP is usable a moment after the signal).
eventually_out() {
  local secs=$1 i out
  shift
  for i in $(seq 1 "$secs"); do
    out=$("$@" 2>&1) && { echo "$out"; return 0; }
    sleep 1
  done
  echo "$out"
  return 1
}

# systemctl reload (SIGHUP) applies a changed log level; restart and stop
# keep the containers running.
unit_checks() {
  local ctr pid before
  ctr=$(cat "$STATE/ctr")
  pid=$(ctr_pid "$ctr")
  before=$(main_pid)
  printf '[crio.runtime]\nlog_level = "debug"\n' >/etc/crio/crio.conf.d/90-vm-level.conf
  try "systemctl reload crio" systemctl reload crio
  check "reload keeps the daemon's process" "$before" "$(main_pid)"
  if eventually 30 bash -c "crio status config | grep -Eq 'log_level *= *\"debug\"'"; then
    ok "reload applies the new log level"
  else
    not_ok "reload applies the new log level" "$(crio status config 2>&1 | grep log_level)"
  fi
  # Back to the default level: the journal of the rest stays readable.
  rm /etc/crio/crio.conf.d/90-vm-level.conf
  systemctl reload crio
  try "systemctl restart crio" systemctl restart crio
  check "crio.service is active after the restart" active "$(wait_crio)"
  [ "$(main_pid)" != "$before" ] && ok "restart started a new daemon" || not_ok "restart started a new daemon" "same pid $before"
  alive "$pid" && ok "the container survives the restart" || not_ok "the container survives the restart" "pid $pid gone"
  running "$ctr" && ok "the new daemon lists the container running" || not_ok "the new daemon lists the container running" "$(cri ps -a 2>&1)"
  try "systemctl stop crio" systemctl stop crio
  alive "$pid" && ok "the container survives the stop" || not_ok "the container survives the stop" "pid $pid gone"
  try "systemctl start crio" systemctl start crio
  check "crio.service is active again" active "$(wait_crio)"
  running "$ctr" && ok "the container is running after the stop and start" || not_ok "the container is running after the stop and start" "$(cri ps -a 2>&1)"
}

# A newer package while the pod runs: the daemon restarts, the container
# stays and is adopted.
upgrade_checks() {
  local ctr pid before deb
  ctr=$(cat "$STATE/ctr")
  pid=$(ctr_pid "$ctr")
  before=$(main_pid)
  deb=$(ls "$DEBS"/crio-rs_*-2_amd64.deb)
  try "dpkg -i $(basename "$deb") (upgrade)" dpkg -i "$deb" || return
  check "the package is upgraded" "$(dpkg-deb -f "$deb" Version)" "$(dpkg-query -W -f '${Version}' crio-rs)"
  check "crio.service is active after the upgrade" active "$(wait_crio)"
  [ "$(main_pid)" != "$before" ] && ok "the upgrade restarted the daemon" || not_ok "the upgrade restarted the daemon" "same pid $before"
  alive "$pid" && ok "the container survives the upgrade" || not_ok "the container survives the upgrade" "pid $pid gone"
  running "$ctr" && ok "the upgraded daemon lists the container running" || not_ok "the upgraded daemon lists the container running" "$(cri ps -a 2>&1)"
}

# The pod stays running over the power-off; its address is remembered.
before_reboot() {
  lease_of_pod "$(cat "$STATE/pod")" >"$STATE/ip"
  echo "# left running over the reboot: pod $(cat "$STATE/pod") at $(cat "$STATE/ip"), container $(cat "$STATE/ctr")"
  echo 2 >"$STATE/boot"
  sync
}

# The first start since boot wipes the pod the reboot left.
reboot_checks() {
  local pod ctr ip
  pod=$(cat "$STATE/pod")
  ctr=$(cat "$STATE/ctr")
  ip=$(cat "$STATE/ip")
  check "crio.service is active after the reboot" active "$(wait_crio)"
  if journalctl -b -u crio --no-pager | grep -q "first start since boot"; then
    ok "the daemon detects the reboot"
  else
    not_ok "the daemon detects the reboot" "no 'first start since boot' in its journal"
  fi
  cri pods -q | grep -qx "$pod" && not_ok "the pod left by the reboot is gone" "still listed" || ok "the pod left by the reboot is gone"
  listed "$ctr" && not_ok "the container left by the reboot is gone" "still listed" || ok "the container left by the reboot is gone"
  [ -e "/var/lib/cni/networks/crio/$ip" ] && not_ok "its address $ip is released" "lease file still there" || ok "its address $ip is released"
  check "its directories are gone" "" "$(ls -d "/var/lib/crio/containers/$ctr" "/run/crio/pods/$pod" 2>/dev/null)"
  local new ctr2
  pod_config vm-pod2 vm2 /tmp/pod.json
  new=$(cri runp /tmp/pod.json 2>&1) && ok "a new pod runs after the reboot" || { not_ok "a new pod runs after the reboot" "$new"; return; }
  ctr2=$(run_ctr "$new" sleeper '["/bin/sleep", "3600"]' 2>&1) && eventually 30 running "$ctr2" \
    && ok "a new container runs after the reboot" || not_ok "a new container runs after the reboot" "$ctr2"
  cri stopp "$new" >/dev/null && cri rmp "$new" >/dev/null
}

# apt purge: no file of the package, no process of ours; storage kept.
purge_checks() {
  local files left procs
  files=$(dpkg -L crio-rs | while read -r f; do [ -f "$f" ] && echo "$f"; done)
  try "apt-get purge crio-rs" env DEBIAN_FRONTEND=noninteractive apt-get purge -y crio-rs || return
  left=$(for f in $files; do [ -e "$f" ] && echo "$f"; done)
  check "no file of the package is left" "" "$left"
  procs=$(for p in /proc/[0-9]*; do
    case $(cat "$p/comm" 2>/dev/null) in crio | containerd-shim*) echo "${p#/proc/}" ;; esac
  done)
  check "no process of ours is left" "" "$procs"
  check "the unit is gone" "" "$(systemctl list-unit-files crio.service --no-legend 2>/dev/null)"
  check "the storage is kept" yes "$([ -d /var/lib/crio ] && echo yes)"
}

echo "=== CRIO-VM-TEST BEGIN ==="
base_checks
if [ "$(cat "$STATE/boot" 2>/dev/null)" = 2 ]; then
  echo "# boot 2: after the reboot"
  reboot_checks
  purge_checks
  echo 3 >"$STATE/boot"
else
  echo "# boot 1"
  if install_checks && pod_checks; then
    stats_checks
    oom_checks
    vm_handler_checks
    unit_checks
    upgrade_checks
    before_reboot
  fi
fi
echo "=== CRIO-VM-TEST END failed=$failed ==="
echo "=== CRIO-VM-JOURNAL BEGIN ==="
journalctl -b --no-pager -o short-monotonic | grep -v ' kernel: ' | tail -n 400
echo "=== CRIO-VM-JOURNAL END ==="
exit "$failed"
