#!/usr/bin/env bash
# Boot under QEMU stopped at the first instruction and attach gdb-multiarch with the
# kernel's symbols. Options are run.sh's. Breakpoints on high-half symbols work after
# the MMU is on (e.g. `break primary_main`, `continue`).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ensure_tools
command -v gdb-multiarch >/dev/null 2>&1 || apt_install gdb-multiarch
# gdb gets the symbols of the kernel QEMU boots: the test build with --ktest or
# --test-build, the plain one otherwise.
features=()
for a in "$@"; do
    case "$a" in --ktest|--test-build) features=(--features ktest) ;; esac
done
elf=$(build_kernel "${features[@]}")
"$(dirname "$0")/run.sh" --gdb "$@" >"$ROOT/target/debug-console.log" 2>&1 &
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
gdb-multiarch "$elf" -ex 'target remote localhost:1234' -ex 'break primary_main'
