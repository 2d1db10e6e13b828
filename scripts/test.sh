#!/usr/bin/env bash
# Every test: installs what is missing, builds, runs the host unit tests, then boots the
# test kernel across the matrix (CPU model x CPUs x GIC version x entry EL) through the
# host harness in tests/, with the contiguous-bit modes contpte=on|off|naive. Ends with
# "N passed, N failed"; non-zero exit on any failure.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    host tests plus one cell of each kind (max, 4 CPUs, GICv3, EL1, contpte=on)
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

passed=0 failed=0
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

# run_tests LABEL COMMAND...: run a cargo test command, add its counts to the totals.
run_tests() {
    local label=$1; shift
    say "$label"
    "$@" 2>&1 | tee "$LOG" | grep -E '^(test |test result|---- |thread |failures:|    )' | grep -v '^test .* ok$' || true
    local p f
    p=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed' "$LOG" | awk '{s+=$4} END {print s+0}')
    f=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$LOG" | awk '{s+=$6} END {print s+0}')
    if ! grep -q 'test result:' "$LOG"; then
        tail -n 30 "$LOG"
        f=$((f + 1))
    fi
    passed=$((passed + p)); failed=$((failed + f))
    printf '    %s: %d passed, %d failed\n' "$label" "$p" "$f"
}

cd "$ROOT"
run_tests "host: kernel unit tests" cargo test -q -p contkernel --lib
run_tests "host: platform unit tests" cargo test -q -p platform
run_tests "host: harness unit tests" cargo test -q -p contkernel-tests --lib

# A cell: CPU model, CPUs, GIC version, entry EL, contiguous-bit mode (contpte=).
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
for cell in "${cells[@]}"; do
    read -r cpu smp gic el mode <<<"$cell"
    CONTKERNEL_CPU=$cpu CONTKERNEL_SMP=$smp CONTKERNEL_GIC=$gic CONTKERNEL_EL=$el CONTKERNEL_APPEND="contpte=$mode" \
        run_tests "qemu: -cpu $cpu -smp $smp GICv$gic EL$el contpte=$mode" \
        cargo test -q -p contkernel-tests --test kernel -- --test-threads=2
done

# User space: the scenario programs (and the static glibc program) as /init.
# A cell: CPU model, CPUs, contpte mode, copy-on-write variant (cow=page as Linux, or
# cow=folio: a write to a shared large folio copies all of it).
if [ "$quick" = 1 ]; then
    ucells=("max 4 on page")
else
    ucells=("max 1 on page" "max 4 on page" "cortex-a72 1 on page" "cortex-a72 4 on page" "max 4 off page"
            "cortex-a72 4 naive page" "max 4 on folio" "cortex-a72 4 off folio")
fi
for cell in "${ucells[@]}"; do
    read -r cpu smp mode cow <<<"$cell"
    CONTKERNEL_CPU=$cpu CONTKERNEL_SMP=$smp CONTKERNEL_GIC=3 CONTKERNEL_INITRD=$INITRD CONTKERNEL_APPEND="contpte=$mode cow=$cow" \
        run_tests "user: -cpu $cpu -smp $smp contpte=$mode cow=$cow" \
        cargo test -q -p contkernel-tests --test user
done

# The randomized address-space test (user/src/bin/stress.rs) for the fixed seeds of
# tests/tests/stress.rs, one boot per seed, on both CPU models with 4 CPUs.
if [ "$quick" = 1 ]; then scells=(max); else scells=(max cortex-a72); fi
for cpu in "${scells[@]}"; do
    CONTKERNEL_CPU=$cpu CONTKERNEL_SMP=4 CONTKERNEL_GIC=3 CONTKERNEL_INITRD=$INITRD CONTKERNEL_APPEND="contpte=on" \
        run_tests "stress: -cpu $cpu -smp 4 fixed seeds" \
        cargo test -q -p contkernel-tests --test stress -- --test-threads=2
done

run_tests "qemu: contpte benchmark (work per call)" \
    cargo test -q -p contkernel-tests --test bench

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
