#!/usr/bin/env bash
# build-tiny-guest.sh — build the pvce "tiny-linux" test/demo guest, offline,
# from Debian packages, without root-only tricks (no mount, loop or nbd).
#
# Usage: scripts/build-tiny-guest.sh OUTPUT.qcow2 [--name TEMPLATE_NAME] [--extra-dir DIR]...
#
#   --name NAME      template name baked into the guest (/etc/pvce-template and the
#                    boot banner "pvce template: NAME"); default "tiny-linux".
#   --extra-dir DIR  copy DIR's contents over the root file system (after the base
#                    files, so it may add or replace files), e.g. marker files of a
#                    child template. May be repeated; applied in the order given.
#
# What comes out: a compressed qcow2 (~14 MB on disk, virtual size 1 GiB — the same
# as the "blank" root template, so the image can sit on top of it in a backing chain).
#   MBR (syslinux mbr.bin, disk id 0x7076ce00)
#   vda1  32 MiB FAT16, active: SYSLINUX, vmlinuz (Debian cloud kernel), initrd.gz
#   vda2  ~991 MiB ext4 (label pvce-root), busybox-static userland, mounted by the
#         initramfs with commit=1,nodelalloc so a hard power-off keeps recent writes
#         (measured: a write survives a SIGKILL of QEMU 1.5 s later).
# Kernel command line: console=tty0 console=ttyS0,115200 root=/dev/vda2
#   rootflags=commit=1,nodelalloc (the initramfs reads root= and rootflags=).
# The image is reproducible: same inputs -> byte-identical qcow2 (fixed
# SOURCE_DATE_EPOCH, default 1700000000; fixed file system UUIDs; sorted archives),
# so a child template built with --extra-dir differs from its parent only where the
# extra files are (see templates-tree/README.md).
#
# Guest behaviour (tests rely on these strings, on ttyS0 and on tty0/VGA):
#   "pvce template: NAME"  then  "BOOT-OK HOSTNAME"
# HOSTNAME is /sys/class/dmi/id/product_serial (SMBIOS type 1 serial, e.g. qemu
# -smbios type=1,serial=X or libvirt <sysinfo type='smbios'><system><entry
# name='serial'>X</entry> with <os><smbios mode='sysinfo'/>), reduced to
# [A-Za-z0-9._-] and 63 chars; "tiny" if empty. After BOOT-OK a root shell runs on
# ttyS0 and on tty1 (VGA/VNC), respawned by busybox init. ACPI power button ->
# busybox acpid -> /etc/acpi/PWRF/00000080 -> sync + poweroff. The NIC must be
# virtio (the cloud kernel has no e1000/rtl8139 drivers). /etc/pvce-template holds
# NAME; /usr/share/pvce/software/busybox is the base software marker.
#
# Needs (Debian): apt (only for the first download), dpkg (dpkg-deb), fdisk (sfdisk),
# dosfstools (mkfs.fat), mtools (mcopy), syslinux + syslinux-common (mbr.bin),
# e2fsprogs >= 1.43 (mkfs.ext4 -d, debugfs, dumpe2fs, e2fsck; 1.47.2 works too), qemu-utils (qemu-img), gzip,
# coreutils; optional: cpio (GNU cpio --reproducible; else busybox cpio, not
# reproducible), perl (fast applet links; perl-base is Essential).
# Downloaded .debs are cached in ${PVCE_CACHE_DIR:-$HOME/.cache/pvce}/debs, the
# extracted kernel + module subset in .../tiny-kernel, a SYSLINUX-ready FAT in
# .../syslinux; a re-run does not touch the network (nor apt: the chosen .debs are
# remembered in debs/tiny-guest.resolved).
# Environment: PVCE_REFRESH=1 asks apt again (e.g. after a kernel update);
# PVCE_KERNEL_PKG picks the kernel package (default: what linux-image-cloud-amd64
# depends on); SOURCE_DATE_EPOCH sets the file times.
set -euo pipefail

