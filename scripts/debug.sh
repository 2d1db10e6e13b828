#!/usr/bin/env bash
# Boot under QEMU stopped at the first instruction and attach gdb-multiarch with the
# kernel's symbols. Options are run.sh's. Breakpoints on high-half symbols work after
# the MMU is on (e.g. `break primary_main`, `continue`).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ensure_tools
command -v gdb-multiarch >/dev/null 2>&1 || apt_install gdb-multiarch
elf=$(build_kernel)
"$(dirname "$0")/run.sh" --gdb "$@" >"$ROOT/target/debug-console.log" 2>&1 &
qemu=$!
trap 'kill $qemu 2>/dev/null || true' EXIT
say "console output: target/debug-console.log"
sleep 1
gdb-multiarch "$elf" -ex 'target remote localhost:1234' -ex 'break primary_main'
