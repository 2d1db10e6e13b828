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
# target directory so switching between run.sh and test.sh does not rebuild. With
# KERNEL_FRAME_POINTERS=1 (scripts/profile.sh) every function keeps a frame record, for
# the profiler's call graph, in a directory of its own as well.
build_kernel() {
    local dir="$ROOT/target" extra=() flags=()
    if [ "${1:-}" = "--features" ]; then
        dir="$ROOT/target/ktest"
        extra=(--features "$2")
    fi
    if [ "${KERNEL_FRAME_POINTERS:-0}" = 1 ]; then
        dir="$dir/frame-pointers"
        flags=(RUSTFLAGS="-C force-frame-pointers=yes")
    fi
    # KERNEL_DEBUG_BUILD=1 (scripts/debug.sh --debug): the dev profile, unoptimised, so
    # gdb sees every local; its own target directory.
    local profile=release
    if [ "${KERNEL_DEBUG_BUILD:-0}" = 1 ]; then
        dir="$dir/debug-build"
        profile=dev
    fi
    say "building the kernel ${extra[*]} ${flags[*]} ($profile)"
    (cd "$ROOT" && env "${flags[@]}" cargo build -q --profile "$profile" -p contkernel --target "$KTARGET" --target-dir "$dir" "${extra[@]}") >&2 \
        || die "kernel build failed"
    [ "$profile" = dev ] && profile=debug
    echo "$dir/$KTARGET/$profile/contkernel"
}

# qemu_cmd ELF CPU SMP MEM GIC EL2(0|1) ICOUNT(0|1) APPEND [INITRD]: the QEMU command
# line, one word per line, from the tests' harness (tests/src/machine.rs), the one
# place it is built: an ELF kernel gets no -initrd from QEMU, so the generic loader puts
# the file at the top of RAM and the command line says where (initrd=ADDR,SIZE).
# shell_line WORD...: the words as one line a shell reads back as the same words
# (plain words as they are, others in single quotes), to paste a command.
shell_line() {
    local out="" w
    for w in "$@"; do
        if [[ -n "$w" && "$w" =~ ^[A-Za-z0-9_=,./:+@%-]+$ ]]; then
            out+="$w "
        else
            out+="'${w//\'/\'\\\'\'}' "
        fi
    done
    printf '%s\n' "${out% }"
}

qemu_cmd() {
    (cd "$ROOT" && QEMU="$QEMU" cargo run -q --release -p contkernel-tests --bin qemu-cmd -- "$@")
}

