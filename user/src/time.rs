//! Time and scheduling: clock_gettime, nanosleep, clock_nanosleep, sched_yield;
//! getrandom.

use crate::sys::{nr, Errno};
use crate::syscall;

pub const CLOCK_REALTIME: usize = 0;
pub const CLOCK_MONOTONIC: usize = 1;
pub const CLOCK_MONOTONIC_RAW: usize = 4;

/// clock_nanosleep flag: `t` is a time on the clock, not an interval.
pub const TIMER_ABSTIME: usize = 1;

/// struct timespec.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

impl Timespec {
    pub const fn from_ms(ms: u64) -> Self {
        Self {
            sec: (ms / 1000) as i64,
            nsec: (ms % 1000 * 1_000_000) as i64,
        }
    }
    pub fn as_ns(self) -> i128 {
        self.sec as i128 * 1_000_000_000 + self.nsec as i128
    }
    /// The time `ns` nanoseconds (non-negative) after this one.
    pub fn plus_ns(self, ns: i64) -> Self {
        let t = self.as_ns() + ns as i128;
        Self {
            sec: (t / 1_000_000_000) as i64,
            nsec: (t % 1_000_000_000) as i64,
        }
    }
}

pub fn clock_gettime(clock: usize) -> Result<Timespec, Errno> {
    let mut t = Timespec::default();
    // SAFETY: the kernel writes one struct timespec to `t`.
    unsafe { syscall!(nr::CLOCK_GETTIME, clock, &mut t as *mut Timespec)? };
    Ok(t)
}

/// Nanoseconds on CLOCK_MONOTONIC (0 if the clock fails).
pub fn now_ns() -> i128 {
    clock_gettime(CLOCK_MONOTONIC).map_or(0, Timespec::as_ns)
}

/// Sleeps for `t` (EINTR is returned as is; the remainder is not asked for).
pub fn nanosleep(t: &Timespec) -> Result<usize, Errno> {
    // SAFETY: the kernel reads one struct timespec.
    unsafe { syscall!(nr::NANOSLEEP, t as *const Timespec, 0) }
}

/// Sleeps on `clock` for `t`, or until `t` with [`TIMER_ABSTIME`] in `flags`. Unlike
/// glibc's wrapper this returns the errno the kernel gave (as `Err`).
pub fn clock_nanosleep(clock: usize, flags: usize, t: &Timespec) -> Result<usize, Errno> {
    // SAFETY: the kernel reads one struct timespec.
    unsafe { syscall!(nr::CLOCK_NANOSLEEP, clock, flags, t as *const Timespec, 0) }
}

pub fn sched_yield() -> Result<usize, Errno> {
    // SAFETY: no arguments.
    unsafe { syscall!(nr::SCHED_YIELD) }
}

/// Fills `buf` with random bytes; returns how many were written.
pub fn getrandom(buf: &mut [u8], flags: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    unsafe { syscall!(nr::GETRANDOM, buf.as_mut_ptr(), buf.len(), flags) }
}
