//! getpid and friends, clone (fork), execve, wait4, getrusage, sched_yield, resource
//! limits, set_tid_address, set_robust_list.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::files::user_path;
use super::Errno;
use crate::arch::aarch64::trap::TrapFrame;
use crate::arch::aarch64::uaccess::{read_user, strncpy_from_user, write_user};
use crate::proc::process;
use crate::proc::sched::{self, me};
use crate::proc::task::Task;
use crate::uapi::*;

const MAX_ARGS: usize = 256;
const MAX_ARG_LEN: usize = 4096;

pub fn getpid() -> Result<u64, Errno> {
    Ok(me().pid as u64)
}

pub fn getppid() -> Result<u64, Errno> {
    Ok(me().parent.load(Ordering::Acquire) as u64)
}

pub fn set_tid_address(ptr: u64) -> Result<u64, Errno> {
    let t = me();
    t.clear_child_tid.store(ptr, Ordering::Relaxed);
    Ok(t.pid as u64)
}

/// The robust-futex list matters only when threads die holding futexes; processes
/// here have one thread, so the list is accepted (with Linux's size check) and unused.
pub fn set_robust_list(len: u64) -> Result<u64, Errno> {
    if len != 24 {
        return Err(EINVAL);
    }
    Ok(0)
}

pub fn clone(
    frame: &TrapFrame,
    flags: u64,
    newsp: u64,
    ptid: u64,
    tls: u64,
    ctid: u64,
) -> Result<u64, Errno> {
    if flags & (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_VFORK) != 0 {
        // Threads and vfork are not supported.
        return Err(EINVAL);
    }
    process::fork(frame, flags, newsp, ptid, tls, ctid).map(|pid| pid as u64)
}

/// A NULL-terminated array of strings (argv, envp); NULL itself is an empty array.
fn user_strings(ptr: u64) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if ptr == 0 {
        return Ok(out);
    }
    loop {
        let p: u64 = read_user(ptr as usize + out.len() * 8).map_err(|_| EFAULT)?;
        if p == 0 {
            return Ok(out);
        }
        if out.len() == MAX_ARGS {
            return Err(E2BIG);
        }
        let mut buf = alloc::vec![0u8; MAX_ARG_LEN];
        let n = strncpy_from_user(&mut buf, p as usize)
            .map_err(|_| EFAULT)?
            .ok_or(E2BIG)?;
        buf.truncate(n);
        out.push(buf);
    }
}

pub fn execve(frame: &mut TrapFrame, path: u64, argv: u64, envp: u64) -> Result<u64, Errno> {
    let path: String = user_path(path)?;
    let argv = user_strings(argv)?;
    let envp = user_strings(envp)?;
    let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
    let envp: Vec<&[u8]> = envp.iter().map(Vec::as_slice).collect();
    process::exec(frame, &path, &argv, &envp).map(|()| 0)
}

/// wait4: the child is reaped even if writing the status or rusage faults (as Linux).
pub fn wait4(pid: u64, status: u64, options: u64, rusage: u64) -> Result<u64, Errno> {
    let Some(child) = process::wait(pid as i64, options)? else {
        return Ok(0);
    };
    if status != 0 {
        write_user(status as usize, &child.exit_status.load(Ordering::Acquire))
            .map_err(|_| EFAULT)?;
    }
    if rusage != 0 {
        write_user(rusage as usize, &usage_of(&child)).map_err(|_| EFAULT)?;
    }
    Ok(child.pid as u64)
}

/// struct rusage: ru_utime and ru_stime (timevals), then 14 longs from ru_maxrss;
/// ru_minflt is the fifth of them (index 8 of 18 words).
fn usage_of(t: &Task) -> [u64; 18] {
    let mut r = [0u64; 18];
    let us = t.ticks.load(Ordering::Relaxed) * 1_000_000 / crate::time::TICK_HZ;
    r[0] = us / 1_000_000;
    r[1] = us % 1_000_000;
    r[8] = t.minflt.load(Ordering::Relaxed);
    r
}

pub fn getrusage(who: u64, ptr: u64) -> Result<u64, Errno> {
    const SELF: i64 = 0;
    const CHILDREN: i64 = -1;
    const THREAD: i64 = 1;
    let r = match who as i64 {
        SELF | THREAD => usage_of(&me()),
        // Reaped children's usage is not accumulated.
        CHILDREN => [0; 18],
        _ => return Err(EINVAL),
    };
    write_user(ptr as usize, &r).map_err(|_| EFAULT)?;
    Ok(0)
}

pub fn sched_yield() -> Result<u64, Errno> {
    sched::schedule();
    Ok(0)
}

/// Limits read as Linux's defaults (8 MiB stack, the rest unlimited); setting is allowed
/// and has no effect.
pub fn prlimit64(pid: u64, resource: u64, old: u64) -> Result<u64, Errno> {
    const RLIMIT_STACK: u64 = 3;
    const RLIM_NLIMITS: u64 = 16;
    if pid != 0 && pid != me().pid as u64 {
        return Err(ESRCH);
    }
    if resource >= RLIM_NLIMITS {
        return Err(EINVAL);
    }
    if old != 0 {
        let lim = if resource == RLIMIT_STACK {
            [8u64 << 20, u64::MAX]
        } else {
            [u64::MAX, u64::MAX]
        };
        write_user(old as usize, &lim).map_err(|_| EFAULT)?;
    }
    Ok(0)
}
