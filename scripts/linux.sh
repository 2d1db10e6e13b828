#!/usr/bin/env bash
# Boots an initramfs on a Linux peer (Debian's arm64 kernels: linux-6.12 from trixie,
# the default, or linux-7.3 from trixie-backports; fetched once with apt-get into
# target/, see linux_image in lib.sh) under the same QEMU as contkernel, printing the console:
# the reference for what the user programs expect. Exit status: 0 when init reported
# "N passed, 0 failed", 1 when it reported failures, 3 on a timeout or no summary.
#
#   scripts/linux.sh [--kernel linux-6.12|linux-7.3] [--cpu MODEL] [--smp N] [--mem SIZE] [--timeout SECS]
#                    [--initrd FILE] [--fetch] [-- ARGS for /init]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat >&2 <<'USAGE'
usage: scripts/linux.sh [--kernel PEER] [--cpu MODEL] [--smp N] [--mem SIZE]
                        [--timeout SECS] [--initrd FILE] [--fetch] [-- ARGS]
  --kernel PEER   linux-6.12 (default) or linux-7.3
  --cpu MODEL     QEMU CPU model (default max)
  --smp N         CPUs (default 2)
  --mem SIZE      RAM (default 1G)
  --timeout SECS  kill QEMU after this long (default 600)
  --initrd FILE   the initramfs (default: user/'s programs, scripts/initramfs.sh --with-c)
  --fetch         only fetch the kernel (target/linux*/Image) and print its path
  -- ARGS         the rest is for /init (e.g. "-- mm_basic stress:1:2000")
USAGE
    exit 2
}

kernel=linux-6.12 cpu=max smp=2 mem=1G timeout=600 initrd="" fetch=0 args=""
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) [ $# -ge 2 ] || usage; kernel=$2; shift 2 ;;
        --cpu) [ $# -ge 2 ] || usage; cpu=$2; shift 2 ;;
        --smp) [ $# -ge 2 ] || usage; smp=$2; shift 2 ;;
        --mem) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || usage; timeout=$2; shift 2 ;;
        --initrd) [ $# -ge 2 ] || usage; initrd=$2; shift 2 ;;
        --fetch) fetch=1; shift ;;
        --) shift; args="$*"; break ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done

ensure_tools
image=$(linux_image "$kernel") || exit 2
if [ "$fetch" = 1 ]; then echo "$image"; exit 0; fi
if [ -z "$initrd" ]; then
    ensure_cross_cc
    mkdir -p "$LINUX_DIR"
    initrd=$("$ROOT/scripts/initramfs.sh" "$LINUX_DIR/initramfs.cpio" --with-c)
fi
[ -f "$initrd" ] || die "no such initramfs: $initrd"

mapfile -t cmd < <(linux_qemu_cmd "$image" "$cpu" "$smp" "$mem" "$initrd" "$args")
say "${cmd[*]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
timeout --foreground -k 5 "$timeout" "${cmd[@]}" </dev/null | tee "$log" || status=$?
[ "$status" = 124 ] && { say "timed out after ${timeout}s"; exit 3; }
summary=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || true)
[ -n "$summary" ] || { say "no summary from init"; exit 3; }
say "$kernel: $summary"
case "$summary" in *" 0 failed"*) exit 0 ;; *) exit 1 ;; esac