PROG=build-tiny-guest
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

usage() {
    sed -n '/^# Usage:/,/^# What comes out/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# ---------------------------------------------------------------- arguments
OUT=""
NAME="tiny-linux"
EXTRA_DIRS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --name) [ $# -ge 2 ] || die "--name needs a value"; NAME="$2"; shift 2 ;;
        --name=*) NAME="${1#--name=}"; shift ;;
        --extra-dir) [ $# -ge 2 ] || die "--extra-dir needs a value"; EXTRA_DIRS+=("$2"); shift 2 ;;
        --extra-dir=*) EXTRA_DIRS+=("${1#--extra-dir=}"); shift ;;
        -h|--help) usage 0 ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) [ -z "$OUT" ] || die "more than one OUTPUT given: '$OUT' and '$1'"; OUT="$1"; shift ;;
    esac
done
[ -n "$OUT" ] || { echo "$PROG: error: OUTPUT.qcow2 is required" >&2; usage 2; }
[[ "$NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]] ||
    die "template name '$NAME' must match [A-Za-z0-9][A-Za-z0-9._-]* (max 63 chars)"
for i in "${!EXTRA_DIRS[@]}"; do
    d="${EXTRA_DIRS[$i]}"
    [ -d "$d" ] || die "--extra-dir '$d' is not a directory"
    EXTRA_DIRS[$i]="$(cd "$d" && pwd)"
done
OUT_DIR="$(dirname -- "$OUT")"
[ -d "$OUT_DIR" ] || die "output directory '$OUT_DIR' does not exist"
[ -w "$OUT_DIR" ] || die "output directory '$OUT_DIR' is not writable"

START_NS=$(date +%s%N)
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"   # also read by mtools
# Reproducible output: same inputs -> same image (timestamps, UUIDs, order fixed),
# which also keeps a child template's diff against its parent small.
EPOCH="$SOURCE_DATE_EPOCH"
[[ "$EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds"
ROOT_UUID=6f1c3a52-7d0e-4c1b-9a55-70766365726f   # fixed on purpose, see above
HASH_SEED=0b5e55ed-7063-4e65-8a11-746966697865

# ---------------------------------------------------------------- tools
export PATH="$PATH:/usr/sbin:/sbin"
need() {
    local tool="$1" pkg="$2"
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (install the Debian package '$pkg')"
}
need dpkg-deb dpkg
need sfdisk fdisk
need mkfs.fat dosfstools
need mcopy mtools
need syslinux syslinux
need mkfs.ext4 e2fsprogs
need qemu-img qemu-utils
need gzip gzip

MBR_BIN=""
for f in /usr/lib/syslinux/mbr/mbr.bin /usr/lib/SYSLINUX/mbr.bin /usr/share/syslinux/mbr.bin; do
    [ -f "$f" ] && { MBR_BIN="$f"; break; }
done
[ -n "$MBR_BIN" ] || die "syslinux mbr.bin not found (install the Debian package 'syslinux-common')"

# ---------------------------------------------------------------- temp + cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pvce-tiny-guest.XXXXXX")"
OUT_TMP="$OUT.tmp.$$"
cleanup() {
    local rc=$?
    rm -rf -- "$WORK"
    rm -f -- "$OUT_TMP"
    [ $rc -eq 0 ] || log "FAILED (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- packages (cached)
CACHE_DIR="${PVCE_CACHE_DIR:-$HOME/.cache/pvce}"
DEB_CACHE="$CACHE_DIR/debs"
mkdir -p "$DEB_CACHE" || die "cannot create cache directory '$DEB_CACHE'"

# Print the path of a cached .deb for package $1, downloading it if needed.
# Prefers the apt candidate version; offline, falls back to the newest cached one.
fetch_deb() {
    local pkg="$1" ver="" file="" cached=""
    if command -v apt-cache >/dev/null 2>&1; then
        ver="$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
        [ "$ver" = "(none)" ] && ver=""
    fi
    if [ -n "$ver" ]; then
        file="$DEB_CACHE/${pkg}_${ver//:/%3a}_amd64.deb"
        if [ -s "$file" ]; then echo "$file"; return 0; fi
        if command -v apt-get >/dev/null 2>&1; then
            log "downloading $pkg $ver into $DEB_CACHE"
            local dl="$WORK/dl-$pkg"
            mkdir -p "$dl"
            chmod 0777 "$dl" 2>/dev/null || true   # lets apt's _apt user write here
            if (cd "$dl" && apt-get download -q "$pkg=$ver") >"$WORK/dl-$pkg.log" 2>&1; then
                local got
                got="$(ls "$dl"/*.deb 2>/dev/null | head -n1)"
                if [ -n "$got" ]; then
                    mv -f "$got" "$file.part" && mv -f "$file.part" "$file"
                    echo "$file"; return 0
                fi
            fi
            log "warning: 'apt-get download $pkg=$ver' failed:"
            sed 's/^/    /' "$WORK/dl-$pkg.log" >&2 || true
        fi
    fi
    cached="$(ls "$DEB_CACHE/${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)"
    [ -n "$cached" ] || die "package '$pkg' is not in $DEB_CACHE and could not be downloaded (needs a Debian mirror in apt's sources and 'apt-get update')"
    log "using cached $(basename "$cached")"
    echo "$cached"
}

# Which .debs to use is remembered in $RESOLVED, so a re-run asks apt nothing (apt-cache
# alone can take seconds); PVCE_REFRESH=1 (or a missing .deb) resolves again.
RESOLVED="$DEB_CACHE/tiny-guest.resolved"
KERNEL_DEB=""
BUSYBOX_DEB=""
if [ "${PVCE_REFRESH:-0}" != 1 ] && [ -z "${PVCE_KERNEL_PKG:-}" ] && [ -f "$RESOLVED" ]; then
    KERNEL_DEB="$(sed -n 's/^kernel=//p' "$RESOLVED")"
    BUSYBOX_DEB="$(sed -n 's/^busybox=//p' "$RESOLVED")"
    [ -s "$KERNEL_DEB" ] && [ -s "$BUSYBOX_DEB" ] || { KERNEL_DEB=""; BUSYBOX_DEB=""; }
fi
if [ -z "$KERNEL_DEB" ]; then
    KERNEL_PKG="${PVCE_KERNEL_PKG:-}"
    if [ -z "$KERNEL_PKG" ]; then
        if command -v apt-cache >/dev/null 2>&1; then
            KERNEL_PKG="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
                awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ {print $2; exit}')"
        fi
        if [ -z "$KERNEL_PKG" ]; then
            # offline / no apt: newest cached cloud kernel
            KERNEL_PKG="$(ls "$DEB_CACHE"/linux-image-[0-9]*-cloud-amd64_*.deb 2>/dev/null |
                sort -V | tail -n1 | xargs -r basename | sed 's/_.*//')"
        fi
        [ -n "$KERNEL_PKG" ] || die "cannot find the cloud kernel package: 'apt-cache depends linux-image-cloud-amd64' gave nothing (run 'apt-get update'?) and nothing is cached in $DEB_CACHE; set PVCE_KERNEL_PKG"
    fi
    KERNEL_DEB="$(fetch_deb "$KERNEL_PKG")"
    BUSYBOX_DEB="$(fetch_deb busybox-static)"
    printf 'kernel=%s\nbusybox=%s\n' "$KERNEL_DEB" "$BUSYBOX_DEB" >"$RESOLVED.$$" && mv -f "$RESOLVED.$$" "$RESOLVED"
fi

# ---------------------------------------------------------------- busybox
mkdir -p "$WORK/bb"
dpkg-deb -x "$BUSYBOX_DEB" "$WORK/bb" || die "cannot unpack $BUSYBOX_DEB"
BB="$WORK/bb/bin/busybox"
[ -x "$BB" ] || die "$BUSYBOX_DEB has no bin/busybox"
"$BB" true || die "the busybox from $BUSYBOX_DEB does not run here"

# ---------------------------------------------------------------- kernel + modules (cached)
# Modules loaded in the guest (plus their dependencies). Missing ones are skipped.
MODULES="virtio_pci virtio_blk virtio_net virtio_console virtio_rng virtio_balloon virtio_input button evdev"
KEY="$(basename "$KERNEL_DEB" .deb)-$(echo "$MODULES" | cksum | cut -d' ' -f1)"
KCACHE="$CACHE_DIR/tiny-kernel/$KEY"
if [ ! -f "$KCACHE/.complete" ]; then
    log "unpacking $(basename "$KERNEL_DEB") (once; cached in $KCACHE)"
    KX="$WORK/kernel-x"
    mkdir -p "$KX"
    dpkg-deb --fsys-tarfile "$KERNEL_DEB" | tar -x -C "$KX" --wildcards \
        './boot/vmlinuz-*' './lib/modules/*' ||
        die "cannot unpack $KERNEL_DEB"
    VMLINUZ="$(ls "$KX"/boot/vmlinuz-* 2>/dev/null | head -n1)"
    [ -n "$VMLINUZ" ] || die "$KERNEL_DEB has no /boot/vmlinuz-*"
    KVER="${VMLINUZ##*/vmlinuz-}"
    KMOD="$KX/lib/modules/$KVER"
    [ -d "$KMOD/kernel" ] || die "$KERNEL_DEB has no /lib/modules/$KVER/kernel"

    # name -> path index (module names compare with '-' == '_')
    find "$KMOD/kernel" -name '*.ko' | sed 's|.*/\(.*\)\.ko$|\1 &|' |
        awk '{n=$1; gsub("-","_",n); print n, $2}' >"$WORK/modindex"
    declare -A SEEN=()
    STAGE="$WORK/kcache"
    mkdir -p "$STAGE/modules/lib/modules/$KVER"
    add_module() {
        local name="${1//-/_}" path dep
        [ -n "${SEEN[$name]:-}" ] && return 0
        SEEN[$name]=1
        path="$(awk -v n="$name" '$1 == n {print $2; exit}' "$WORK/modindex")"
        if [ -z "$path" ]; then
            if grep -q "/${name}\.ko\$\|/${1}\.ko\$" "$KMOD/modules.builtin" 2>/dev/null; then
                return 0   # built in
            fi
            log "note: module $name not in this kernel, skipped"
            return 0
        fi
        local rel="${path#"$KMOD"/}"
        mkdir -p "$STAGE/modules/lib/modules/$KVER/$(dirname "$rel")"
        cp "$path" "$STAGE/modules/lib/modules/$KVER/$rel"
        for dep in $(tr '\0' '\n' <"$path" | sed -n 's/^depends=//p' | tr ',' ' '); do
            add_module "$dep"
        done
    }
    for m in $MODULES; do add_module "$m"; done
    cp "$KMOD/modules.builtin" "$KMOD/modules.order" "$STAGE/modules/lib/modules/$KVER/" 2>/dev/null || true
    "$BB" depmod -b "$STAGE/modules" "$KVER" || die "busybox depmod failed"
    [ -s "$STAGE/modules/lib/modules/$KVER/modules.dep" ] || die "busybox depmod made no modules.dep"
    cp "$VMLINUZ" "$STAGE/vmlinuz"
    echo "$KVER" >"$STAGE/kver"
    rm -rf "$KX"
    mkdir -p "$(dirname "$KCACHE")"
    rm -rf "$KCACHE.new.$$"
    cp -a "$STAGE" "$KCACHE.new.$$"
    touch "$KCACHE.new.$$/.complete"
    rm -rf "$KCACHE"
    mv "$KCACHE.new.$$" "$KCACHE"
fi
KVER="$(cat "$KCACHE/kver")"
MODTREE="$KCACHE/modules"

# ---------------------------------------------------------------- file trees
# install_busybox ROOT: busybox + one symlink per applet
install_busybox() {
    local root="$1" p
    mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
    cp "$BB" "$root/bin/busybox"
    chmod 0755 "$root/bin/busybox"
    if command -v perl >/dev/null 2>&1; then
        # one process instead of ~400 forks of ln (perl-base is Essential on Debian)
        "$BB" --list-full | perl -e '
            my $root = shift;
            while (my $p = <STDIN>) {
                chomp $p;
                next if $p eq "" || $p eq "linuxrc" || $p eq "bin/busybox";
                unlink "$root/$p";
                symlink("/bin/busybox", "$root/$p") or die "symlink $root/$p: $!\n";
            }' "$root" || die "cannot create the busybox applet links"
    else
        for p in $("$BB" --list-full); do
            case "$p" in linuxrc|bin/busybox) continue ;; esac
            ln -sf /bin/busybox "$root/$p"
        done
    fi
}

# ---- initramfs
IR="$WORK/initramfs"
mkdir -p "$IR"/{dev,proc,sys,newroot}
install_busybox "$IR"
cp -a "$MODTREE/lib" "$IR/"
cat >"$IR/init" <<'EOF'
#!/bin/sh
# pvce tiny guest initramfs: load virtio drivers, mount the ext4 root, switch_root.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0<>/dev/console 1>&0 2>&0
mount -t proc proc /proc
mount -t sysfs sysfs /sys

root=/dev/vda2
rootflags=commit=1,nodelalloc
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
        rootflags=*) rootflags="${arg#rootflags=}" ;;
    esac
done

rescue() {
    echo "pvce initramfs: $* -- dropping to a shell" >&2
    exec setsid cttyhack sh
}

for m in virtio_pci virtio_blk virtio_net virtio_console virtio_rng virtio_balloon virtio_input button evdev; do
    modprobe "$m" 2>/dev/null || echo "pvce initramfs: could not load $m" >&2
done

i=0
while [ ! -b "$root" ]; do
    i=$((i + 1))
    [ $i -le 200 ] || rescue "root device $root did not appear in 20 s"
    usleep 100000
done
mount -t ext4 -o "rw,$rootflags" "$root" /newroot || rescue "cannot mount $root"
[ -x /newroot/sbin/init ] || rescue "no /sbin/init on $root"
mount --move /dev /newroot/dev || umount /dev
umount /sys /proc
exec switch_root /newroot /sbin/init
EOF
chmod 0755 "$IR/init"
find "$IR" -exec touch -h -d "@$EPOCH" {} +
if [[ "$(cpio --help 2>/dev/null || true)" == *--reproducible* ]]; then
    CPIO=(cpio --quiet -o -H newc -R 0:0 --reproducible)   # GNU cpio: no inode/dev numbers
else
    CPIO=("$BB" cpio -o -H newc -R 0:0)                    # works, but not reproducible
fi
(cd "$IR" && find . | LC_ALL=C sort | "${CPIO[@]}" 2>/dev/null) | gzip -6n >"$WORK/initrd.gz" ||
    die "cannot build the initramfs"

# ---- root file system
RT="$WORK/root"
mkdir -p "$RT"/{dev,proc,sys,run,tmp,root,etc/init.d,etc/acpi/PWRF,var/log,mnt,home,lib}
chmod 1777 "$RT/tmp"
chmod 0700 "$RT/root"
ln -s /run "$RT/var/run"
install_busybox "$RT"
cp -a "$MODTREE/lib/modules" "$RT/lib/"
echo "$NAME" >"$RT/etc/pvce-template"
# software markers: one file per item of the template's software set (templates-tree/)
mkdir -p "$RT/usr/share/pvce/software"
echo "busybox (busybox-static $(basename "$BUSYBOX_DEB" .deb | cut -d_ -f2 | sed 's/%3a/:/'))" \
    >"$RT/usr/share/pvce/software/busybox"
echo "tiny" >"$RT/etc/hostname"
cat >"$RT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat >"$RT/etc/group" <<'EOF'
root:x:0:
EOF
cat >"$RT/etc/shadow" <<'EOF'
root::1:0:99999:7:::
EOF
chmod 0600 "$RT/etc/shadow"
cat >"$RT/etc/os-release" <<EOF
NAME="pvce tiny guest"
ID=pvce-tiny
PRETTY_NAME="pvce tiny guest ($NAME)"
VERSION_ID=1
EOF
cat >"$RT/etc/fstab" <<'EOF'
/dev/vda2 / ext4 rw,commit=1,nodelalloc 0 1
proc /proc proc defaults 0 0
sysfs /sys sysfs defaults 0 0
devpts /dev/pts devpts gid=5,mode=620 0 0
tmpfs /run tmpfs mode=0755,nosuid,nodev 0 0
tmpfs /tmp tmpfs mode=1777,nosuid,nodev 0 0
EOF
cat >"$RT/etc/profile" <<'EOF'
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root
[ "$(id -u)" = 0 ] && PS1='\u@\h:\w# ' || PS1='\u@\h:\w$ '
cd "$HOME" 2>/dev/null
EOF
cat >"$RT/etc/inittab" <<'EOF'
# busybox init: rcS prints the banner and BOOT-OK, then root shells on
# the serial console and on tty1 (VGA / VNC console), respawned.
::sysinit:/etc/init.d/rcS
ttyS0::respawn:-/bin/sh
tty1::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
::restart:/sbin/init
EOF
cat >"$RT/etc/init.d/rcS" <<'EOF'
#!/bin/sh
# pvce tiny guest boot script (run once by busybox init)
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mounted /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
# the initramfs mounted / rw with commit=1,nodelalloc; make sure (e.g. if booted without it)
mount -o remount,rw,commit=1,nodelalloc / 2>/dev/null

say() {
    for t in /dev/ttyS0 /dev/tty0; do
        [ -c "$t" ] && echo "$*" >"$t" 2>/dev/null
    done
}

# hostname: SMBIOS system serial (set per VM by pvce), else "tiny"
hn=""
if [ -r /sys/class/dmi/id/product_serial ]; then
    hn="$(tr -cd 'A-Za-z0-9._-' </sys/class/dmi/id/product_serial | cut -c1-63)"
fi
[ -n "$hn" ] || hn=tiny
hostname "$hn"

template="$(cat /etc/pvce-template 2>/dev/null)"
say "pvce template: ${template:-unknown}"

for m in virtio_pci virtio_blk virtio_net virtio_console virtio_rng virtio_balloon virtio_input button evdev; do
    modprobe "$m" 2>/dev/null
done

# ACPI power button -> /etc/acpi/PWRF/00000080 (busybox acpid reads /dev/input/event*)
acpid -l /run/acpid.log -p /run/acpid.pid

ifconfig lo 127.0.0.1 up
[ -d /sys/class/net/eth0 ] && ifconfig eth0 up

say "BOOT-OK $hn"
EOF
cat >"$RT/etc/init.d/rcK" <<'EOF'
#!/bin/sh
# run by busybox init on poweroff / reboot
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
echo "pvce: shutting down" >/dev/console
[ -f /run/acpid.pid ] && kill "$(cat /run/acpid.pid)" 2>/dev/null
sync
umount -a -r 2>/dev/null
mount -o remount,ro / 2>/dev/null
sync
EOF
cat >"$RT/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
# busybox acpid runs this on an ACPI power-button event (e.g. virsh shutdown,
# QMP system_powerdown): flush and power off cleanly.
echo "pvce: ACPI power button, powering off" >/dev/console
sync
exec /sbin/poweroff
EOF
chmod 0755 "$RT/etc/init.d/rcS" "$RT/etc/init.d/rcK" "$RT/etc/acpi/PWRF/00000080"

for d in "${EXTRA_DIRS[@]}"; do
    log "adding $d"
    # contents, modes and symlinks; owner is whoever builds (root in the guest when root builds)
    cp -R --preserve=mode,links "$d"/. "$RT"/ || die "cannot copy --extra-dir '$d'"
done
chmod 0700 "$RT/root"   # a checkout's root/ (0755) must not open up /root
find "$RT" -exec touch -h -d "@$EPOCH" {} +

# ---------------------------------------------------------------- disk image
SECTOR=512
DISK_MIB=1024                    # virtual size
BOOT_START=2048                  # 1 MiB alignment
BOOT_SECTORS=$((32 * 2048))      # 32 MiB FAT16
ROOT_START=$((BOOT_START + BOOT_SECTORS))
DISK_SECTORS=$((DISK_MIB * 2048))
ROOT_SECTORS=$((DISK_SECTORS - ROOT_START))

# syslinux boot partition
cat >"$WORK/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT pvce
PROMPT 0
TIMEOUT 0
LABEL pvce
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND console=tty0 console=ttyS0,115200 root=/dev/vda2 rootflags=commit=1,nodelalloc
EOF
# An empty FAT with SYSLINUX installed is cached: 'syslinux --install' runs a
# system-wide sync(), which can take seconds on a busy machine. Files copied in
# later do not move ldlinux.sys, so the cached copy stays bootable.
BOOT_KEY="$( { syslinux --version 2>&1 | head -n1; mkfs.fat --help 2>&1 | head -n1;
    echo "$BOOT_SECTORS $BOOT_START v2"; } | cksum | cut -d' ' -f1)"
