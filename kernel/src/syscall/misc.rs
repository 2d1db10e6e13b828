//! clock_gettime, nanosleep, clock_nanosleep, getrandom, uname, reboot.

use super::Errno;
use crate::arch::aarch64::uaccess::{copy_to_user, is_user_range, read_user, write_user};
use crate::proc::sched::{self, me};
use crate::time;
use crate::uapi::*;

const NSEC: u64 = 1_000_000_000;

pub fn clock_gettime(clock: u64, tp: u64) -> Result<u64, Errno> {
    let ns = match clock {
        // Real time starts at the epoch when the machine starts (there is no RTC here).
        CLOCK_REALTIME
        | CLOCK_REALTIME_COARSE
        | CLOCK_MONOTONIC
        | CLOCK_MONOTONIC_RAW
        | CLOCK_MONOTONIC_COARSE
        | CLOCK_BOOTTIME => time::uptime_ns(),
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => {
            me().ticks.load(core::sync::atomic::Ordering::Relaxed) * (NSEC / time::TICK_HZ)
        }
        _ => return Err(EINVAL),
    };
    write_user(tp as usize, &[ns / NSEC, ns % NSEC]).map_err(|_| EFAULT)?;
    Ok(0)
}

/// The struct timespec at `ptr` as nanoseconds: EFAULT if unreadable, EINVAL unless
/// 0 <= tv_sec and 0 <= tv_nsec < 10^9 (Linux's timespec64_valid).
pub(super) fn read_timespec(ptr: u64) -> Result<u64, Errno> {
    let [sec, nsec]: [i64; 2] = read_user(ptr as usize).map_err(|_| EFAULT)?;
    if sec < 0 || !(0..NSEC as i64).contains(&nsec) {
        return Err(EINVAL);
    }
    Ok((sec as u64)
        .saturating_mul(NSEC)
        .saturating_add(nsec as u64))
}

/// Where nanosleep sleeps: only the tick and signals (`proc::deliver::send`) wake it.
static NAPPING: sched::WaitQueue = sched::WaitQueue::new();

/// The uptime a relative timeout at `ptr` (a struct timespec) ends at, u64::MAX
/// for NULL (no timeout): EFAULT, EINVAL as `read_timespec`.
pub(super) fn deadline_after(ptr: u64) -> Result<u64, Errno> {
    if ptr == 0 {
        return Ok(u64::MAX);
    }
    Ok(time::uptime_ns().saturating_add(read_timespec(ptr)?))
}

/// nanosleep: CLOCK_MONOTONIC, relative. A signal ends it early: the time left goes
/// to `rem` (if not NULL) and the call fails with EINTR once the handler has run.
pub fn nanosleep(req: u64, rem: u64) -> Result<u64, Errno> {
    let ns = read_timespec(req)?;
    let deadline = time::uptime_ns().saturating_add(ns);
    let t = me();
    if !NAPPING.wait_until_deadline(deadline, || t.signals.interrupted()) {
        return Ok(0);
    }
    if rem != 0 {
        let left = deadline.saturating_sub(time::uptime_ns());
        write_user(rem as usize, &[left / NSEC, left % NSEC]).map_err(|_| EFAULT)?;
    }
    Err(ERESTARTNOHAND)
}

