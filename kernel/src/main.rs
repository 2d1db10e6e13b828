//! The kernel binary: only the assembly entry lives here, so the linker always keeps it;
//! everything it calls is in the `contkernel` library (boot.rs is the first stop).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("arch/aarch64/boot.s"), options(raw));
#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("arch/aarch64/vectors.s"), options(raw));

#[cfg(target_os = "none")]
use contkernel as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("contkernel runs under qemu-system-aarch64: use scripts/run.sh");
    std::process::exit(2);
}
