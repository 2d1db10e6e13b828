#!/usr/bin/env bash
# The benchmark suite: boots each variant that needs a boot of its own, runs the user
# benchmark program (user/src/bin/bench_mm.rs, as the first program: rdinit=/bin/bench_mm)
# and the in-kernel contiguous-layer benchmark (bench=contpte), optionally the same
# bench_mm binary on the Linux peers (Debian's arm64 Linux 6.12 and 7.3, lib.sh's
# linux_image, scripts/linux.sh) under the same QEMU with the same flags, and hands the
# console logs to the host tool bench-report (tests/src/bin/bench-report.rs), which
# writes DIR/results.json, prints the tables (contkernel, each Linux, the ratio against
# the better Linux) and draws DIR/results.svg.
#
#   scripts/bench.sh [--icount] [--quick] [--linux [PEER]] [--tlb [--tlb-model NAME]]
#                    [--only NAME,...] [--out DIR]
#
#   --icount   -icount shift=0,sleep=off: one instruction = 1 ns of virtual time, so
#              the figures are instructions, identical from run to run
#   --tlb      run every boot under QEMU 10 (fetched once into target/qemu10/) with the
#              TLB model's plugin (tlbmodel/, docs/tlb.md): each benchmark's result
#              gains modelled accesses, L1 misses, walks, walk loads and estimated
#              cycles, user and kernel halves apart (about 2x the time)
#   --tlb-model NAME  cortex-a76 (default), neoverse-n1, cortex-a72, or qemu (the
#              Contiguous bit ignored, as QEMU's own TLB does)
#   --quick    a small subset (4 KiB and 64 KiB folios, one repetition; fault and
#              fork with contpte=off, fork with naive; bench=contpte once): about a
#              minute; with --tlb, one repetition of every benchmark at 4 KiB,
#              64 KiB and 2 MiB with contpte=on and at 64 KiB with contpte=off
#              (docs/tlb.md's set)
#   --linux [PEER]  also boot the Linux peers, linux-6.12 and linux-7.3 (each fetched
#              once into target/, see linux_image in lib.sh), or only PEER
#   --only     benchmark names (bench_mm's, or contpte for the in-kernel one)
#   --out DIR  where results.json, results.svg and the logs go (default target/bench)
#
# Variants (a documented subset of the cross product; one CPU, 1 GiB, GICv2, EL1):
#   contkernel -cpu max, contpte=on:     folios 4K, 16K, 64K, 2M, every benchmark
#   contkernel -cpu max, contpte=off:    64K and 2M, every benchmark
#   contkernel -cpu max, contpte=naive:  64K, every benchmark
#   contkernel -cpu max, bbml2=on:       64K, every benchmark
#   contkernel -cpu max, cow=folio:      64K, fork, reuse, copy
#   contkernel -cpu cortex-a72:          4K, 64K, 2M, every benchmark
#   bench=contpte (on/off/naive in one boot): -cpu max, -cpu max bbml2=on, -cpu cortex-a72
#   each Linux peer (--linux): -cpu max 4K, 16K, 64K, 2M; -cpu cortex-a72 4K, 64K, 2M
#   threads (fault_t1, fault_t2, fault_t4, fault_t4i): 4 CPUs, -cpu max, 4K, 64K,
#   2M, contkernel and each Linux peer (not with --quick)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    sed -n '/^#   scripts/,/^#   --out/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