/// clock_nanosleep, checked in Linux's order: the clock (EINVAL if unknown, EOPNOTSUPP
/// if it cannot be slept on), then the timespec (EFAULT, EINVAL). Every clock that can
/// be slept on reads the same counter here (real time starts at the epoch with the
/// machine), so an absolute time is a deadline on it; one already past returns at
/// once. Flags other than TIMER_ABSTIME are ignored, as Linux does. The remainder is
/// never written (see `nanosleep`).
pub fn clock_nanosleep(clock: u64, flags: u64, req: u64, _rem: u64) -> Result<u64, Errno> {
    // clockid_t is an int: the upper half of the register is not part of it.
    match clock as u32 as u64 {
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME | CLOCK_TAI | CLOCK_REALTIME_ALARM
        | CLOCK_BOOTTIME_ALARM => {}
        // Clocks Linux cannot sleep on.
        CLOCK_THREAD_CPUTIME_ID
        | CLOCK_MONOTONIC_RAW
        | CLOCK_REALTIME_COARSE
        | CLOCK_MONOTONIC_COARSE => return Err(EOPNOTSUPP),
        // Linux sleeps on the process's CPU clock, which a single-threaded process
        // does not advance while it sleeps: that sleep would never end, so it is
        // refused (a deadline already reached returns at once, as on Linux).
        CLOCK_PROCESS_CPUTIME_ID => {
            let ns = read_timespec(req)?;
            let cpu =
                me().ticks.load(core::sync::atomic::Ordering::Relaxed) * (NSEC / time::TICK_HZ);
            let reached = if flags & TIMER_ABSTIME != 0 {
                ns <= cpu
            } else {
                ns == 0
            };
            return if reached { Ok(0) } else { Err(EINVAL) };
        }
        _ => return Err(EINVAL),
    }
    let ns = read_timespec(req)?;
    let deadline = if flags & TIMER_ABSTIME != 0 {
        ns
    } else {
        time::uptime_ns().saturating_add(ns)
    };
    sched::sleep_until(deadline);
    Ok(0)
}

pub fn getrandom(buf: u64, len: u64, flags: u64) -> Result<u64, Errno> {
    const GRND_NONBLOCK: u64 = 1;
    const GRND_RANDOM: u64 = 2;
    const GRND_INSECURE: u64 = 4;
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_RANDOM | GRND_INSECURE) == GRND_RANDOM | GRND_INSECURE
    {
        return Err(EINVAL);
    }
    // Linux serves at most INT_MAX bytes a call, and returns what it copied before a
    // fault: each chunk is checked and copied on its own.
    let len = len.min(i32::MAX as u64) as usize;
    if !is_user_range(buf as usize, 0) {
        return Err(EFAULT);
    }
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len());
        time::fill_random(&mut chunk[..n]);
        if copy_to_user(buf as usize + done, &chunk[..n]).is_err() {
            return partial(done, EFAULT);
        }
        done += n;
    }
    Ok(len as u64)
}

pub fn uname(buf: u64) -> Result<u64, Errno> {
    let mut u = [0u8; 6 * 65];
    for (i, s) in [
        "Linux",
        "contkernel",
        "6.12.0-contkernel",
        "#1 SMP",
        "aarch64",
        "(none)",
    ]
    .iter()
    .enumerate()
    {
        u[i * 65..i * 65 + s.len()].copy_from_slice(s.as_bytes());
    }
    copy_to_user(buf as usize, &u).map_err(|_| EFAULT)?;
    Ok(0)
}

pub fn reboot(magic1: u64, magic2: u64, cmd: u64) -> Result<u64, Errno> {
    const MAGIC1: u64 = 0xfee1_dead;
    const MAGIC2: [u64; 4] = [672274793, 85072278, 369367448, 537993216];
    const RESTART: u64 = 0x0123_4567;
    const HALT: u64 = 0xcdef_0123;
    const POWER_OFF: u64 = 0x4321_fedc;
    const CAD_ON: u64 = 0x89ab_cdef;
    const CAD_OFF: u64 = 0;
    if magic1 as u32 as u64 != MAGIC1 || !MAGIC2.contains(&(magic2 as u32 as u64)) {
        return Err(EINVAL);
    }
    match cmd as u32 as u64 {
        RESTART | HALT | POWER_OFF => crate::proc::process::shutdown(
            0,
            format_args!("reboot({cmd:#x}) by pid {}", me().pid()),
        ),
        CAD_ON | CAD_OFF => Ok(0),
        _ => Err(EINVAL),
    }
}
