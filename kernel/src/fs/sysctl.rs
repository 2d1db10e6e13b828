//! /proc/sys/kernel/threads-max: the most tasks that may exist at once (Linux's
//! `max_threads`, kernel/fork.c). A fork beyond it fails with EAGAIN whatever the
//! caller's privileges (`proc::process::fork` checks it), which is what stops a fork
//! bomb run as root on Linux too (RLIMIT_NPROC does not apply to root). The value
//! lives here because proc imports fs, never the other way round; proc sets the
//! default at boot (`set_default_threads_max`).

use alloc::string::String;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::uapi::{Errno, EINVAL};

/// Linux's bounds: a write takes 1..=MAX_THREADS (EINVAL otherwise); the default
/// computed from RAM is clamped to MIN_THREADS..=MAX_THREADS.
const MIN_THREADS: u32 = 20;
const MAX_THREADS: u32 = 0x3fff_ffff;

static THREADS_MAX: AtomicU32 = AtomicU32::new(MAX_THREADS);

/// The limit fork checks the task count against.
pub fn threads_max() -> usize {
    THREADS_MAX.load(Ordering::Relaxed) as usize
}

/// Linux's default (`set_max_threads`): as many tasks as there are stacks of
/// `stack_bytes` in an eighth of `ram_bytes`.
pub fn set_default_threads_max(ram_bytes: usize, stack_bytes: usize) {
    let n = (ram_bytes / (stack_bytes * 8)).clamp(MIN_THREADS as usize, MAX_THREADS as usize);
    THREADS_MAX.store(n as u32, Ordering::Relaxed);
}

pub fn render() -> String {
    alloc::format!("{}\n", THREADS_MAX.load(Ordering::Relaxed))
}

/// A write of the whole value (Linux's `proc_dointvec_minmax`: blanks around the
/// number are allowed).
pub fn write(s: &str) -> Result<(), Errno> {
    let v: u32 = s.trim().parse().map_err(|_| EINVAL)?;
    if !(1..=MAX_THREADS).contains(&v) {
        return Err(EINVAL);
    }
    THREADS_MAX.store(v, Ordering::Relaxed);
    Ok(())
}
