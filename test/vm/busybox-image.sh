#!/usr/bin/env bash
# Writes a one-layer OCI image of Debian's busybox-static (every applet linked
# in /bin) straight into a docker-registry filesystem storage directory, as
# the registry itself stores a pushed image, so the offline VM test host
# serves it from its own docker-registry without a push.
#
#   test/vm/busybox-image.sh STORAGE_ROOT REPO TAG
#
# STORAGE_ROOT is the registry's storage.filesystem.rootdirectory
# (/var/lib/docker-registry for Debian's package).
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 STORAGE_ROOT REPO TAG" >&2; exit 2; }
storage=$1/docker/registry/v2
repo=$2
tag=$3
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "busybox-image: $busybox missing (busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp"
cp "$busybox" "$work/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
done
tar -C "$work/rootfs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" .
gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
diff_id=$(sha "$work/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$diff_id" >"$work/config.json"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$(sha "$work/config.json")" "$(size "$work/config.json")" \
  "$(sha "$work/layer.tar.gz")" "$(size "$work/layer.tar.gz")" >"$work/manifest.json"

# blob FILE: stores FILE's content, prints its hex digest.
blob() {
  local d
  d=$(sha "$1")
  mkdir -p "$storage/blobs/sha256/${d:0:2}/$d"
  cp "$1" "$storage/blobs/sha256/${d:0:2}/$d/data"
  echo "$d"
}
# link PATH DIGEST: a registry link file.
link() { mkdir -p "$(dirname "$1")" && printf 'sha256:%s' "$2" >"$1"; }

r=$storage/repositories/$repo
for f in config.json layer.tar.gz; do
  d=$(blob "$work/$f")
  link "$r/_layers/sha256/$d/link" "$d"
done
m=$(blob "$work/manifest.json")
link "$r/_manifests/revisions/sha256/$m/link" "$m"
link "$r/_manifests/tags/$tag/current/link" "$m"
link "$r/_manifests/tags/$tag/index/sha256/$m/link" "$m"
echo "busybox-image: $repo:$tag sha256:$m"
