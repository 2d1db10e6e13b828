# Shared by run.sh, test.sh and debug.sh: install what is missing, build the kernel.
# Sourced, not run. Idempotent and quick when everything is present.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KTARGET=aarch64-unknown-none-softfloat
QEMU=${QEMU:-qemu-system-aarch64}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root or sudo to run: $*"
    fi
}

APT_UPDATED=
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
    if [ -z "$APT_UPDATED" ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

# Rust (rustup and the bare-metal target) and QEMU (qemu-system-arm provides
# qemu-system-aarch64). Rust itself cannot be downloaded here: rustup must exist.
ensure_tools() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
    if command -v rustup >/dev/null 2>&1; then
        if ! rustup target list --installed | grep -qx "$KTARGET"; then
            say "rustup target add $KTARGET"
            rustup target add "$KTARGET" >/dev/null || die "rustup target add $KTARGET failed"
        fi
    fi
    command -v "$QEMU" >/dev/null 2>&1 || apt_install qemu-system-arm
    command -v "$QEMU" >/dev/null 2>&1 || die "$QEMU still missing after installing qemu-system-arm"
}

# The cross compiler for the static glibc test program (optional for run.sh).
ensure_cross_cc() {
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
}

# build_kernel [--features ktest]: prints the ELF path. Test builds go to their own
# target directory so switching between run.sh and test.sh does not rebuild.
build_kernel() {
    local dir="$ROOT/target" extra=()
    if [ "${1:-}" = "--features" ]; then
        dir="$ROOT/target/ktest"
        extra=(--features "$2")
    fi
    say "building the kernel ${extra[*]}"
    (cd "$ROOT" && cargo build -q --release -p contkernel --target "$KTARGET" --target-dir "$dir" "${extra[@]}") >&2 \
        || die "kernel build failed"
    echo "$dir/$KTARGET/release/contkernel"
}

# qemu_cmd ELF CPU SMP MEM GIC EL2(0|1) ICOUNT(0|1) APPEND [INITRD]: the QEMU command
# line, one word per line, from the tests' harness (tests/src/machine.rs), the one
# place it is built: an ELF kernel gets no -initrd from QEMU, so the generic loader puts
# the file at the top of RAM and the command line says where (initrd=ADDR,SIZE).
qemu_cmd() {
    (cd "$ROOT" && QEMU="$QEMU" cargo run -q --release -p contkernel-tests --bin qemu-cmd -- "$@")
}
