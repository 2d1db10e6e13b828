#!/usr/bin/env bash
# Build contkernel and boot it under qemu-system-aarch64 -M virt (installs what is
# missing first). The main demo: the kernel prints its banner and runs the scenario
# programs of user/ from an initramfs (fork, exec, copy-on-write, mmap, the bad-input
# table, seed 000's reproducer, a faulting program, FP state), then powers off; the
# exit status is the kernel's (non-zero after a panic or a frame leak).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat >&2 <<'USAGE'
usage: scripts/run.sh [--cpu MODEL] [--smp N] [--mem SIZE] [--gic 2|3] [--el2] [--icount]
                      [--append "ARGS"] [--ktest | --test-build] [--initrd FILE | --no-initrd]
                      [--gdb]
  --cpu MODEL     QEMU CPU model (default max; cortex-a72 has no HAFDBS/range TLBI/BBM)
  --smp N         number of CPUs (default 1)
  --mem SIZE      RAM (default 1G). The initramfs goes at the top of RAM above the
                  first 32M (DTB, kernel image, frame metadata): at least 32M plus its
                  size, 36M for the default programs (checked before QEMU starts)
  --gic 2|3       GIC version (default 2)
  --el2           enter the kernel at EL2 (-M virt,virtualization=on); it drops to EL1
  --icount        -icount shift=0,sleep=off: deterministic instruction-counted time
  --append ARGS   kernel command line (e.g. "loglevel=debug", "ktest=frame")
  --ktest         boot the test build and run the in-kernel tests (adds "ktest")
  --test-build    boot the test build (checker and audits on) without running the
                  in-kernel tests: for the scenarios, or crashtest=: --test-build
                  --no-initrd --append "crashtest=ptcheck"
  --initrd FILE   boot this cpio newc archive, whose /init is a static aarch64 Linux
                  program (default: the scenario programs of user/, built now)
  --no-initrd     boot the kernel alone (banner, CPUs ticking, power off)
  --gdb           wait for gdb on localhost:1234 (see scripts/debug.sh)
Arguments for /init go after "--" in --append, as with Linux: --append "-- cow segv".
USAGE
    exit 2
}

cpu=max smp=1 mem=1G gic=2 el2=0 icount=0 append="" ktest=0 gdb=0 initrd=default
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) [ $# -ge 2 ] || usage; cpu=$2; shift 2 ;;
        --smp) [ $# -ge 2 ] || usage; smp=$2; shift 2 ;;
        --mem) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
        --gic) [ $# -ge 2 ] || usage; gic=$2; shift 2 ;;
        --append) [ $# -ge 2 ] || usage; append=$2; shift 2 ;;
        --initrd) [ $# -ge 2 ] || usage; initrd=$2; shift 2 ;;
        --no-initrd) initrd=""; shift ;;
        --el2) el2=1; shift ;;
        --icount) icount=1; shift ;;
        --ktest) ktest=1; shift ;;
        --test-build) ktest=2; shift ;;
        --gdb) gdb=1; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done
case "$gic" in 2|3) ;; *) echo "--gic takes 2 or 3" >&2; usage ;; esac
# The kernel runs at most 16 CPUs (kernel/src/smp.rs MAX_CPUS); QEMU's GICv2 at most 8.
case "$smp" in ''|*[!0-9]*) echo "--smp takes a number" >&2; usage ;; esac
max_smp=16; [ "$gic" = 2 ] && max_smp=8
if [ "$smp" -lt 1 ] || [ "$smp" -gt "$max_smp" ]; then
    echo "--smp $smp: between 1 and $max_smp with GICv$gic (the kernel runs at most 16 CPUs)" >&2
    exit 2
fi

ensure_tools
if [ "$ktest" != 0 ]; then
    elf=$(build_kernel --features ktest)
    [ "$ktest" = 1 ] && append="ktest${append:+ $append}"
else
    elf=$(build_kernel)
fi
case "$initrd" in
    default)
        initrd=$("$ROOT/scripts/initramfs.sh" "$ROOT/target/initramfs.cpio")
        say "the demo: /init runs the programs of user/scenarios.txt, each ending in 'init: NAME exited 0'."
        say "  mTHP: seed000 (Barry Song's fork reproducer: faults_rest_of_64k=0 is the whole 64 KiB folio"
        say "  reused after fork; Linux 6.12 takes 15 faults) and thp_* (faults per size, copy-on-write,"
        say "  2 MiB blocks, collapse, lazyfree, the stack). A program announces each kill it causes on purpose." ;;
    "") ;;
    *) [ -f "$initrd" ] || die "no such initramfs: $initrd" ;;
esac
# qemu-cmd refuses a memory size too small for the initramfs, with the minimum.
words=$(qemu_cmd "$elf" "$cpu" "$smp" "$mem" "$gic" "$el2" "$icount" "$append" "$initrd") || exit 2
mapfile -t cmd <<<"$words"
if [ "$gdb" = 1 ]; then
    cmd+=(-s -S)
    say "waiting for gdb: gdb-multiarch $elf -ex 'target remote localhost:1234'"
fi
say "$(shell_line "${cmd[@]}")"
exec "${cmd[@]}" </dev/null
