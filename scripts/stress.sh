#!/usr/bin/env bash
# Runs the randomized address-space test (user/src/bin/stress.rs) for a range of
# seeds on the test build of the kernel (page-table checker and folio audits on), on
# one or both CPU models, several seeds per boot; prints the operations per second
# and the seeds that failed. Exits 1 on any failure: a mismatch or wrong result the
# program reports, a kernel panic, a frame leak, or a boot that outlives its timeout.
# With --linux the same seeds run on Linux 6.12 instead (scripts/linux.sh's kernel),
# with --kernel linux-7.3 on that peer.
# With --soak MINUTES it runs seeds until that time is up, the CPU models taking turns,
# with the collapse thread scanning every millisecond and less RAM (memory pressure).
#
#   scripts/stress.sh [--seeds N] [--first-seed S] [--ops M] [--cpu max|cortex-a72|both]
#                     [--smp K] [--per-boot B] [--timeout SECS] [--append ARGS] [--linux]
#                     [--kernel PEER] [--mem SIZE] [--soak MINUTES] [--threads]
set -uo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat >&2 <<'USAGE'
usage: scripts/stress.sh [--seeds N] [--first-seed S] [--ops M] [--cpu max|cortex-a72|both]
                         [--smp K] [--per-boot B] [--timeout SECS] [--append ARGS] [--linux]
                         [--kernel PEER] [--mem SIZE] [--soak MINUTES] [--threads]
  --seeds N        how many seeds (default 8)
  --first-seed S   the first seed (default 1): seeds S..S+N-1
  --ops M          operations per seed (default 2000)
  --cpu MODEL      max, cortex-a72 or both (default both)
  --smp K          CPUs (default 4)
  --per-boot B     seeds per boot (default 4)
  --timeout SECS   per boot (default 60 + 60 per seed per 1000 ops)
  --append ARGS    more kernel command-line words (e.g. "contpte=off cow=folio")
  --linux          run on Linux 6.12 (fetched by scripts/linux.sh) instead
  --kernel PEER    run on that Linux peer instead: linux-6.12 or linux-7.3
  --mem SIZE       RAM (default 1G, with --soak too: the ballast makes the pressure
                   whatever the size; at 384M the seeds' own memory can exceed RAM,
                   and Linux 6.12 OOM-kills seed 951 there too)
  --soak MINUTES   seeds from --first-seed on until MINUTES have passed (--seeds is
                   ignored), CPU models in turn, each boot first setting the collapse
                   thread to scan every 1 ms (khugepaged scan_sleep_millisecs=1,
                   alloc_sleep_millisecs=1, pages_to_scan=4096), the stress program
                   under memory pressure (its `p` flag: a ballast of all but 32 MiB of
                   free memory, populated then MADV_FREE'd, every other 64
                   operations: reclaim must discard it); reclaim and collapse
                   counters summed at the end
  --threads        the threaded mode (the program's `t` flag): three threads in one
                   address space, each over its own arena, --ops operations each
USAGE
    exit 2
}

seeds=8 first=1 ops=2000 cpus=both smp=4 per_boot=4 timeout="" extra="" linux=0 mem="" soak=0
report="" soak_flags="" peer=linux-6.12 threads=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) [ $# -ge 2 ] || usage; seeds=$2; shift 2 ;;
        --first-seed) [ $# -ge 2 ] || usage; first=$2; shift 2 ;;
        --ops) [ $# -ge 2 ] || usage; ops=$2; shift 2 ;;
        --cpu) [ $# -ge 2 ] || usage; cpus=$2; shift 2 ;;
        --smp) [ $# -ge 2 ] || usage; smp=$2; shift 2 ;;
        --per-boot) [ $# -ge 2 ] || usage; per_boot=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || usage; timeout=$2; shift 2 ;;
        --append) [ $# -ge 2 ] || usage; extra=$2; shift 2 ;;
        --linux) linux=1; shift ;;
        --kernel) [ $# -ge 2 ] || usage; linux=1 peer=$2; shift 2 ;;
        --mem) [ $# -ge 2 ] || usage; mem=$2; shift 2 ;;
        --soak) [ $# -ge 2 ] || usage; soak=$2; shift 2 ;;
        --threads) threads=1; shift ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done
for v in "$seeds" "$first" "$ops" "$smp" "$per_boot" "$soak" ${timeout:+"$timeout"}; do
    case "$v" in ''|*[!0-9]*) echo "not a number: $v" >&2; usage ;; esac
done
[ "$per_boot" -ge 1 ] || usage
case "$cpus" in both) cpus="max cortex-a72" ;; max|cortex-a72) ;; *) usage ;; esac
[ -n "$mem" ] || mem=1G
# A soak keeps the collapse thread busy: init runs these before the seeds.
busy=""
if [ "$soak" -gt 0 ]; then
    k=/sys/kernel/mm/transparent_hugepage/khugepaged
    busy="sysfs:$k/scan_sleep_millisecs:1 sysfs:$k/alloc_sleep_millisecs:1 sysfs:$k/pages_to_scan:4096 "
    report=" sysfs:/proc/vmstat sysfs:$k/full_scans sysfs:$k/pages_collapsed"
    soak_flags="p" # the stress program's memory pressure (its ballast)
