#!/usr/bin/env bash
# Boot under QEMU stopped at the first instruction and attach gdb-multiarch with the
# kernel's symbols. Options are run.sh's, plus --debug (an unoptimised build: the
# release build shows most locals as <optimized out>); what follows "--" goes to gdb
# as it is, e.g. for batch use:
#   scripts/debug.sh --debug -- -batch -ex 'break handle_fault' -ex continue -ex bt
# Without gdb arguments gdb stops at primary_main, interactively. Breakpoints on
# high-half symbols work after the MMU is on. docs/debugging.md has more, and the way
# around gdb 13's internal error on `info locals` in generic functions.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
run_args=() gdb_args=() features=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; gdb_args=("$@"); break ;;
        --debug) export KERNEL_DEBUG_BUILD=1; shift ;;
        # gdb gets the symbols of the kernel QEMU boots: the test build with --ktest or
        # --test-build, the plain one otherwise.
        --ktest|--test-build) features=(--features ktest); run_args+=("$1"); shift ;;
        *) run_args+=("$1"); shift ;;
    esac
done
[ ${#gdb_args[@]} -gt 0 ] || gdb_args=(-ex 'break primary_main')
ensure_tools
command -v gdb-multiarch >/dev/null 2>&1 || apt_install gdb-multiarch
elf=$(build_kernel "${features[@]}")
"$(dirname "$0")/run.sh" --gdb "${run_args[@]}" >"$ROOT/target/debug-console.log" 2>&1 &
qemu=$!
trap 'kill $qemu 2>/dev/null || true' EXIT
say "console output: target/debug-console.log"
# Wait for QEMU's gdb port (the build in run.sh may take a while), not a fixed time.
for _ in $(seq 600); do
    # Listening on 1234 (from /proc: no connection is made, the gdbstub takes one).
    grep -q ':04D2 00000000:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null && break
    kill -0 "$qemu" 2>/dev/null || die "QEMU exited before gdb could attach: see target/debug-console.log"
    sleep 0.2
done
gdb-multiarch "$elf" -ex 'target remote localhost:1234' "${gdb_args[@]}"
