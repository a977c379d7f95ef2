#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) for provision: the Debian tools its tests and lab use,
# and a virtualenv at .venv with provision installed (non-editable, as users get it) plus test extras.
# Idempotent: a second run only checks. Nothing here downloads outside Debian's and PyPI's registries.
set -euo pipefail
cd "$(dirname "$0")/.."

# One line per area, so that areas add what they need without editing each other's lines.
PKGS_CORE="python3 python3-venv python3-pip git iproute2 procps psmisc kmod util-linux ca-certificates curl"
PKGS_INSTALLER="busybox-static gdisk fdisk dosfstools mtools e2fsprogs squashfs-tools cpio xz-utils grub2-common grub-common grub-pc-bin grub-efi-amd64-bin linux-image-amd64 util-linux gzip u-boot-tools device-tree-compiler libubootenv-tool"
PKGS_SERVE="dnsmasq isc-dhcp-client isc-dhcp-relay tftp-hpa atftp tftpd-hpa nginx-light ipxe nftables"
PKGS_VM="qemu-system-x86 qemu-system-arm ipxe-qemu ovmf qemu-efi-aarch64 u-boot-qemu linux-image-amd64 grub-efi-amd64-bin grub-pc-bin grub-common efibootmgr busybox-static cpio"
PKGS_BMC="openipmi ipmitool"
# The web status page's tests (tests/provision/server/test_web_browser.py): a real headless browser.
PKGS_WEB="chromium fonts-dejavu-core"
# The ONIE-like QEMU guest (tests/support/onie_guest.py): its initramfs copies these tools in.
PKGS_ONIEVM="qemu-system-x86 ovmf linux-image-amd64 busybox-static cpio gzip kmod gdisk e2fsprogs dosfstools mtools util-linux efibootmgr grub-common grub-efi-amd64-bin grub-pc-bin dnsmasq"
# The shared state store's tests (tests/support/postgres.py): a throwaway cluster run as `postgres`.
PKGS_STORE="postgresql"
# bench/dhcp.py's peers in the same run as provision: Kea (memfile, and PostgreSQL with the
# schema kea-admin ships) next to dnsmasq.
PKGS_BENCH="kea-dhcp4-server kea-admin"
# Rollout rehearsal (provision lab fleet) and the ssh driver tests: a real sshd per simulated fleet.
PKGS_ROLLOUT="openssh-server openssh-client busybox-static openssl"

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages and the tests create network namespaces)" >&2
  exit 3
fi
export DEBIAN_FRONTEND=noninteractive
want=$(echo $PKGS_CORE $PKGS_INSTALLER $PKGS_SERVE $PKGS_VM $PKGS_BMC $PKGS_ONIEVM $PKGS_WEB $PKGS_STORE $PKGS_ROLLOUT $PKGS_BENCH)
missing=$(dpkg-query -W -f='${Package} ${Status}\n' $want 2>/dev/null | awk '$NF!="installed"{print $1}'; \
          for p in $want; do dpkg-query -W "$p" >/dev/null 2>&1 || echo "$p"; done)
missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ -n "${missing// }" ]; then
  echo "setup: installing Debian packages: $missing"
  apt-get update -qq
  # postgresql, openssh-server and kea-dhcp4-server are peers the tests and benches start
  # themselves, in namespaces, with their own configuration: no daemon of theirs may start on the
  # host when installed (a DHCP server or sshd on the host's LAN). invoke-rc.d asks policy-rc.d
  # (Debian Policy 9.3.3): exit 101 forbids every start while these packages install.
  policy_rc=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_rc=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod 755 "$policy_rc"
    trap 'rm -f "$policy_rc"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  if [ -n "$policy_rc" ]; then rm -f "$policy_rc"; trap - EXIT; fi
  # ... nor at the next boot, where systemd runs (not in a container without it). Only the units
  # of packages installed just now: an sshd the operator already used stays as it was.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for pair in kea-dhcp4-server:kea-dhcp4-server openssh-server:ssh postgresql:postgresql; do
      case " $missing " in *" ${pair%%:*} "*) systemctl disable --now "${pair#*:}" >/dev/null 2>&1 || true ;; esac
    done
  fi
