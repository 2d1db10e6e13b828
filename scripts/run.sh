#!/usr/bin/env bash
# Build contkernel and boot it under qemu-system-aarch64 -M virt (installs what is
# missing first). The kernel prints its banner, runs the demo and powers off; the exit
# status is the kernel's (non-zero after a panic).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat >&2 <<'USAGE'
usage: scripts/run.sh [--cpu MODEL] [--smp N] [--mem SIZE] [--gic 2|3] [--el2] [--icount]
                      [--append "ARGS"] [--ktest] [--gdb]
  --cpu MODEL     QEMU CPU model (default max; cortex-a72 has no HAFDBS/range TLBI/BBM)
  --smp N         number of CPUs (default 1)
  --mem SIZE      RAM (default 1G)
  --gic 2|3       GIC version (default 2)
  --el2           enter the kernel at EL2 (-M virt,virtualization=on); it drops to EL1
  --icount        -icount shift=0,sleep=off: deterministic instruction-counted time
  --append ARGS   kernel command line (e.g. "loglevel=debug", "ktest=frame")
  --ktest         boot the test build and run the in-kernel tests (adds "ktest")
  --gdb           wait for gdb on localhost:1234 (see scripts/debug.sh)
USAGE
    exit 2
}

cpu=max smp=1 mem=1G gic=2 el2=0 icount=0 append="" ktest=0 gdb=0
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) [ $# -ge 2 ] || usage; cpu=$2; shift 2 ;;
        --smp) [ $# -ge 2 ] || usage; smp=$2; shift 2 ;;
        --mem) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
        --gic) [ $# -ge 2 ] || usage; gic=$2; shift 2 ;;
        --append) [ $# -ge 2 ] || usage; append=$2; shift 2 ;;
        --el2) el2=1; shift ;;
        --icount) icount=1; shift ;;
        --ktest) ktest=1; shift ;;
        --gdb) gdb=1; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done
case "$gic" in 2|3) ;; *) echo "--gic takes 2 or 3" >&2; usage ;; esac
case "$smp" in ''|*[!0-9]*) echo "--smp takes a number" >&2; usage ;; esac

ensure_tools
if [ "$ktest" = 1 ]; then
    elf=$(build_kernel --features ktest)
    append="ktest${append:+ $append}"
else
    elf=$(build_kernel)
fi
mapfile -t cmd < <(qemu_cmd "$elf" "$cpu" "$smp" "$mem" "$gic" "$el2" "$icount" "$append")
if [ "$gdb" = 1 ]; then
    cmd+=(-s -S)
    say "waiting for gdb: gdb-multiarch $elf -ex 'target remote localhost:1234'"
fi
say "${cmd[*]}"
exec "${cmd[@]}" </dev/null