BOOT_EMPTY="$CACHE_DIR/syslinux/boot-$BOOT_KEY.img"
if [ ! -s "$BOOT_EMPTY" ]; then
    mkdir -p "$CACHE_DIR/syslinux"
    mkfs.fat -C -F 16 -n PVCEBOOT -i 7076CE00 -h "$BOOT_START" "$WORK/boot-empty.img" $((BOOT_SECTORS / 2)) >/dev/null ||
        die "mkfs.fat failed"
    syslinux --install "$WORK/boot-empty.img" || die "syslinux --install failed"
    cp "$WORK/boot-empty.img" "$BOOT_EMPTY.$$" && mv -f "$BOOT_EMPTY.$$" "$BOOT_EMPTY"
fi
BOOTIMG="$WORK/boot.img"
cp "$BOOT_EMPTY" "$BOOTIMG"
cp "$KCACHE/vmlinuz" "$WORK/vmlinuz"
touch -d "@$EPOCH" "$WORK/vmlinuz" "$WORK/initrd.gz" "$WORK/syslinux.cfg"
for f in vmlinuz initrd.gz syslinux.cfg; do
    mcopy -m -i "$BOOTIMG" -o "$WORK/$f" "::$f" || die "mcopy $f failed"
done

# whole disk: partition table, MBR boot code, boot partition, ext4 root
DISK="$WORK/disk.raw"
truncate -s $((DISK_SECTORS * SECTOR)) "$DISK"
sfdisk -q "$DISK" >/dev/null <<EOF || die "sfdisk failed"
label: dos
label-id: 0x7076ce00
unit: sectors
start=$BOOT_START, size=$BOOT_SECTORS, type=e, bootable
start=$ROOT_START, size=$ROOT_SECTORS, type=83
EOF
dd if="$MBR_BIN" of="$DISK" bs=440 count=1 conv=notrunc status=none || die "writing mbr.bin failed"
dd if="$BOOTIMG" of="$DISK" bs=1M seek=$((BOOT_START * SECTOR / 1048576)) conv=notrunc,sparse status=none ||
    die "writing the boot partition failed"
