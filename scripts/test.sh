#!/usr/bin/env bash
# Every test: installs what is missing, builds, runs the host unit tests, then boots the
# test kernel across the matrix (CPU model x CPUs x GIC version x entry EL) through the
# host harness in tests/, with the contiguous-bit modes contpte=on|off|naive. Ends with
# "N passed, N failed"; non-zero exit on any failure.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    lint, host tests, one cell of each kind (max, 4 CPUs, GICv3, EL1, contpte=on)
#
# Each step prints [k/N]; user-space cells also report the programs' own checks
# ("guest checks: N passed, M failed"), summed at the end.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

quick=0
case "${1:-}" in
    "") ;;
    --quick) quick=1 ;;
    *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac

ensure_tools
ensure_cross_cc
ELF=$(build_kernel --features ktest) || exit 2
export CONTKERNEL_ELF=$ELF
INITRD=$("$ROOT/scripts/initramfs.sh" "$ROOT/target/ktest/initramfs.cpio" --with-c) || exit 2

passed=0 failed=0 guest_passed=0 guest_failed=0 step=0 steps=0
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

# run_tests LABEL COMMAND...: run a cargo test command, add its counts to the totals
# (and the in-guest checks a boot reports as "guest checks: N passed, M failed"). A
# failure shows each failed test's message, without the backtrace.
run_tests() {
    local label=$1; shift
    step=$((step + 1))
    say "[$step/$steps] $label"
    "$@" 2>&1 | tee "$LOG" | grep -E '^(test result|guest checks)' || true
    local p f gp gf
    p=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed' "$LOG" | awk '{s+=$4} END {print s+0}')
    f=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$LOG" | awk '{s+=$6} END {print s+0}')
    gp=$(grep -oE '^guest checks: [0-9]+ passed' "$LOG" | awk '{s+=$3} END {print s+0}')
    gf=$(grep -oE '^guest checks: [0-9]+ passed, [0-9]+ failed' "$LOG" | awk '{s+=$5} END {print s+0}')
    if ! grep -q 'test result:' "$LOG"; then
        tail -n 30 "$LOG"
        f=$((f + 1))
    elif [ "$f" -gt 0 ]; then
        local why
        why=$(sed -n '/^---- /,/^failures:$/p' "$LOG" | grep -vE '^ +at |^stack backtrace|^note: ' | head -n 80)
        # --nocapture tests (the user cells) print no "---- name stdout ----" section:
        # show the panic message and the console around it instead.
        [ -n "$why" ] || why=$(grep -n -B 10 -A 80 "panicked at" "$LOG" | head -n 100)
        printf '%s\n' "$why"
    fi
    passed=$((passed + p)); failed=$((failed + f))
    guest_passed=$((guest_passed + gp)); guest_failed=$((guest_failed + gf))
    printf '    %s: %d passed, %d failed\n' "$label" "$p" "$f"
}

# run_check LABEL COMMAND...: one check that passes when the command succeeds.
run_check() {
    local label=$1; shift
    step=$((step + 1))
    say "[$step/$steps] $label"
    if "$@" >"$LOG" 2>&1; then
        passed=$((passed + 1))
        printf '    %s: ok\n' "$label"
    else
        failed=$((failed + 1))
        head -n 60 "$LOG"
        printf '    %s: FAILED\n' "$label"
    fi
}

# Lints: formatting, and clippy with warnings as errors on every build (the test and
# plain kernel, the user programs, the host crates with their tests).
lint() {
    cargo fmt --all --check &&
        cargo clippy -q --release -p contkernel --target "$KTARGET" --target-dir "$ROOT/target/ktest" --features ktest -- -D warnings &&
        cargo clippy -q --release -p contkernel --target "$KTARGET" -- -D warnings &&
        cargo clippy -q --release -p contkernel-user --target "$KTARGET" -- -D warnings &&
        cargo clippy -q --workspace --exclude contkernel-user --all-targets -- -D warnings
}

# A kernel cell: CPU model, CPUs, GIC version, entry EL, contiguous-bit mode (contpte=).
if [ "$quick" = 1 ]; then
    cells=("max 4 3 1 on")
else
    cells=()
    for cpu in max cortex-a72; do
        for smp in 1 4; do
            for gic in 2 3; do
                for el in 1 2; do cells+=("$cpu $smp $gic $el on"); done
            done
            for mode in off naive; do cells+=("$cpu $smp 3 1 $mode"); done
        done
    done
fi
# A user-space cell (the scenario programs and the static glibc program as /init): CPU
# model, CPUs, contpte mode, copy-on-write variant (cow=page as Linux, or cow=folio: a
# write to a shared large folio copies all of it), then any other kernel words.
if [ "$quick" = 1 ]; then
    ucells=("max 4 on page")
else
    # Two cells force 8-bit ASIDs (asid_bits=8): asid_recycle's 300 processes then
    # outnumber them and share the last one.
    ucells=("max 1 on page" "max 4 on page" "cortex-a72 1 on page" "cortex-a72 4 on page" "max 4 off page"
            "cortex-a72 4 naive page" "max 4 on folio asid_bits=8" "cortex-a72 4 off folio asid_bits=8")
