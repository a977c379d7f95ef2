#!/bin/sh
# A minimal NOS installer used only to prove the ONIE-like guest itself (with dnsmasq and a plain
# HTTP server), independent of `provision onie-installer`. It does what ONIE's demo installer does
# (demo/installer/grub-arch/install.sh in ONIE's tree): find the disk holding ONIE-BOOT, add a
# partition with sgdisk, mkfs.ext4, install GRUB
# (UEFI: ESP /EFI/<nos>/ + efibootmgr; BIOS: i386-pc MBR). It fetches the NOS kernel and initrd
# from the directory its own URL came from ($onie_exec_url).
set -e
nos=refnos
base=${onie_exec_url%/*}
[ "$(onie-sysinfo -p)" = x86_64-kvm_x86_64-r0 ] || { echo "wrong platform"; exit 1; }
onie_dev=$(blkid -L ONIE-BOOT)
disk=${onie_dev%[0-9]*}
echo "REFNOS: ONIE-BOOT=$onie_dev disk=$disk firmware=$(onie-sysinfo -f)"
part=$(sgdisk -p "$disk" | awk '$7 == "REFNOS" {print $1}')
if [ -n "$part" ]; then
    sgdisk -d "$part" "$disk"
    partx -d -n "$part" "$disk" || true
fi
last=$(sgdisk -p "$disk" | awk '/^ +[0-9]/ {n=$1} END {print n}')
part=$((last + 1))
sgdisk -n "$part:0:+256M" -t "$part:8300" -c "$part:REFNOS" "$disk"
# A full re-read fails while ONIE-BOOT is mounted: add just the new partition (docs/onie.md).
partx -a -n "$part" "$disk" 2>/dev/null || partx -u -n "$part" "$disk"
mkfs.ext4 -q -F -L REFNOS "$disk$part"
mkdir -p /mnt/nos
mount "$disk$part" /mnt/nos
wget -q -O /mnt/nos/vmlinuz "$base/nos/vmlinuz"
wget -q -O /mnt/nos/initrd.gz "$base/nos/initrd.gz"
mkdir -p /mnt/nos/boot/grub
if [ "$(onie-sysinfo -f)" = uefi ]; then
    mkdir -p /mnt/esp
    mount "${disk}1" /mnt/esp
    grub-install --target=x86_64-efi --no-nvram --bootloader-id=$nos --efi-directory=/mnt/esp \
        --boot-directory=/mnt/nos/boot "$disk"
    efibootmgr -q -c -d "$disk" -p 1 -L "$nos" -l "\\EFI\\$nos\\grubx64.efi"
    umount /mnt/esp
else
    grub-install --target=i386-pc --boot-directory=/mnt/nos/boot "$disk"
fi
cat > /mnt/nos/boot/grub/grub.cfg <<EOC
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=1
menuentry "$nos" {
  search --no-floppy --label --set=root REFNOS
  linux /vmlinuz console=ttyS0,115200 quiet
  initrd /initrd.gz
}
EOC
umount /mnt/nos
echo "REFNOS: installed on $disk$part"
