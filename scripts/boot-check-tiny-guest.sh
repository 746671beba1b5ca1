#!/usr/bin/env bash
# boot-check-tiny-guest.sh — boot a tiny guest image under plain QEMU (TCG) and check
# that it works the way pvce and its tests expect:
#   1. "BOOT-OK <hostname>" appears on the serial console (hostname from SMBIOS serial);
#   2. a root shell answers on the serial console and /root is writable;
#   3. an ACPI power-off (QMP system_powerdown) makes QEMU exit on its own.
#
# Usage: scripts/boot-check-tiny-guest.sh IMAGE.qcow2 [EXPECTED_HOSTNAME]
#   Without EXPECTED_HOSTNAME no SMBIOS serial is set and the guest must call itself "tiny".
#   The image is opened with snapshot=on: it is never modified.
# Environment: PVCE_BOOT_TIMEOUT (s, default 60), PVCE_SHUTDOWN_TIMEOUT (s, default 30),
#   PVCE_KEEP_LOG=1 keeps the serial log, QEMU (default qemu-system-x86_64).
# Needs: qemu-system-x86 (TCG only; /dev/kvm is never used), python3 (stdlib).
set -euo pipefail

PROG=boot-check-tiny-guest
die() { echo "$PROG: FAIL: $*" >&2; exit 1; }
log() { echo "$PROG: $*"; }