fi
# The randomized address-space test (user/src/bin/stress.rs) for the fixed seeds of
# tests/tests/stress.rs, one boot per seed, on both CPU models with 4 CPUs.
if [ "$quick" = 1 ]; then scells=(max); else scells=(max cortex-a72); fi
# Linux's own mm selftests (scripts/selftests.sh --check) on both CPU models, 2 CPUs:
# every test that passes on Linux 6.12 passes here or has its reason in
# tests/selftests/reasons.txt. Full run only: a cell takes about 1.5 minutes, which
# --quick's 3-minute budget does not have.
if [ "$quick" = 1 ]; then kcells=(); else kcells=(max cortex-a72); fi
# The modelled TLB (scripts/tlb-check.sh: tlbmodel's host tests, then QEMU 10 with the
# plugin, walk counts against the hand count, no translation mismatch): full run only.
tlb=$((1 - quick))
# Steps: lint, five host suites, the cells, the benchmark, the suite's tool and the suite,
# the profiler, the modelled TLB, the selftests.
steps=$((1 + 5 + ${#cells[@]} + ${#ucells[@]} + ${#scells[@]} + 1 + 2 + 1 + tlb + ${#kcells[@]}))
# The profiler (scripts/profile.sh) on the copy-on-write scenario, 2 CPUs: the report
# must name page-table functions in the flat profile and show handle_fault's caller
# (the process layer's fault_in, or user_sync where the compiler inlined it)
# from the frame-pointer chain (the call graph).
profile_check() {
    local out
    out=$(mktemp -d)
    PROFILE_OUT=$out "$ROOT/scripts/profile.sh" --smp 2 --append "-- cow" &&
        grep -qE '^ +[0-9]+ +[0-9.]+% +[0-9]+ +[0-9.]+%  contkernel::mm::pgtable::' "$out/report.txt" &&
        grep -B1 -E 'contkernel::mm::fault::.*::handle_fault  \(' "$out/report.txt" |
            grep -qE '^ +[0-9]+  contkernel::proc::process::(user_sync|fault_in)$'
    local status=$?
    rm -rf "$out"
    return $status
}

cd "$ROOT"
run_check "lint: cargo fmt --check, cargo clippy -D warnings" lint
run_tests "host: kernel unit tests" cargo test -q -p contkernel --lib
run_tests "host: platform unit tests" cargo test -q -p platform
run_tests "host: harness unit tests" cargo test -q -p contkernel-tests --lib
run_tests "host: layers (arrows point down, no import cycle across directories)" cargo test -q -p contkernel-tests --test layers
run_tests "host: docs (every path README.md and docs/ name exists)" cargo test -q -p contkernel-tests --test docs

for cell in "${cells[@]}"; do
    read -r cpu smp gic el mode <<<"$cell"
    CONTKERNEL_CPU=$cpu CONTKERNEL_SMP=$smp CONTKERNEL_GIC=$gic CONTKERNEL_EL=$el CONTKERNEL_APPEND="contpte=$mode" \
        run_tests "qemu: -cpu $cpu -smp $smp GICv$gic EL$el contpte=$mode" \
        cargo test -q -p contkernel-tests --test kernel -- --test-threads=2
done

for cell in "${ucells[@]}"; do
    read -r cpu smp mode cow extra <<<"$cell"
    CONTKERNEL_CPU=$cpu CONTKERNEL_SMP=$smp CONTKERNEL_GIC=3 CONTKERNEL_INITRD=$INITRD CONTKERNEL_APPEND="contpte=$mode cow=$cow${extra:+ $extra}" \
        run_tests "user: -cpu $cpu -smp $smp contpte=$mode cow=$cow${extra:+ $extra}" \
        cargo test -q -p contkernel-tests --test user -- --nocapture
done

for cpu in "${scells[@]}"; do
    CONTKERNEL_CPU=$cpu CONTKERNEL_SMP=4 CONTKERNEL_GIC=3 CONTKERNEL_INITRD=$INITRD CONTKERNEL_APPEND="contpte=on" \
        run_tests "stress: -cpu $cpu -smp 4 fixed seeds" \
        cargo test -q -p contkernel-tests --test stress -- --test-threads=2
done

run_tests "qemu: contpte benchmark (work per call)" \
    cargo test -q -p contkernel-tests --test bench

# The benchmark suite works end to end (never asserting speed): the quick run twice,
# whose instruction counts under icount must be identical, and its fork benchmarks
# alone (`--only fork`: the first of their boot, not after `fault`), whose figures
# must be those of the whole run within bench-report's tolerance (the timer's ticks
# fall elsewhere): a figure must not depend on what ran before it. (Before bench_mm
# held the collapse thread off, its first round fell in whichever window was open:
# fork at 64 KiB with contpte=off alone 3.56 M, after fault 2.69 M.)
bench_suite() {
    local dir="$ROOT/target/bench-test"
    "$ROOT/scripts/bench.sh" --quick --icount --out "$dir/a" &&
        "$ROOT/scripts/bench.sh" --quick --icount --out "$dir/b" &&
        "$ROOT/target/release/bench-report" compare "$dir/a/results.json" "$dir/b/results.json" &&
        "$ROOT/scripts/bench.sh" --quick --icount --only fork --out "$dir/fork" &&
        "$ROOT/target/release/bench-report" part "$dir/a/results.json" "$dir/fork/results.json"
}
run_tests "host: bench-report unit tests" cargo test -q -p contkernel-tests --bin bench-report
run_check "bench: scripts/bench.sh --quick --icount twice, identical instructions; fork alone, the same" bench_suite
run_check "profile: scripts/profile.sh names kernel functions and their callers" profile_check
[ "$tlb" = 1 ] && run_check "tlb: scripts/tlb-check.sh (modelled TLB walks at 4K/64K/2M, contpte on/off)" \
    "$ROOT/scripts/tlb-check.sh"

for cpu in "${kcells[@]}"; do
    run_check "selftests: Linux's mm selftests, -cpu $cpu, against Linux 6.12's results" \
        "$ROOT/scripts/selftests.sh" --kernel contkernel --cpu "$cpu" --check
done

echo "in-guest checks (inside the passed and failed tests above): $guest_passed passed, $guest_failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