icount=0 quick=0 peers=() tlb=0 tlb_model=cortex-a76 only="" out="$ROOT/target/bench"
while [ $# -gt 0 ]; do
    case "$1" in
        --icount) icount=1; shift ;;
        --tlb) tlb=1; shift ;;
        --tlb-model) [ $# -ge 2 ] || usage; tlb=1; tlb_model=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --linux)
            if [ $# -ge 2 ] && [[ "$2" == linux-* ]]; then peers=("$2"); shift 2
            else read -r -a peers <<<"$LINUX_PEERS"; shift
            fi ;;
        --only) [ $# -ge 2 ] || usage; only=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

ensure_tools
# Under --tlb every boot runs QEMU 10 with the plugin (qemu_cmd and linux_qemu_cmd
# take $QEMU); `wrap` runs it with QEMU 10's modules.
tlb_args=() wrap=()
if [ "$tlb" = 1 ]; then
    QEMU=$(qemu10)
    mapfile -t tlb_args < <(tlb_qemu_args "$(tlb_plugin)" "$tlb_model" 1024)
    wrap=(qemu10_env)
fi
elf=$(build_kernel)
initrd=$("$ROOT/scripts/initramfs.sh" "$ROOT/target/initramfs.cpio")
# images[PEER]: each Linux peer's Image, fetched before the first boot.
declare -A images=()
for p in "${peers[@]}"; do
    images[$p]=$(linux_image "$p") || exit 2
done
(cd "$ROOT" && cargo build -q --release -p contkernel-tests --bin bench-report) >&2 || die "bench-report build failed"
report="$ROOT/target/release/bench-report"

# A boot: KERNEL CPU CONTPTE COW BBML2 WHAT, WHAT being `folios=...` and the benchmark
# names (bench_mm), or `contpte` (the in-kernel benchmark).
all=fault,fork,fork_pinned,reuse,copy,munmap,mremap,mremap_4k,mprotect,mprotect_400k,mprotect_4m,dontneed,free,pageout,collapse_copy,collapse_inplace,read_seq,read_rand,read_zero,chase,shm_fault,shm_fork,shm_munmap,shm_read_seq
# The threads of one process faulting at once: their own boots, with 4 CPUs (a boot's
# optional last word is its CPU count, 1 without it).
threads=fault_t1,fault_t2,fault_t4,fault_t4i
if [ "$quick" = 1 ] && [ "$tlb" = 1 ]; then
    reps=1
    boots=("contkernel max on page off folios=0,64,2048 $all"
           "contkernel max off page off folios=64 $all")
    for p in "${peers[@]}"; do boots+=("$p max on page off folios=0,64,2048 $all"); done
elif [ "$quick" = 1 ]; then
    reps=1
    boots=("contkernel max on page off folios=0,64 $all"
           "contkernel max off page off folios=64 fault,fork"
           "contkernel max naive page off folios=64 fork"
           "contkernel max on page off contpte")
    for p in "${peers[@]}"; do boots+=("$p max on page off folios=0,64 $all"); done
else
    reps=3
    boots=("contkernel max on page off folios=0,16,64,2048 $all"
           "contkernel max off page off folios=64,2048 $all"
           "contkernel max naive page off folios=64 $all"
           "contkernel max on page on folios=64 $all"
           "contkernel max on folio off folios=64 fork,reuse,copy"
           "contkernel cortex-a72 on page off folios=0,64,2048 $all"
           "contkernel max on page off contpte"
           "contkernel max on page on contpte"
           "contkernel cortex-a72 on page off contpte"
           "contkernel max on page off folios=0,64,2048 $threads 4")
    for p in "${peers[@]}"; do
        boots+=("$p max on page off folios=0,16,64,2048 $all"
                "$p cortex-a72 on page off folios=0,64,2048 $all"
                "$p max on page off folios=0,64,2048 $threads 4")
    done
fi

# keep LIST: the names of comma-separated LIST that --only asks for (all without it).
keep() {
    [ -z "$only" ] && { echo "$1"; return; }
    local n kept=()
    for n in ${1//,/ }; do
        [[ ",$only," == *",$n,"* ]] && kept+=("$n")
    done
    local IFS=,
    echo "${kept[*]}"
}

mkdir -p "$out/logs"
rm -f "$out/logs/"*.log "$out/runs.txt"
todo=()
for b in "${boots[@]}"; do
    read -r kernel cpu contpte cow bbml2 what names smp <<<"$b"
    if [ "$what" = contpte ]; then
        [ -n "$(keep contpte)" ] && todo+=("$b")
    else
        names=$(keep "$names")
        [ -n "$names" ] && todo+=("$kernel $cpu $contpte $cow $bbml2 $what $names ${smp:-1}")
    fi
done
[ ${#todo[@]} -gt 0 ] || die "--only $only selects no benchmark"

k=0
for b in "${todo[@]}"; do
    k=$((k + 1))
    read -r kernel cpu contpte cow bbml2 what names smp <<<"$b"
    smp=${smp:-1}
    log=$(printf '%02d-%s-%s-contpte=%s-cow=%s-bbml2=%s.log' "$k" "$kernel" "$cpu" "$contpte" "$cow" "$bbml2")
    say "variant $k/${#todo[@]}: $kernel -cpu $cpu contpte=$contpte cow=$cow bbml2=$bbml2: ${what} ${names:-}"
    if [ "$kernel" != contkernel ]; then
        mapfile -t cmd < <(linux_qemu_cmd "${images[$kernel]}" "$cpu" "$smp" 1G "$initrd" "$what reps=$reps only=$names" "$icount" /bin/bench_mm)
    elif [ "$what" = contpte ]; then
        mapfile -t cmd < <(qemu_cmd "$elf" "$cpu" 1 1G 2 0 "$icount" "bench=contpte bbml2=$bbml2")
    else
        mapfile -t cmd < <(qemu_cmd "$elf" "$cpu" "$smp" 1G 2 0 "$icount" \
            "contpte=$contpte cow=$cow bbml2=$bbml2 rdinit=/bin/bench_mm -- $what reps=$reps only=$names" "$initrd")
    fi
    cmd+=("${tlb_args[@]}")
    shell_line "${cmd[@]}" > "$out/logs/$log.cmd"
    status=0
    "${wrap[@]}" timeout --foreground -k 5 1200 "${cmd[@]}" </dev/null > "$out/logs/$log" 2>&1 || status=$?
    [ "$status" = 0 ] || { tail -n 20 "$out/logs/$log" >&2; die "variant $k exited $status (log: $out/logs/$log)"; }
    echo "logs/$log $kernel $contpte $cow $bbml2 $cpu" >> "$out/runs.txt"
done

qemu_version=$("${wrap[@]}" "$QEMU" --version | head -n 1 | sed -E 's/.*version ([^ ]+).*/\1/')
"$report" collect "$out" --qemu "$qemu_version" --cpu max $( [ "$icount" = 1 ] && echo --icount )
say "wrote $out/results.json and $out/results.svg"