# Linux as a peer: Debian's arm64 kernels, each an uncompressed Image with
# CONFIG_ARM64_CONTPTE and THP: linux-6.12 is trixie's linux-image-6.12*-arm64-unsigned,
# linux-7.3 trixie-backports' linux-binary-unsigned-7.3*-arm64 (its Image is
# usr/lib/modules/VERSION/vmlinuz.unsigned, not boot/vmlinuz-*). Packages are fetched
# with apt's own client and a throw-away configuration (no change to the host's apt
# state) and cached under target/: linux-6.12 in target/linux/, linux-7.3 in
# target/linux-7.3/. LINUX_MIRROR overrides the archive.
LINUX_DIR="$ROOT/target/linux"
LINUX_MIRROR=${LINUX_MIRROR:-http://deb.debian.org/debian}
LINUX_PEERS="linux-6.12 linux-7.3"

# debian_fetch SUITE PREFIX REGEX DIR: downloads the newest arm64 package of SUITE whose
# name starts with PREFIX and matches REGEX into DIR (a fresh temporary directory of
# the caller's); prints the .deb's path.
debian_fetch() {
    local suite=$1 prefix=$2 regex=$3 dir=$4
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: it fetches $prefix*"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/etc/preferences.d"
    echo "deb $LINUX_MIRROR $suite main" > "$dir/sources.list"
    local opts=(-oAPT::Architecture=arm64 -oAPT::Architectures=arm64
                -oDir::State::Lists="$dir/lists" -oDir::State::Status=/dev/null
                -oDir::Etc::SourceList="$dir/sources.list" -oDir::Etc::SourceParts="$dir/none"
                -oDir::Etc::Preferences="$dir/etc/preferences" -oDir::Etc::PreferencesParts="$dir/etc/preferences.d"
                -oDir::Cache="$dir/cache" -oDebug::NoLocking=1 -oAcquire::Languages=none -oAPT::Sandbox::User=root)
    say "apt-get update ($suite, arm64, temporary lists)"
    apt-get "${opts[@]}" update -qq >&2 || die "apt-get update for $suite failed"
    local pkg
    pkg=$(apt-cache "${opts[@]}" pkgnames "$prefix" | grep -E "$regex" | sort -V | tail -n 1)
    [ -n "$pkg" ] || die "no package matching $regex in $suite"
    say "apt-get download $pkg"
    (cd "$dir" && apt-get "${opts[@]}" download "$pkg" >&2) || die "apt-get download $pkg failed"
    ls "$dir/$pkg"_*.deb
}

# linux_image [PEER]: the Image of a Linux peer (default linux-6.12), fetched once.
linux_image() {
    local peer=${1:-linux-6.12} dir suite prefix regex
    case "$peer" in
        linux-6.12) dir=$LINUX_DIR suite=trixie prefix=linux-image-6.12
                    regex='^linux-image-6\.12\.[0-9]+\+deb[0-9]+-arm64-unsigned$' ;;
        linux-7.3) dir="$ROOT/target/linux-7.3" suite=trixie-backports prefix=linux-binary-unsigned-7.3
                   regex='^linux-binary-unsigned-7\.3\.[0-9]+\+deb[0-9]+-arm64$' ;;
        *) die "unknown Linux peer $peer (known: $LINUX_PEERS)" ;;
    esac
    local image="$dir/Image"
    if [ -f "$image" ]; then echo "$image"; return 0; fi
    command -v dpkg >/dev/null 2>&1 || die "dpkg not found: it unpacks the Linux kernel package"
    local tmp deb; tmp=$(mktemp -d)
    deb=$(debian_fetch "$suite" "$prefix" "$regex" "$tmp") || { rm -rf "$tmp"; exit 2; }
    dpkg -x "$deb" "$tmp/x" || { rm -rf "$tmp"; die "dpkg -x $deb failed"; }
    local vmlinuz; vmlinuz=$(ls "$tmp"/x/boot/vmlinuz-* "$tmp"/x/usr/lib/modules/*/vmlinuz* 2>/dev/null | head -n 1)
    [ -f "$vmlinuz" ] || { rm -rf "$tmp"; die "no vmlinuz in $deb"; }
    mkdir -p "$dir"
    cp "$vmlinuz" "$image.tmp" && mv "$image.tmp" "$image"
    basename "$deb" .deb > "$dir/package"
    rm -rf "$tmp"
    echo "$image"
}

# linux_qemu_cmd IMAGE CPU SMP MEM INITRD ARGS [ICOUNT(0|1) [RDINIT]]: the QEMU command
# line booting Linux with INITRD as its initramfs, RDINIT (default /init) as its first
# program and ARGS for it, one word per line; the machine is the one qemu_cmd gives
# contkernel (virt with GICv2, -icount shift=0,sleep=off when asked) with every source
# of randomness Linux seeds from fixed, so that a run under icount repeats exactly
# (measured: without them Linux's figures move by up to 30% from boot to boot): no
# random DTB nodes (kaslr-seed, rng-seed: dtb-randomness=off, QEMU 7.2 and later), a
# seeded RNDR (-seed), an RTC that starts at a fixed date and follows the virtual clock.
# contkernel uses none of them, so its command line does without.
linux_qemu_cmd() {
    local image=$1 cpu=$2 smp=$3 mem=$4 initrd=$5 args=$6 icount=${7:-0} rdinit=${8:-/init}
    printf '%s\n' "$QEMU" -M virt,gic-version=2,dtb-randomness=off -cpu "$cpu" -smp "$smp" -m "$mem" -nographic -monitor none \
        -serial stdio -no-reboot -kernel "$image" -initrd "$initrd" \
        -append "console=ttyAMA0 quiet panic=-1 rdinit=$rdinit${args:+ -- $args}"
    printf '%s\n' -seed 1 -rtc base=2026-01-01T00:00:00,clock=vm
    [ "$icount" = 1 ] && printf '%s\n' -icount shift=0,sleep=off
    return 0
}

# apt_download ARCH SUITE DEST PKG...: the newest PKG... of Debian's SUITE for ARCH,
# downloaded as .debs into DEST with apt's own client and a throw-away configuration
# (temporary lists, no change to the host's apt state), as linux_image does.
apt_download() {
    local arch=$1 suite=$2 dest=$3; shift 3
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: it fetches $*"
    local tmp; tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/etc/preferences.d" "$dest"
    echo "deb $LINUX_MIRROR $suite main" > "$tmp/sources.list"
    local opts=(-oAPT::Architecture="$arch" -oAPT::Architectures="$arch"
                -oDir::State::Lists="$tmp/lists" -oDir::State::Status=/dev/null
                -oDir::Etc::SourceList="$tmp/sources.list" -oDir::Etc::SourceParts="$tmp/none"
                -oDir::Etc::Preferences="$tmp/etc/preferences" -oDir::Etc::PreferencesParts="$tmp/etc/preferences.d"
                -oDir::Cache="$tmp/cache" -oDebug::NoLocking=1 -oAcquire::Languages=none -oAPT::Sandbox::User=root)
    say "apt-get update ($suite, $arch, temporary lists)"
    apt-get "${opts[@]}" update -qq >&2 || { rm -rf "$tmp"; die "apt-get update for $suite failed"; }
    say "apt-get download $*"
    (cd "$dest" && apt-get "${opts[@]}" download "$@" >&2) || { rm -rf "$tmp"; die "apt-get download $* failed"; }
    rm -rf "$tmp"
}

# QEMU 10 for the TLB model's plugin (scripts/tlb.sh): plugin API v4, which 7.2 lacks.
# Debian bookworm-backports' qemu-system-arm and the packages it loads modules and
# firmware from, unpacked under target/qemu10/ next to the system's QEMU (nothing
# installed). qemu10 prints the binary's path; run it through qemu10_env.
QEMU10_DIR="$ROOT/target/qemu10"
QEMU10_SUITE=${QEMU10_SUITE:-bookworm-backports}
qemu10() {
    local bin="$QEMU10_DIR/root/usr/bin/qemu-system-aarch64"
    if [ -x "$bin" ]; then echo "$bin"; return 0; fi
    command -v dpkg >/dev/null 2>&1 || die "dpkg not found: it unpacks QEMU 10"
    rm -rf "$QEMU10_DIR"
    apt_download "$(dpkg --print-architecture)" "$QEMU10_SUITE" "$QEMU10_DIR/debs" \
        qemu-system-arm/"$QEMU10_SUITE" qemu-system-common/"$QEMU10_SUITE" qemu-system-data/"$QEMU10_SUITE" \
        qemu-system-gui/"$QEMU10_SUITE" qemu-system-modules-opengl/"$QEMU10_SUITE"
    local deb
    for deb in "$QEMU10_DIR"/debs/*.deb; do
        dpkg -x "$deb" "$QEMU10_DIR/root" || die "dpkg -x $deb failed"
    done
    [ -x "$bin" ] || die "no qemu-system-aarch64 in the $QEMU10_SUITE packages"
    echo "$bin"
}

# qemu10_env CMD...: runs CMD with QEMU 10's own modules (else it loads the system
# 7.2's and aborts); its firmware directory goes on the command line (-L, qemu10_data).
qemu10_env() {
    QEMU_MODULE_DIR=$(ls -d "$QEMU10_DIR"/root/usr/lib/*/qemu 2>/dev/null | head -n 1) "$@"
}
qemu10_data() {
    echo "$QEMU10_DIR/root/usr/share/qemu"
}

# tlb_plugin: builds the TLB model's QEMU plugin (tlbmodel/, its own workspace, GPL-2.0)
# and prints the library's path.
tlb_plugin() {
    (cd "$ROOT/tlbmodel" && cargo build -q --release) >&2 || die "tlbmodel build failed"
    echo "$ROOT/tlbmodel/target/release/libtlbmodel.so"
}

# tlb_qemu_args PLUGIN MODEL MEM_MIB [OPTION=VALUE...]: the words to add to a QEMU 10
# command line (one per line) to run the plugin with that model; its lines go to
# QEMU's log, which -d plugin sends to stderr.
tlb_qemu_args() {
    local plugin=$1 model=$2 mib=$3; shift 3
    local opts="$plugin,model=$model,ram_mib=$mib" o
    for o in "$@"; do opts+=",$o"; done
    printf '%s\n' -L "$(qemu10_data)" -plugin "$opts" -d plugin
}