# The root file system is made, fixed up and checked as a file of its own and then
# copied into its partition: e2fsprogs 1.47.2 no longer opens "FILE?offset=N"
# (dumpe2fs/debugfs fail on it), and every version handles a plain file.
ROOTFS="$WORK/root.ext4"
truncate -s $((ROOT_SECTORS * SECTOR)) "$ROOTFS"
E2FSPROGS_FAKE_TIME="$EPOCH" mkfs.ext4 -q -F -t ext4 -L pvce-root -m 0 -U "$ROOT_UUID" \
    -E "root_owner=0:0,nodiscard,hash_seed=$HASH_SEED" \
    -d "$RT" "$ROOTFS" $((ROOT_SECTORS / 2))k || die "mkfs.ext4 -d failed (e2fsprogs >= 1.43 needed)"
# mkfs.ext4 -d copies each file's ctime, which touch cannot set: pin it with debugfs
# on every inode in use (2 = /, 11.. = files), so the image is reproducible.
if command -v debugfs >/dev/null 2>&1 && command -v dumpe2fs >/dev/null 2>&1; then
    dumpe2fs "$ROOTFS" >"$WORK/dumpe2fs.out" 2>"$WORK/dumpe2fs.err" ||
        { cat "$WORK/dumpe2fs.err" >&2; die "dumpe2fs could not read the new ext4"; }
    awk -v t="$EPOCH" '
        /^Inodes per group:/ { ipg = $4 + 0 }
        /^Group [0-9]+:/ { base = ($2 + 0) * ipg; for (i = 1; i <= ipg; i++) used[base + i] = 1 }
        /^  Free inodes: / {
            s = $0; sub(/^  Free inodes: /, "", s); n = split(s, r, /, */)
            for (k = 1; k <= n; k++) {
                if (r[k] == "") continue
                m = split(r[k], ab, "-"); a = ab[1] + 0; b = (m > 1 ? ab[2] + 0 : a)
                for (i = a; i <= b; i++) delete used[i]
            }
        }
        END { for (i in used) { j = i + 0; if (j == 2 || j >= 11) printf "sif <%d> ctime @%s\n", j, t } }
    ' "$WORK/dumpe2fs.out" >"$WORK/ctime.cmds"
    [ -s "$WORK/ctime.cmds" ] || die "could not list the inodes of the new ext4 (dumpe2fs)"
    E2FSPROGS_FAKE_TIME="$EPOCH" debugfs -w -f "$WORK/ctime.cmds" "$ROOTFS" >/dev/null 2>"$WORK/debugfs.err" ||
        { cat "$WORK/debugfs.err" >&2; die "debugfs could not set inode times"; }