fi
# ARM64 guest pieces for the netboot VM tests (tests/vm): an arm64 kernel, static busybox and GRUB's
# arm64-efi modules. Debian has no cross package for them, so take the arm64 .debs from Debian's own
# archive (apt-get download) and unpack them with dpkg -x into a cache folder: nothing is installed
# for arm64. Idempotent: skipped when the stamp names the same kernel package.
ARM64_CACHE=${PROVISION_ARM64_CACHE:-/var/cache/provision-lab/arm64}
arm64_pieces() {
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
  local kver
  kver=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null | awk '/Depends: linux-image-/{sub(":arm64","",$2);print $2;exit}')
  if [ -z "$kver" ]; then apt-get update -qq; kver=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-/{sub(":arm64","",$2);print $2;exit}'); fi
  if [ -f "$ARM64_CACHE/.stamp" ] && [ "$(cat "$ARM64_CACHE/.stamp")" = "$kver" ] \
     && [ -d "$ARM64_CACHE/root/usr/lib/grub/arm64-efi" ]; then
    return 0
  fi
  echo "setup: fetching arm64 guest pieces ($kver, busybox-static, grub-efi-arm64-bin) into $ARM64_CACHE"
  rm -rf "$ARM64_CACHE.tmp" && mkdir -p "$ARM64_CACHE.tmp/debs" "$ARM64_CACHE.tmp/root"
  (cd "$ARM64_CACHE.tmp/debs" && apt-get download -qq "$kver:arm64" busybox-static:arm64 grub-efi-arm64-bin:arm64)
  for d in "$ARM64_CACHE.tmp"/debs/*.deb; do dpkg -x "$d" "$ARM64_CACHE.tmp/root"; done
  rm -rf "$ARM64_CACHE.tmp/debs" "$ARM64_CACHE"
  echo "$kver" > "$ARM64_CACHE.tmp/.stamp"
  mv "$ARM64_CACHE.tmp" "$ARM64_CACHE"
}
arm64_pieces

# The arm64 ONIE-like guests of tests/vm/test_onie_arm64_e2e.py (tests/support/onie_guest_arm64.py)
# run the tools a NOS installer calls as arm64 binaries, taken like arm64_pieces: Debian's arm64
# .debs unpacked (never installed) into $ARM64_CACHE/tools; the test finds each binary's shared
# libraries there by readelf's NEEDED entries.
ARM64_ONIE_PKGS="libc6 libgcc-s1 libstdc++6 gdisk libpopt0 e2fsprogs libext2fs2 libcom-err2 libss2
  libblkid1 libuuid1 dosfstools util-linux libsmartcols1 libmount1 libselinux1 libpcre2-8-0 libudev1
  efibootmgr libefiboot1 libefivar1 grub-common grub2-common libdevmapper1.02.1 liblzma5
  libubootenv-tool libubootenv0.1 libyaml-0-2 zlib1g"
arm64_onie_tools() {
  local want
  want=$(echo $ARM64_ONIE_PKGS)
  if [ -f "$ARM64_CACHE/tools/.stamp" ] && [ "$(cat "$ARM64_CACHE/tools/.stamp")" = "$want" ]; then
    return 0
  fi
  echo "setup: fetching arm64 ONIE-guest tools into $ARM64_CACHE/tools"
  rm -rf "$ARM64_CACHE/tools.tmp" && mkdir -p "$ARM64_CACHE/tools.tmp/debs" "$ARM64_CACHE/tools.tmp/root"
  # shellcheck disable=SC2086
  (cd "$ARM64_CACHE/tools.tmp/debs" && apt-get download -qq $(printf '%s:arm64 ' $want))
  for d in "$ARM64_CACHE/tools.tmp"/debs/*.deb; do dpkg -x "$d" "$ARM64_CACHE/tools.tmp/root"; done
  rm -rf "$ARM64_CACHE/tools.tmp/debs" "$ARM64_CACHE/tools"
  echo "$want" > "$ARM64_CACHE/tools.tmp/.stamp"
  mv "$ARM64_CACHE/tools.tmp" "$ARM64_CACHE/tools"
}
arm64_onie_tools

# Debian's packaged daemons must not hold the ports our tests bind inside namespaces; they only
# run in the host namespace, but a running tftpd-hpa/nginx/dnsmasq is noise nobody asked for.
for svc in tftpd-hpa nginx dnsmasq; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done

# The venv is made from Debian's python3, the one installed above with its python3-venv, not from
# whatever python3 comes first in PATH: under a pyenv build (libpython a shared library, configured
# without --enable-optimizations) `provision serve` spent 20% more CPU per lease in bench/dhcp.py's
# storm on the same machine (docs/netboot.md "Performance"). PYTHON=/path/to/python3 chooses
# another; an existing .venv is kept as it is.
PY=${PYTHON:-/usr/bin/python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
elif [ "$(readlink -f .venv/bin/python)" != "$(readlink -f "$(command -v "$PY")")" ]; then
  echo "setup: note: .venv runs $(readlink -f .venv/bin/python), not $PY; rm -rf .venv and run again to remake it"
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q '.[test]'
echo "setup: ready (.venv/bin/provision $(.venv/bin/provision --version | awk '{print $NF}'))"
