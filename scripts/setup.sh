#!/usr/bin/env bash
# Prepares a Debian machine to build, run and test pvce (idempotent).
# - installs libvirt, QEMU, the tools the tiny guest builder needs, Chromium and Node.js/npm;
# - starts virtlogd and libvirtd (systemd if present, otherwise as daemons);
# - makes /dev/kvm usable by QEMU's user when it exists.
# Needs root (or sudo). Set PVCE_SKIP_APT=1 to skip package installation.
# Packages are installed with --no-install-recommends, so every package the project
# needs is named below: a machine installed without apt's Recommends (a common
# default for servers and containers) is then the same as this one. Most of them
# only come as Recommends otherwise, e.g. qemu-system-modules-spice (without it
# QEMU refuses SPICE consoles: "spice graphics are not supported with this QEMU").
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
  # libvirt: the daemon (virtlogd comes with it), virsh and virt-xml-validate, the
  # QEMU, network (isolated lab networks; dnsmasq for NAT networks) and storage
  # (dir pools: template stores, node-local layers) drivers, headers for the virt crate
  libvirt-daemon-system libvirt-daemon libvirt-daemon-driver-qemu
  libvirt-daemon-driver-network libvirt-daemon-driver-storage libvirt-clients
  dnsmasq-base dmidecode libvirt-dev pkg-config gcc libc6-dev
  # QEMU: x86 system emulator with SeaBIOS and the iPXE option ROMs of its virtio NICs,
  # the SPICE module (SPICE consoles), qemu-img/qemu-io and the block drivers
  qemu-system-x86 qemu-system-modules-spice seabios ipxe-qemu qemu-utils qemu-block-extra
  # the tiny guest builder (scripts/build-tiny-guest.sh) and guest-file access (debugfs)
  busybox-static syslinux syslinux-common dosfstools mtools fdisk e2fsprogs cpio
  # tools, the browser tests (headless Chromium driven by playwright-core from npm)
  curl ca-certificates python3 chromium nodejs npm
  fonts-wqy-microhei fontconfig   # CJK glyphs: the zh-CN UI screenshots of the browser tests, and the font embedded in the service report PDFs
  poppler-utils   # pdftoppm: tests/it/reports.rs renders the report PDFs to PNG to check the pages
  iproute2 util-linux mount procps   # the multi-node test rig (scripts/multinode.sh)
  # the notification tests (tests/it/notify.rs): a real SMTP server (aiosmtpd, run with
  # Debian's /usr/bin/python3) and the openssl CLI for its STARTTLS certificate
  python3-aiosmtpd openssl
  prometheus   # for promtool: checks and unit-tests the alerting rules in deploy/prometheus (scripts/check-prometheus.sh); the server it also brings is not used
  restic   # the backup repository tool (src/backup/): the server runs it; tests/it/backups.rs backs up into a real repository
  # PostgreSQL, the second database (issue 17): scripts/postgres.sh starts a test cluster
  # of its own from the server binaries (pg_trgm, for the knowledge-base search, is in
  # the server package itself on Debian 12 and 13: postgresql-contrib is only a
  # transitional package there); the client (psql) comes with it
  postgresql
  slapd ldap-utils   # campus sign-in over LDAP (tests/it/ldap.rs): a real OpenLDAP server (slapd; slapadd loads the test tree) in a temp dir; ldap-utils to look at it by hand
)
# Deliberately not installed: ovmf (guests boot with SeaBIOS), swtpm (no vTPM),
# passt (no user-mode networking), qemu-system-gui (consoles are VNC/SPICE servers),
# chromium-sandbox (the tests run Chromium with --no-sandbox).

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
    # seabios and ipxe-qemu come with QEMU from backports on bookworm, too.
    case "$p" in libvirt*|qemu*|seabios|ipxe-qemu) virt+=("$p") ;; *) other+=("$p") ;; esac
  done
  inst=(apt-get install -y -q --no-install-recommends)
  if [ "${#virt[@]}" -gt 0 ]; then $SUDO "${inst[@]}" "${target[@]}" "${virt[@]}"; fi
  if [ "${#other[@]}" -gt 0 ]; then $SUDO "${inst[@]}" "${other[@]}"; fi
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

# The OpenID Connect provider and the CAS server of the sign-in tests (PyPI, in venvs under target/).
for venv in oidc cas; do
  bash "$(dirname "$0")/test-venv.sh" "$venv" >/dev/null || echo "setup: the $venv test server is not installed yet (its tests retry)" >&2
done

echo "setup: ok ($(virsh -c qemu:///system version --daemon 2>/dev/null | grep -i 'running hypervisor' || echo libvirt up))"