[ $# -ge 1 ] && [ $# -le 2 ] || { sed -n '8,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
IMAGE="$1"
EXPECTED="${2:-}"
[ -f "$IMAGE" ] || die "image '$IMAGE' not found"
[ -r "$IMAGE" ] || die "image '$IMAGE' is not readable"
if [ -n "$EXPECTED" ]; then
    [[ "$EXPECTED" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]] ||
        die "hostname '$EXPECTED' must match [A-Za-z0-9][A-Za-z0-9._-]* (max 63 chars)"
    HOST="$EXPECTED"
else
    HOST="tiny"
fi
QEMU="${QEMU:-qemu-system-x86_64}"
command -v "$QEMU" >/dev/null || die "'$QEMU' not found (install the Debian package 'qemu-system-x86')"
command -v python3 >/dev/null || die "python3 not found"
BOOT_TIMEOUT="${PVCE_BOOT_TIMEOUT:-60}"
SHUTDOWN_TIMEOUT="${PVCE_SHUTDOWN_TIMEOUT:-30}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pvce-boot-check.XXXXXX")"
LOG="$WORK/serial.log"
SER="$WORK/serial.sock"
QMP="$WORK/qmp.sock"
QPID=""
cleanup() {
    local rc=$?
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
        kill "$QPID" 2>/dev/null || true
        wait "$QPID" 2>/dev/null || true
    fi
    if [ $rc -ne 0 ]; then
        echo "---- last 30 lines of the serial log ($LOG) ----" >&2
        tail -n 30 "$LOG" 2>/dev/null | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >&2 || true
        echo "---- qemu stderr ----" >&2
        tail -n 10 "$WORK/qemu.err" 2>/dev/null >&2 || true
    fi
    if [ "${PVCE_KEEP_LOG:-0}" = 1 ] || [ $rc -ne 0 ]; then
        mkdir -p "$WORK.keep" && cp "$LOG" "$WORK/qemu.err" "$WORK.keep/" 2>/dev/null &&
            echo "$PROG: logs kept in $WORK.keep" >&2
    fi
    rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

SMBIOS=()
[ -n "$EXPECTED" ] && SMBIOS=(-smbios "type=1,serial=$EXPECTED")

T0=$(now)
"$QEMU" -accel tcg -m 256 -nodefaults -no-user-config \
    -machine pc -vga std -display none \
    -drive "file=$IMAGE,if=virtio,format=qcow2,snapshot=on" \
    "${SMBIOS[@]}" \
    -chardev "socket,id=ser0,path=$SER,server=on,wait=off,logfile=$LOG,logappend=off" \
    -serial chardev:ser0 \
    -qmp "unix:$QMP,server=on,wait=off" \
    -nic user,model=virtio-net-pci,restrict=on \
    2>"$WORK/qemu.err" &
QPID=$!
log "qemu pid $QPID (TCG), image $IMAGE, expecting 'BOOT-OK $HOST'"

# 1. wait for BOOT-OK (poll the log, bounded)
deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
while ! grep -qa "BOOT-OK " "$LOG" 2>/dev/null; do
    kill -0 "$QPID" 2>/dev/null || die "qemu exited before BOOT-OK"
    [ "$(date +%s)" -lt "$deadline" ] || die "no BOOT-OK within ${BOOT_TIMEOUT}s"
    sleep 0.2
done
T_BOOT=$(now)
got="$(grep -a -o 'BOOT-OK [^[:space:]]*' "$LOG" | head -n1)"
[ "$got" = "BOOT-OK $HOST" ] || die "expected 'BOOT-OK $HOST', got '$got'"
template="$(grep -a -o 'pvce template: [^[:space:]]*' "$LOG" | head -n1 | sed 's/^pvce template: //')"
[ -n "$template" ] || die "no 'pvce template: NAME' banner before BOOT-OK"
log "OK: '$got' (template '$template') after $(secs "$T0" "$T_BOOT") s"

# 2. root shell on the serial console
python3 - "$SER" <<'EOF' || die "no working shell on the serial console"
import re, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.settimeout(0.2)
buf = b""
def read_until(pattern, timeout, resend=None, every=2.0):
    global buf
    end = time.time() + timeout
    last = 0.0
    while time.time() < end:
        if resend is not None and time.time() - last >= every:
            s.sendall(resend)
            last = time.time()
        try:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("serial socket closed")
            buf += chunk
        except socket.timeout:
            pass
        m = re.search(pattern, buf)
        if m:
            buf = buf[m.end():]
            return True
    return False
# poke until a root prompt shows (the shell may still be starting)
if not read_until(rb"# ", 20, resend=b"\r"):
    raise SystemExit("no root prompt on serial; got: %r" % buf[-300:])
time.sleep(0.2)
buf = b""
s.sendall(b"echo hello-from-serial > /root/x; cat /root/x\r")
if not read_until(rb"(?:^|\n)hello-from-serial\r?\n", 20):
    raise SystemExit("command output not seen on serial; got: %r" % buf[-300:])
print("boot-check-tiny-guest: OK: serial shell ran 'echo hello-from-serial > /root/x; cat /root/x'")
EOF
T_SHELL=$(now)

# 3. ACPI power button via QMP; QEMU must exit by itself
python3 - "$QMP" <<'EOF' || die "QMP system_powerdown failed"
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
def cmd(name):
    f.write(json.dumps({"execute": name}) + "\n"); f.flush()
    while True:
        msg = json.loads(f.readline())
        if "return" in msg: return msg
        if "error" in msg: raise SystemExit("QMP %s: %s" % (name, msg["error"]))
json.loads(f.readline())          # greeting
cmd("qmp_capabilities")
cmd("system_powerdown")
EOF
T_PD=$(now)
deadline=$(( $(date +%s) + SHUTDOWN_TIMEOUT ))
while kill -0 "$QPID" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "qemu still running ${SHUTDOWN_TIMEOUT}s after system_powerdown (ACPI power-off not handled)"
    sleep 0.2
done
rc=0
wait "$QPID" || rc=$?
QPID=""
T_END=$(now)
[ $rc -eq 0 ] || die "qemu exited with status $rc"
grep -qa "reboot: Power down" "$LOG" || die "qemu exited but the guest did not log 'reboot: Power down'"
log "OK: ACPI power-off, qemu exited by itself"
log "timings: start->BOOT-OK $(secs "$T0" "$T_BOOT") s, BOOT-OK->serial shell $(secs "$T_BOOT" "$T_SHELL") s, powerdown->exit $(secs "$T_PD" "$T_END") s, total $(secs "$T0" "$T_END") s"
log "PASS"
