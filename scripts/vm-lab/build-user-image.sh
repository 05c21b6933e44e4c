#!/usr/bin/env bash
# The VM lab's user image: a whole-disk Debian bookworm image that boots from its own disk
# (MBR, GRUB, linux-image-cloud-amd64, systemd, sshd, cloud-init reading the config-2
# drive Ironic writes), plus what the ZooKeeper role needs, as on the netns lab image
# (k1prov/lab/image.py): Debian's zookeeper on the headless Java 17 runtime, so `cluster up`
# runs it with `source: preinstalled` (the VMs have no route out). About 9 min.
#
#   scripts/vm-lab/build-user-image.sh       # prints the path of the qcow2 image
#
# Cached: K1PROV_IMAGE_CACHE (default ~/.cache/k1prov/images)/k1prov-vm-user-<recipe hash>.qcow2;
# a second run with the same recipe prints the cached path at once.
# Built by hand, not with diskimage-builder: this kernel has no device-mapper (kpartx fails)
# and no partition scanning of loop devices, so the partition is a loop device at an offset
# and GRUB is installed by hand (core.img at LBA 1, boot.img into the MBR).
# Needs root, deb.debian.org, and the Debian packages of scripts/apt-packages.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${K1PROV_IMAGE_CACHE:-$HOME/.cache/k1prov/images}
recipe=$(sha256sum "$here/build-user-image.sh" | cut -c1-16)
out=$cache/k1prov-vm-user-$recipe.qcow2
if [[ -s $out ]]; then
    echo "$out"
    exit 0
fi
[[ $(id -u) == 0 ]] || { echo "build-user-image.sh: needs root (loop device, chroot)" >&2; exit 1; }
# The image's file system is mounted in a mount namespace of this build only. Mounted in the
# machine's namespace, it is copied into every mount namespace created meanwhile (other labs'
# hosts, `ip netns exec`); there it outlives our umount, the journal is never checkpointed,
# and the image keeps files only its journal holds: GRUB, which does not read the journal,
# then stops at "normal.mod not found".
if [[ -z ${K1PROV_USER_IMAGE_NS:-} ]]; then
    exec env K1PROV_USER_IMAGE_NS=1 unshare --mount --propagation private -- bash "$0" "$@"
