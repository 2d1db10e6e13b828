#!/usr/bin/env bash
# Where the kernel spends its instructions: boots like scripts/run.sh (same options)
# with -icount and "profile=PERIOD", in a build with frame pointers, and prints the
# report of tests/src/bin/profile-report.rs: a flat profile by function (self and
# total samples) and a call graph (callers and callees of the hottest functions).
#
#   scripts/profile.sh [run.sh options]     e.g. --smp 4 --append "-- cow"
#
# The kernel samples the interrupted PC and its frame-pointer chain every PERIOD
# instructions (PROFILE_PERIOD, default 20000) on every CPU, and dumps the samples to
# the console at power-off (kernel/src/profile.rs). The console goes to
# PROFILE_OUT/console.txt and the report to PROFILE_OUT/report.txt (default
# target/profile). Exits non-zero if the run fails or no sample names a kernel function.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

period=${PROFILE_PERIOD:-20000}
out=${PROFILE_OUT:-$ROOT/target/profile}
args=() append="" features=()
while [ $# -gt 0 ]; do
    case "$1" in
        --append) [ $# -ge 2 ] || die "--append takes an argument"; append=$2; shift 2 ;;
        --ktest|--test-build) features=(--features ktest); args+=("$1"); shift ;;
        --icount) shift ;;
        --gdb) die "--gdb: not while profiling" ;;
        -h|--help) sed -n '2,13p' "$0" >&2; exit 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

ensure_tools
export KERNEL_FRAME_POINTERS=1
elf=$(build_kernel "${features[@]}")
mkdir -p "$out"
status=0
"$ROOT/scripts/run.sh" "${args[@]}" --icount --append "profile=$period${append:+ $append}" \
    >"$out/console.txt" || status=$?
grep -v '^profile: [0-9]' "$out/console.txt" | tail -n 5 >&2
[ "$status" = 0 ] || die "the run failed (exit status $status): see $out/console.txt"
(cd "$ROOT" && cargo run -q --release -p contkernel-tests --bin profile-report -- "$elf" "$out/console.txt") \
    >"$out/report.txt" || { cat "$out/report.txt"; die "no profile"; }
cat "$out/report.txt"
say "console: $out/console.txt, report: $out/report.txt"
