#!/usr/bin/env bash
# (Re)starts the installed crio on its default configuration: through systemd
# when it runs the host, otherwise as a background process in its own session
# logging to /var/log/crio.log. Waits until the CRI answers.
set -euo pipefail

SOCK=/run/crio/crio.sock
if [ -d /run/systemd/system ]; then
  # The package's unit, pointed at the binaries setup.sh installs.
  sed 's|/usr/bin/crio|/usr/local/bin/crio|' "$(dirname "$0")/../packaging/systemd/crio.service" \
    > /etc/systemd/system/crio.service
  systemctl daemon-reload
  systemctl enable --now crio
  systemctl restart crio
else
  if [ -f /run/crio/crio.pid ] && kill -0 "$(cat /run/crio/crio.pid)" 2>/dev/null; then
    kill -TERM "$(cat /run/crio/crio.pid)"
    for _ in $(seq 50); do kill -0 "$(cat /run/crio/crio.pid)" 2>/dev/null || break; sleep 0.1; done
  fi
  mkdir -p /run/crio
  setsid /usr/local/bin/crio </dev/null >>/var/log/crio.log 2>&1 &
  echo $! > /run/crio/crio.pid
fi

for _ in $(seq 100); do
  if /usr/local/bin/crioctl --runtime-endpoint "unix://$SOCK" version >/dev/null 2>&1; then
    /usr/local/bin/crioctl --runtime-endpoint "unix://$SOCK" version
    echo "crio is serving $SOCK (log: /var/log/crio.log or journalctl -u crio)"
    exit 0
  fi
  sleep 0.1
done
echo "crio did not answer on $SOCK; see /var/log/crio.log" >&2
tail -20 /var/log/crio.log >&2 || true
exit 1