fi
MIRROR=${K1PROV_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The agent writes every byte of the raw image (about 1 min per GiB under TCG): a small root
# (about 390 MiB used) keeps deploys short.
SIZE=${K1PROV_VM_USER_IMAGE_SIZE:-1200M}
mkdir -p "$cache"
work=$(mktemp -d "$cache/vm-user-build.XXXXXX")
raw=$work/disk.raw
mnt=$work/mnt
log=$work/build.log
mkdir -p "$mnt"
loop=
cleanup() {
    set +e
    for m in dev/pts dev proc sys; do mountpoint -q "$mnt/$m" && umount "$mnt/$m"; done
    mountpoint -q "$mnt" && umount "$mnt"
    [[ -n $loop ]] && losetup -d "$loop"
    rm -rf "$work"
}
trap cleanup EXIT
start=$(date +%s)
truncate -s "$SIZE" "$raw"
parted -s "$raw" mklabel msdos mkpart primary ext4 1MiB 100% set 1 boot on
size=$(stat -c %s "$raw")
loop=$(losetup -f --show --offset 1048576 --sizelimit $((size - 1048576)) "$raw")
mkfs.ext4 -q -L cloudimg-rootfs "$loop"
mount "$loop" "$mnt"
nice -n 19 debootstrap --variant=minbase \
    --include=systemd-sysv,udev,kmod,ifupdown,isc-dhcp-client,iproute2,netbase,ca-certificates \
    bookworm "$mnt" "$MIRROR" >> "$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
mount --bind /dev "$mnt/dev"; mount --bind /dev/pts "$mnt/dev/pts"
mount -t proc none "$mnt/proc"; mount -t sysfs none "$mnt/sys"
# The rest with apt inside the chroot (debootstrap --include=cloud-init fails configuring
# python3-cryptography). linux-image-cloud-amd64: virtio and the usual VM devices, a third
# of the generic kernel's modules.
echo "deb $MIRROR bookworm main" > "$mnt/etc/apt/sources.list"
echo "deb ${MIRROR%/debian}/debian-security bookworm-security main" >> "$mnt/etc/apt/sources.list"
{
    chroot "$mnt" apt-get update -q
    DEBIAN_FRONTEND=noninteractive nice -n 19 chroot "$mnt" apt-get install -y -q --no-install-recommends \
        linux-image-cloud-amd64 grub-pc cloud-init openssh-server sudo less procps
    # Debian's zookeeper depends on default-jre (the full JRE with X11 and sound libraries);
    # a local package provides it on top of the headless JRE (k1prov/lab/image.py does the same).
    DEBIAN_FRONTEND=noninteractive nice -n 19 chroot "$mnt" apt-get install -y -q --no-install-recommends \
        openjdk-17-jre-headless
    mkdir -p "$mnt/tmp/k1prov-vm-jre/DEBIAN"
    printf '%s\n' "Package: k1prov-vm-jre" "Version: 1.0" "Architecture: all" \
        "Maintainer: k1prov <k1prov@localhost>" "Depends: openjdk-17-jre-headless" \
        "Provides: default-jre, java-runtime, java17-runtime" \
        "Description: headless Java runtime standing in for default-jre in the k1prov VM image" \
        > "$mnt/tmp/k1prov-vm-jre/DEBIAN/control"
    chroot "$mnt" dpkg-deb --build /tmp/k1prov-vm-jre /tmp/k1prov-vm-jre.deb
    DEBIAN_FRONTEND=noninteractive nice -n 19 chroot "$mnt" apt-get install -y -q --no-install-recommends \
        /tmp/k1prov-vm-jre.deb zookeeper
    rm -rf "$mnt/tmp/k1prov-vm-jre" "$mnt/tmp/k1prov-vm-jre.deb"
    test -x "$mnt/usr/share/zookeeper/bin/zkServer.sh"
} >> "$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
echo "LABEL=cloudimg-rootfs / ext4 defaults,errors=remount-ro 0 1" > "$mnt/etc/fstab"
echo k1prov-vm-user > "$mnt/etc/hostname"
# cloud-init reads the config drive only (never a metadata server over the network); its
# network_data.json becomes ifupdown configuration.
cat > "$mnt/etc/cloud/cloud.cfg.d/90-k1prov.cfg" <<'EOF'
datasource_list: [ConfigDrive, None]
# No locales package: cloud-init's locale module would fail (and cloud-config.service with it).
locale: false
EOF
cat > "$mnt/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*
EOF
# No password logins at all: the operator's key comes from the config drive.
passwd -R "$mnt" -l root >> "$log" 2>&1 || chroot "$mnt" passwd -l root >> "$log" 2>&1
# GRUB by hand (grub-install cannot map an offset loop device to a BIOS disk).
mkdir -p "$mnt/boot/grub/i386-pc"
cp "$mnt"/usr/lib/grub/i386-pc/*.mod "$mnt"/usr/lib/grub/i386-pc/*.lst "$mnt/boot/grub/i386-pc/"
chroot "$mnt" grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img \
    -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2 search search_label
cat > "$mnt/boot/grub/grub.cfg" <<'EOF'
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
menuentry 'Debian GNU/Linux 12 (k1prov VM lab user image)' {
  insmod part_msdos
  insmod ext2
  search --no-floppy --label cloudimg-rootfs --set=root
  linux /vmlinuz root=LABEL=cloudimg-rootfs ro console=tty0 console=ttyS0,115200n8
  initrd /initrd.img
}
EOF
# Smaller image: no package lists, caches, documentation.
chroot "$mnt" apt-get clean
rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/usr/share/doc/* "$mnt"/usr/share/man/* "$mnt"/usr/share/locale/*
core=$mnt/boot/grub/i386-pc/core.img
if (( $(stat -c %s "$core") >= 2047 * 512 )); then
    echo "build-user-image.sh: GRUB's core.img does not fit before the partition" >&2; exit 1
fi
cp "$mnt/usr/lib/grub/i386-pc/boot.img" "$work/boot.img"
cp "$core" "$work/core.img"
fstrim "$mnt" >/dev/null 2>&1 || true
for m in dev/pts dev proc sys; do umount "$mnt/$m"; done
umount "$mnt"
# Refuse an image whose file system needs its journal (see the mount namespace above).
e2fsck -fn "$loop" >> "$log" 2>&1 || { tail -20 "$log" >&2; echo "build-user-image.sh: the image's file system is not clean" >&2; exit 1; }
losetup -d "$loop"; loop=
# boot.img's first 440 bytes into the MBR (the partition table stays); it loads core.img
# from LBA 1.
dd if="$work/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
qemu-img convert -c -O qcow2 "$raw" "$work/image.qcow2"
mv "$work/image.qcow2" "$out.partial"
mv "$out.partial" "$out"
echo "built in $(( $(date +%s) - start )) s, $(stat -c %s "$out") bytes" >&2
echo "$out"
