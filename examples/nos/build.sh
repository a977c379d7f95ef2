#!/usr/bin/env bash
# Builds a tiny demo NOS: the host's Debian kernel plus a static-busybox initramfs whose /init prints
#   PROVISION-NOS-BOOTED <name> <version>
# on the serial console, and a small squashfs root image, in LinuxKit's kernel+initrd layout:
#   OUT/NAME-kernel  OUT/NAME-initrd.img  OUT/NAME-cmdline  (+ OUT/NAME-rootfs.squashfs)
# Usage: examples/nos/build.sh [OUT_DIR [NAME [VERSION]]]   (default examples/nos/build demo 1.0.0)
# Needs: linux-image-amd64 (a /boot/vmlinuz-*), busybox-static, squashfs-tools, python3. No root.
# Reproducible: same inputs and SOURCE_DATE_EPOCH give the same files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build}
name=${2:-demo}
version=${3:-1.0.0}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}

kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || { echo "build.sh: no /boot/vmlinuz-* (apt-get install linux-image-amd64)" >&2; exit 3; }
[ -r "$kernel" ] || { echo "build.sh: cannot read $kernel (Debian kernels are root-only: run as root)" >&2; exit 3; }
busybox=${BUSYBOX:-/bin/busybox}  # busybox-static's: the initramfs has no shared libraries
[ -x "$busybox" ] || { echo "build.sh: needs busybox-static ($busybox)" >&2; exit 3; }
command -v mksquashfs >/dev/null || { echo "build.sh: needs squashfs-tools" >&2; exit 3; }

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/init" <<INIT
#!/bin/busybox sh
# Demo NOS init: mount the basics, say who booted, then give a shell on the console.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "PROVISION-NOS-BOOTED $name $version" > /dev/console
if /bin/busybox grep -q 'nos.poweroff' /proc/cmdline; then /bin/busybox poweroff -f; fi
exec /bin/busybox sh < /dev/console > /dev/console 2>&1
INIT

entries=(dir:bin dir:dev dir:proc dir:sys dir:tmp dir:etc
         "file:bin/busybox=$busybox:755" "file:init=$tmp/init:755"
         cdev:dev/console=5,1 cdev:dev/null=1,3)
for applet in sh mount poweroff reboot ls cat echo grep; do entries+=("link:bin/$applet=busybox"); done
python3 "$here/mkcpio.py" "$tmp/initrd.cpio" "${entries[@]}"
gzip -n -9 -c "$tmp/initrd.cpio" > "$out/$name-initrd.img"
cp "$kernel" "$out/$name-kernel"
touch -d "@$SOURCE_DATE_EPOCH" "$out/$name-kernel"
echo "panic=10" > "$out/$name-cmdline"

mkdir -p "$tmp/rootfs/etc"
printf 'NAME=%s\nVERSION=%s\n' "$name" "$version" > "$tmp/rootfs/etc/os-release"
env -u SOURCE_DATE_EPOCH mksquashfs "$tmp/rootfs" "$out/$name-rootfs.squashfs" -noappend -quiet -no-progress -all-root \
    -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" >/dev/null
echo "$out/$name-kernel"
echo "$out/$name-initrd.img"
echo "$out/$name-cmdline"
echo "$out/$name-rootfs.squashfs"
