//! `rt`, the runtime of contkernel's EL0 programs. They speak the Linux arm64 system
//! call ABI, so the same static ELF runs on contkernel and on Linux.
//!
//! - [`start`]: `_start`, the initial stack (argc, argv, envp, auxv), [`entry!`]
//! - [`sys`]: `svc #0`, the system call numbers, [`Errno`]
//! - [`proc`], [`mm`], [`fs`], [`time`], [`signal`], [`pipe`]: typed wrappers, each `Result<_, Errno>`
//! - [`io`]: `print!` / `println!` through a fixed buffer, the panic handler
//! - [`text`]: a fixed-size string buffer (messages, paths), no allocator
//! - [`procfs`]: /proc/self files as text: a VMA's smaps block and fields, status
//! - [`test`]: `TEST name ... ok` / `TEST name ... FAILED: why` reports
//! - [`pagemap`]: /proc/self/pagemap and /proc/kpageflags entries
//! - [`thp`]: mTHP policy and counters (sysfs), thpmaps, meminfo, contpte stats
//! - [`bench`]: the virtual counter at EL0, median/min/max, counter snapshots, JSON lines
//! - [`thread`]: threads (clone with CLONE_THREAD) and join through the tid futex
#![warn(clippy::undocumented_unsafe_blocks)]
#![no_std]

pub mod bench;
pub mod fs;
pub mod io;
pub mod mm;
pub mod pagemap;
pub mod pipe;
pub mod proc;
pub mod procfs;
pub mod signal;
pub mod start;
pub mod sys;
pub mod test;
pub mod text;
pub mod thp;
pub mod thread;
pub mod time;

pub use start::Args;
pub use sys::{Errno, Res};
