#!/usr/bin/env bash
# Prepares a Debian machine to build, run and test pvce (idempotent).
# - installs libvirt, QEMU, the tools the tiny guest builder needs, Chromium and Node.js/npm;
# - starts virtlogd and libvirtd (systemd if present, otherwise as daemons);
# - makes /dev/kvm usable by QEMU's user when it exists.
# Needs root (or sudo). Set PVCE_SKIP_APT=1 to skip package installation.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  qemu-system-x86 qemu-utils qemu-block-extra
  busybox-static syslinux syslinux-common dosfstools mtools fdisk e2fsprogs cpio
  curl python3 chromium nodejs npm
  fonts-wqy-microhei   # CJK glyphs, so the zh-CN UI screenshots of the browser tests show Chinese
  iproute2 util-linux mount procps   # the multi-node test rig (scripts/multinode.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
  # Node.js may come from elsewhere (e.g. NodeSource): a working npm is enough.
  case "$p" in nodejs|npm) command -v npm >/dev/null 2>&1 && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${PVCE_SKIP_APT:-0}" != 1 ] && [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  target=()
  . /etc/os-release
  if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    # bookworm's QEMU 7.2 conflicts with the QEMU 10 qemu-utils these machines ship
    # from bookworm-backports; take QEMU and libvirt from backports together.
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
      $SUDO tee /etc/apt/sources.list.d/pvce-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    target=(-t bookworm-backports)
  fi
  $SUDO apt-get update -q
  virt=() other=()
  for p in "${missing[@]}"; do
    case "$p" in libvirt*|qemu*) virt+=("$p") ;; *) other+=("$p") ;; esac
  done
  if [ "${#virt[@]}" -gt 0 ]; then $SUDO apt-get install -y -q "${target[@]}" "${virt[@]}"; fi
  if [ "${#other[@]}" -gt 0 ]; then $SUDO apt-get install -y -q "${other[@]}"; fi
fi

# Daemons.
if [ -d /run/systemd/system ]; then
  $SUDO systemctl enable --now virtlogd libvirtd >/dev/null 2>&1 || $SUDO systemctl start virtlogd libvirtd
else
  # Ask the host's own pid file and socket, not pgrep: the multi-node test rig runs more
  # libvirtd/virtlogd processes (in their own namespaces) that must not count.
  { [ -f /run/virtlogd.pid ] && $SUDO kill -0 "$(cat /run/virtlogd.pid)"; } 2>/dev/null || $SUDO virtlogd -d
  timeout 10 $SUDO virsh -c qemu:///system version >/dev/null 2>&1 || $SUDO libvirtd -d
fi
for _ in $(seq 1 50); do
  if $SUDO virsh -c qemu:///system version >/dev/null 2>&1; then break; fi
  sleep 0.2
done
$SUDO virsh -c qemu:///system version >/dev/null || { echo "setup: libvirtd does not answer" >&2; exit 1; }

# KVM access for QEMU's user (only matters where the hardware has it; see DESIGN.md).
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null && $SUDO chgrp kvm /dev/kvm && $SUDO chmod 0660 /dev/kvm || true
  id libvirt-qemu >/dev/null 2>&1 && $SUDO usermod -aG kvm libvirt-qemu 2>/dev/null || true
fi

echo "setup: ok ($(virsh -c qemu:///system version --daemon 2>/dev/null | grep -i 'running hypervisor' || echo libvirt up))"
