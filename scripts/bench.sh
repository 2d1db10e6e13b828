#!/usr/bin/env bash
# Microbenchmarks (set-up as run.sh). Each boot runs one benchmark and prints its table;
# the variants of the contiguous layer (contpte=on/off/naive) are compared within one
# boot. Instruction counts come from runs under -icount shift=0,sleep=off (exact, the
# same on every run); one run without icount adds emulated time, where a TLBI costs what
# QEMU makes it cost (noisy: compare ratios within that run only).
#
#   scripts/bench.sh              all of the below
#   scripts/bench.sh contpte      the contiguous layer: max, max with bbml2=on, cortex-a72,
#                                 and max without icount
#   scripts/bench.sh cow          copy-on-write of shared 64 KiB folios (user/src/bin/bench_cow.rs),
#                                 cow=page (one page per fault, as Linux) against cow=folio
set -euo pipefail
. "$(dirname "$0")/lib.sh"

which=${1:-all}
case "$which" in
    all|contpte|cow) ;;
    *) echo "usage: scripts/bench.sh [contpte|cow]" >&2; exit 2 ;;
esac
ensure_tools
elf=$(build_kernel)

# run_bench TITLE CPU ICOUNT APPEND [INITRD]: one CPU; prints the lines starting with
# bench (the kernel's bench= modes print "bench:", user benchmarks "bench_<name>:").
run_bench() {
    local title=$1 cpu=$2 icount=$3 append=$4 initrd=${5:-}
    echo "== $title"
    mapfile -t cmd < <(qemu_cmd "$elf" "$cpu" 1 1G 2 0 "$icount" "$append" "$initrd")
    timeout 300 "${cmd[@]}" </dev/null | grep '^bench' | sed 's/\r$//'
}

if [ "$which" = all ] || [ "$which" = contpte ]; then
    run_bench "contpte: -cpu max, -icount (instructions exact)" max 1 "bench=contpte"
    run_bench "contpte: -cpu max, -icount, bbml2=on" max 1 "bench=contpte bbml2=on"
    run_bench "contpte: -cpu cortex-a72, -icount (no range TLBI: per-page TLBIs)" cortex-a72 1 "bench=contpte"
    run_bench "contpte: -cpu max, no icount (emulated time: cycles = host nanoseconds)" max 0 "bench=contpte"
fi
if [ "$which" = all ] || [ "$which" = cow ]; then
    initrd=$("$ROOT/scripts/initramfs.sh" "$ROOT/target/initramfs.cpio")
    for cow in page folio; do
        run_bench "cow=$cow: -cpu max, -icount (times exact)" max 1 "cow=$cow -- bench_cow" "$initrd"
    done
fi
