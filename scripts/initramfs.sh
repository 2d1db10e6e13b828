#!/usr/bin/env bash
# scripts/initramfs.sh OUT.cpio [--with-c]: builds the EL0 programs in user/ and packs
# them as a cpio "newc" archive: /init is the `init` program, /bin/<name> every
# program (with --with-c also the glibc programs of user/c, /bin/glibc_check and
# /bin/pthreads, built with aarch64-linux-gnu-gcc -static when that compiler is
# installed), plus /dev/console (when run as root: Linux
# opens it for init's fds 0-2), /proc and /sys as empty mount points. Prints OUT.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() { echo "usage: $0 OUT.cpio [--with-c]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1
with_c=0
case "${2:-}" in
    "") ;;
    --with-c) with_c=1 ;;
    *) usage ;;
esac
[ $# -le 2 ] || usage
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

ensure_tools
command -v cpio >/dev/null 2>&1 || apt_install cpio

say "building user/"
(cd "$ROOT" && cargo build -q --release -p contkernel-user --target "$KTARGET") >&2 \
    || die "user/ build failed"
bins="$ROOT/target/$KTARGET/release"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/dev" "$stage/proc" "$stage/sys"
for src in "$ROOT"/user/src/bin/*.rs; do
    name=$(basename "$src" .rs)
    install -m 755 "$bins/$name" "$stage/bin/$name"
done
install -m 755 "$bins/init" "$stage/init"

if [ "$with_c" = 1 ]; then
    if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
        for src in "$ROOT"/user/c/*.c; do
            name=$(basename "$src" .c)
            say "building user/c/$name.c"
            aarch64-linux-gnu-gcc -static -O2 -Wall -pthread -o "$stage/bin/$name" "$src" \
                || die "$name build failed"
        done
    else
        say "aarch64-linux-gnu-gcc not found (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross): no glibc programs"
    fi
fi

if [ "$(id -u)" -eq 0 ]; then
    mknod -m 600 "$stage/dev/console" c 5 1
else
    say "not root: no /dev/console node (Linux then starts /init without fds 0-2)"
fi

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) > "$out" \
    || die "cpio failed"
echo "$out"