fi
if command -v e2fsck >/dev/null 2>&1; then
    # Read-only check (-n): a file system the guest could not mount fails the build here.
    E2FSPROGS_FAKE_TIME="$EPOCH" e2fsck -f -n "$ROOTFS" >"$WORK/e2fsck.out" 2>&1 ||
        { cat "$WORK/e2fsck.out" >&2; die "e2fsck found errors in the new ext4"; }
fi
# Into the partition with qemu-img (its raw driver's offset/size window): it copies
# only the blocks mkfs wrote, where dd would read all ~1 GB of holes; the disk file
# is all zeros there, so the bytes are the same either way.
qemu-img convert -n -f raw "$ROOTFS" --target-image-opts \
    "driver=raw,offset=$((ROOT_START * SECTOR)),size=$((ROOT_SECTORS * SECTOR)),file.driver=file,file.filename=$DISK" ||
    die "writing the root partition failed"
rm -f -- "$ROOTFS"

qemu-img convert -q -c -f raw -O qcow2 "$DISK" "$OUT_TMP" || die "qemu-img convert failed"
mv -f "$OUT_TMP" "$OUT"

END_NS=$(date +%s%N)
log "wrote $OUT: template '$NAME', kernel $KVER, $(du -k "$OUT" | cut -f1) KiB on disk, ${DISK_MIB} MiB virtual, $(( (END_NS - START_NS) / 1000000 )) ms"
