#!/bin/sh
# Builds the burst image from a built `burst` binary, with no registry: a tiny base image (busybox from Debian's
# busybox-static, plus the C libraries the binary links) is made locally with `docker import`, then
# deploy/Dockerfile puts the binary on it. The one binary serves every role (burst controller, burst worker).
#
#   deploy/image.sh [BINARY] [TAG]      defaults: target/release/burst burst:local
#   BASE=debian:bookworm-slim deploy/image.sh ...   to build on a real base image instead (needs a registry)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-target/release/burst}
tag=${2:-burst:local}
base=${BASE:-burst-base:local}

[ -x "$binary" ] || { echo "image.sh: $binary is not an executable; build it first (cargo build --release)" >&2; exit 2; }

if [ "$base" = "burst-base:local" ] && ! docker image inspect "$base" >/dev/null 2>&1; then
  busybox=$(command -v busybox || echo /bin/busybox)
  [ -x "$busybox" ] || { echo "image.sh: busybox not found (apt-get install busybox-static)" >&2; exit 2; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/data" "$root/out" "$root/usr/local/bin"
  chmod 1777 "$root/tmp" "$root/data" "$root/out"
  cp "$busybox" "$root/bin/busybox"
  for applet in sh ls cat echo sleep true false env hostname id ps kill mkdir rm; do
    ln -s busybox "$root/bin/$applet"
  done
  # The C libraries (and loader) the binary was linked against.
  for lib in $(ldd "$binary" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/sh' >> "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/bin:/bin' - "$base" >/dev/null
  echo "image.sh: built $base"
fi

context=$(mktemp -d)
# The release build keeps line tables for backtraces; the image gets the binary without its debug sections.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug -o "$context/burst" "$binary"
else
  cp "$binary" "$context/burst"
fi
docker build -q -f "$here/Dockerfile" --build-arg "BASE=$base" -t "$tag" "$context" >/dev/null
rm -rf "$context"
echo "image.sh: built $tag"
