#!/usr/bin/env bash
# Microbenchmarks (set-up as run.sh). Each boot runs one benchmark and prints its table;
# the variants of the contiguous layer (contpte=on/off/naive) are compared within one
# boot. Instruction counts come from runs under -icount shift=0,sleep=off (exact, the
# same on every run); one run without icount adds emulated time, where a TLBI costs what
# QEMU makes it cost (noisy: compare ratios within that run only).
#
#   scripts/bench.sh              contpte on max, max with bbml2=on, cortex-a72, and max without icount
#   scripts/bench.sh contpte      the same
set -euo pipefail
. "$(dirname "$0")/lib.sh"

name=${1:-contpte}
case "$name" in
    contpte) ;;
    *) echo "usage: scripts/bench.sh [contpte]" >&2; exit 2 ;;
esac
ensure_tools
elf=$(build_kernel)

# run_bench TITLE CPU ICOUNT APPEND
run_bench() {
    local title=$1 cpu=$2 icount=$3 append=$4
    echo "== $title"
    mapfile -t cmd < <(qemu_cmd "$elf" "$cpu" 1 1G 2 0 "$icount" "bench=$name $append")
    timeout 300 "${cmd[@]}" </dev/null | grep '^bench:' | sed 's/\r$//'
}

run_bench "-cpu max, -icount (instructions exact)" max 1 ""
run_bench "-cpu max, -icount, bbml2=on" max 1 "bbml2=on"
run_bench "-cpu cortex-a72, -icount (no range TLBI: per-page TLBIs)" cortex-a72 1 ""
run_bench "-cpu max, no icount (emulated time: cycles = host nanoseconds)" max 0 ""