fi
[ "$threads" = 1 ] && soak_flags="${soak_flags}t"
soak_flags=${soak_flags:+:$soak_flags}
# soak_add NAME LOG: add the last value of counter NAME in LOG (a `sysfs:` report line
# `PATH: NAME VALUE` or `PATH: VALUE`) to soak_NAME.
declare -A soak_sum=()
soak_add() {
    local v
    v=$(grep -aE "^[^ ]*(/$1: [0-9]+|: $1 [0-9]+)\$" "$2" | tail -n 1 | awk '{print $NF}')
    soak_sum[$1]=$(( ${soak_sum[$1]:-0} + ${v:-0} ))
}

ensure_tools
if [ "$linux" = 1 ]; then
    image=$(linux_image "$peer") || exit 2
else
    elf=$(build_kernel --features ktest) || exit 2
fi
initrd=$("$ROOT/scripts/initramfs.sh" "$ROOT/target/ktest/stress.cpio") || exit 2

log=$(mktemp)
trap 'rm -f "$log"' EXIT
total_ops=0 total_ms=0 failed_seeds=() boots_failed=0

# boot CPU SEED...: one boot running the seeds; adds to the totals and failures.
boot() {
    local cpu=$1; shift
    local args="$busy" s
    for s in "$@"; do args="$args stress:$s:$ops${soak_flags} "; done
    args="${args% }$report"
    local t=${timeout:-$((60 + 60 * $# * (ops + 999) / 1000))}
    local cmd
    if [ "$linux" = 1 ]; then
        mapfile -t cmd < <(linux_qemu_cmd "$image" "$cpu" "$smp" "$mem" "$initrd" "$args")
    else
        mapfile -t cmd < <(qemu_cmd "$elf" "$cpu" "$smp" "$mem" 3 0 0 "${extra:+$extra }-- $args" "$initrd")
    fi
    say "-cpu $cpu -smp $smp: seeds $* ($ops ops each)"
    local status=0
    timeout -k 5 "$t" "${cmd[@]}" </dev/null 2>&1 | tr -d '\r' >"$log"
    status=${PIPESTATUS[0]}
    local bad=0 why=""
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then why="timed out after ${t}s"; bad=1
    elif grep -aq 'panic on cpu\|Kernel panic' "$log"; then why="kernel panic"; bad=1
    elif [ -n "$busy" ] && grep -aqE '^init: sysfs:[^ ]* exited [^0]' "$log"; then why="a tunable could not be set"; bad=1
    elif [ "$linux" = 0 ] && ! grep -aq 'frames not returned: 0' "$log"; then why="frames leaked or no clean stop"; bad=1
    fi
    if [ -n "$report" ]; then
        local c
        for c in pglazyfreed pgsteal_kswapd pgsteal_direct thp_split_page full_scans pages_collapsed; do
            soak_add "$c" "$log"
        done
    fi
    for s in "$@"; do
        local line
        line=$(grep -aE "^stress: seed $s: [0-9]+ ops in [0-9]+ ms" "$log" | tail -n 1)
        if [ -n "$line" ]; then
            total_ops=$((total_ops + $(echo "$line" | awk '{print $4}')))
            total_ms=$((total_ms + $(echo "$line" | awk '{print $7}')))
        fi
        if ! grep -aqx "stress: seed $s passed" "$log"; then
            failed_seeds+=("$cpu:$s"); bad=1
        fi
    done
    if [ "$bad" = 1 ]; then
        boots_failed=$((boots_failed + 1))
        echo "---- -cpu $cpu seeds $*${why:+: $why}"
        grep -aE 'MISMATCH|^stress:  |FAILED at op|panic|fault:|audit|killed|frames not returned|init: stress' "$log" | head -n 60
        [ -n "$why" ] && tail -n 20 "$log"
        echo "----"
    fi
}

if [ "$soak" -gt 0 ]; then
    end=$((SECONDS + soak * 60)) s=$first boots=0
    read -ra models <<<"$cpus"
    while [ "$SECONDS" -lt "$end" ]; do
        batch=()
        for ((i = 0; i < per_boot; i++)); do batch+=("$((s + i))"); done
        boot "${models[$((boots % ${#models[@]}))]}" "${batch[@]}"
        s=$((s + per_boot)) boots=$((boots + 1))
    done
    echo "stress: soak of $soak min: $boots boots, seeds $first..$((s - 1)), $SECONDS s, mem $mem"
    echo -n "stress: soak totals (sums over boots):"
    for c in pglazyfreed pgsteal_kswapd pgsteal_direct thp_split_page full_scans pages_collapsed; do
        echo -n " $c=${soak_sum[$c]:-0}"
    done
    echo
else
    for cpu in $cpus; do
        batch=()
        for ((s = first; s < first + seeds; s++)); do
            batch+=("$s")
            if [ "${#batch[@]}" -ge "$per_boot" ]; then boot "$cpu" "${batch[@]}"; batch=(); fi
        done
        [ "${#batch[@]}" -gt 0 ] && boot "$cpu" "${batch[@]}"
    done
fi

rate=0
[ "$total_ms" -gt 0 ] && rate=$((total_ops * 1000 / total_ms))
echo "stress: $total_ops ops in $total_ms ms of program time in the seeds that passed: $rate ops/s"
if [ "${#failed_seeds[@]}" -gt 0 ] || [ "$boots_failed" -gt 0 ]; then
    echo "stress: failed seeds (cpu:seed): ${failed_seeds[*]:-none}"
    exit 1
fi
echo "stress: every seed passed"
