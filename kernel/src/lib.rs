//! contkernel: a bare-metal AArch64 kernel about contiguous page-table entries (CONT-PTE)
//! and multi-size transparent huge pages.
//!
//! Layers, lowest first (arrows point down; `tests/tests/layers.rs` holds the table):
//! `arch` (AArch64 registers, exceptions, TLB maintenance) with the console, time and
//! per-CPU data, `mm` (frames, page tables, address spaces), `fs` (files, pseudo-files)
//! with interrupt dispatch and power-off, `proc` (tasks, scheduler, exec), `syscall`
//! (the Linux ABI) and `boot`/`smp` (bring-up), `bench` and `ktest`.
//! Board devices live in the `platform` crate. Pure logic builds on the host too, where
//! `cargo test -p contkernel --lib` runs its unit tests.
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), no_std)]

extern crate alloc;
#[cfg(all(feature = "model", not(test)))]
extern crate std;

pub mod arch;
pub mod cmdline;
pub mod mm;
#[cfg(target_os = "none")]
pub mod percpu;
pub mod proc;
pub mod sync;
pub mod syscall;
pub mod uapi;

#[cfg(target_os = "none")]
pub mod bench;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod fs;
/// Host builds: of `fs`, only the initramfs format, for its tests.
#[cfg(not(target_os = "none"))]
pub mod fs {
    #[path = "cpio.rs"]
    pub mod cpio;
}
#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(all(target_os = "none", feature = "ktest"))]
pub mod ktest;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
pub mod profile;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod time;
