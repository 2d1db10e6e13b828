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
//!
//! `unsafe` lives in `arch/` (and the `platform` crate) only, behind safe functions
//! whose docs say what makes them safe; `mm`, `syscall` and `fs` forbid it. The
//! exceptions left, each allowed where it is declared: `ktest` (the in-kernel tests
//! poke the machine directly: kept so); and, still to move behind an arch API,
//! `proc::{sched, process, task}` (the context switch: the saved contexts and FP state
//! in `UnsafeCell`s, the current task as a raw `Arc`), `percpu` (TPIDR_EL1 as a
//! pointer), `boot` (the DTB, the initrd and the frame metadata as slices of raw RAM),
//! `smp` (the boot record's cache clean and PSCI CPU_ON), `sync` (`IrqSpinLockGuard`
//! drops its lock with `ManuallyDrop::drop` before the interrupt mask comes back: a safe
//! version, the mask in a field dropped after the lock's guard, cost 34 instructions per
//! 4 KiB fault in `scripts/bench.sh --icount`) and `profile` (the interrupted stack's
//! frame records, the per-CPU sample buffers).
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]
// No function over 60 lines (clippy.toml) outside the tests: a longer one is split by
// what it does, or says why it is a table.
#![warn(clippy::too_many_lines)]
#![cfg_attr(test, allow(clippy::too_many_lines))]
#![cfg_attr(not(test), no_std)]

extern crate alloc;
#[cfg(all(feature = "model", not(test)))]
extern crate std;

/// The most CPUs the kernel runs: per-CPU data (`percpu`), the page-table layer's
/// counter slots (`mm::pgtable::counters`), the profiler's buffers.
pub const MAX_CPUS: usize = 16;

#[allow(unsafe_code)] // the machine: every unsafe of the kernel belongs here
pub mod arch;
pub mod cmdline;
pub mod mm;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // TPIDR_EL1 as a pointer (see the crate doc)
pub mod percpu;
pub mod proc;
#[allow(unsafe_code)] // the lock released before the interrupt mask comes back
pub mod sync;
pub mod syscall;
pub mod uapi;

#[cfg(target_os = "none")]
pub mod bench;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // the DTB, the initrd and the frame metadata in raw RAM
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
#[allow(unsafe_code)] // the in-kernel tests poke the machine directly
pub mod ktest;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // frame records of the interrupted stack, per-CPU sample buffers
pub mod profile;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // the boot record's cache clean, PSCI CPU_ON
pub mod smp;
#[cfg(target_os = "none")]
pub mod time;
