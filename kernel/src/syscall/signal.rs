//! rt_sigaction, rt_sigprocmask, rt_sigpending, rt_sigsuspend, rt_sigtimedwait,
//! sigaltstack, rt_sigreturn, kill, tkill, tgkill: argument checks in Linux's order, then the
//! task's signal state (`proc::signal`) and delivery (`proc::deliver`).

use alloc::sync::Arc;

use super::Errno;
use crate::arch::aarch64::trap::TrapFrame;
use crate::arch::aarch64::uaccess::{copy_to_user, read_user, write_user};
use crate::proc::deliver;
use crate::proc::sched::{me, WaitQueue};
use crate::proc::signal::{bit, AltStack, Cause, SigAction, SigInfo, SigSet, UNBLOCKABLE};
use crate::proc::task::{self, Task};
use crate::uapi::*;

/// sizeof(sigset_t) in the kernel's ABI: the only size these calls accept.
const SIGSET_SIZE: u64 = 8;

fn valid(sig: u64) -> Result<u32, Errno> {
    if (1..=NSIG as u64).contains(&sig) {
        Ok(sig as u32)
    } else {
        Err(EINVAL)
    }
}

pub fn rt_sigaction(sig: u64, act: u64, oact: u64, size: u64) -> Result<u64, Errno> {
    if size != SIGSET_SIZE {
        return Err(EINVAL);
    }
    let new = if act != 0 {
        Some(read_user::<SigAction>(act as usize).map_err(|_| EFAULT)?)
    } else {
        None
    };
    let sig = valid(sig)?;
    if new.is_some() && bit(sig) & UNBLOCKABLE != 0 {
        return Err(EINVAL);
    }
    let t = me();
    // Every thread holds a copy of the process's actions (`proc::signal`); the lock
    // also makes one trampoline per process (lock order: `sigaction`, then `mm`).
    let _order = t.group.sigaction.lock();
    if new.is_some_and(|a| a.handler > SIG_IGN && a.flags & SA_RESTORER == 0) {
        deliver::trampoline()?;
    }
    let trampoline = t.signals.with(|s| s.trampoline);
    let old = t.signals.with(|s| s.action(sig));
    if let Some(a) = new {
        for th in task::threads_of(t.tgid) {
            th.signals.with(|s| {
                s.trampoline = trampoline;
                s.set_action(sig, a);
            });
        }
    }
    drop(_order);
    if oact != 0 {
        write_user(oact as usize, &old).map_err(|_| EFAULT)?;
    }
    Ok(0)
}

pub fn rt_sigprocmask(how: u64, set: u64, oset: u64, size: u64) -> Result<u64, Errno> {
    if size != SIGSET_SIZE {
        return Err(EINVAL);
    }
    let new = if set != 0 {
        Some(read_user::<SigSet>(set as usize).map_err(|_| EFAULT)? & !UNBLOCKABLE)
    } else {
        None
    };
    let t = me();
    let (old, now) = t.signals.with(|s| {
        let old = s.blocked;
        s.blocked = match (new, how) {
            (None, _) => old,
            (Some(n), SIG_BLOCK) => old | n,
            (Some(n), SIG_UNBLOCK) => old & !n,
            (Some(n), SIG_SETMASK) => n,
            _ => return Err(EINVAL),
        };
        Ok((old, s.blocked))
    })?;
    // A process signal this thread was told of and now blocks goes to another.
    if now & !old != 0 {
        deliver::retarget(&t);
    }
    if oset != 0 {
        write_user(oset as usize, &old).map_err(|_| EFAULT)?;
    }
    Ok(0)
}

/// The pending signals that are blocked (the others are being delivered): the
/// thread's and the process's.
pub fn rt_sigpending(set: u64, size: u64) -> Result<u64, Errno> {
    if size > SIGSET_SIZE {
        return Err(EINVAL);
    }
    let p = me().signals.with(|s| s.pending() & s.blocked);
    let bytes = p.to_le_bytes();
    copy_to_user(set as usize, &bytes[..size as usize]).map_err(|_| EFAULT)?;
    Ok(0)
}

/// Where rt_sigsuspend and rt_sigtimedwait sleep: `deliver::send` wakes the task
/// itself.
static SUSPENDED: WaitQueue = WaitQueue::new();

/// Sleep with `mask` as the mask until a signal is delivered; the old mask comes
/// back when the handler returns (it is the mask saved in the frame).
pub fn rt_sigsuspend(mask: u64, size: u64) -> Result<u64, Errno> {
    if size != SIGSET_SIZE {
        return Err(EINVAL);
    }
    let mask = read_user::<SigSet>(mask as usize).map_err(|_| EFAULT)? & !UNBLOCKABLE;
    let t = me();
    t.signals.with(|s| {
        s.saved_mask = Some(s.blocked);
        s.blocked = mask;
    });
    SUSPENDED.wait_until(|| t.signals.interrupted());
    Err(ERESTARTNOHAND)
}

/// rt_sigtimedwait: take a pending signal of `set` (its siginfo to `info` if not
/// NULL) and return its number, waiting for one until the timeout (NULL: none);
/// EAGAIN when the time is up, EINTR when another signal comes first.
pub fn rt_sigtimedwait(set: u64, info: u64, tmo: u64, size: u64) -> Result<u64, Errno> {
    if size != SIGSET_SIZE {
        return Err(EINVAL);
    }
    let set = read_user::<SigSet>(set as usize).map_err(|_| EFAULT)? & !UNBLOCKABLE;
    let deadline = super::misc::deadline_after(tmo)?;
    let t = me();
    let mut got = t.signals.with(|s| s.take_from(set));
    if got.is_none() && deadline > crate::time::uptime_ns() {
        SUSPENDED.wait_until_deadline(deadline, || {
            t.signals.with(|s| s.pending() & set != 0) || t.signals.interrupted()
        });
        got = t.signals.with(|s| s.take_from(set));
    }
    let Some(si) = got else {
        return Err(if t.signals.interrupted() {
            EINTR
        } else {
            EAGAIN
        });
    };
    if info != 0 {
        copy_to_user(info as usize, &si.encode()).map_err(|_| EFAULT)?;
    }
    Ok(si.signo as u64)
}

pub fn sigaltstack(frame: &TrapFrame, ss: u64, oss: u64) -> Result<u64, Errno> {
    let sp = frame.sp_el0;
    let new = if ss != 0 {
        Some(read_user::<AltStack>(ss as usize).map_err(|_| EFAULT)?)
    } else {
        None
    };
    let t = me();
    let old = t.signals.with(|s| -> Result<AltStack, Errno> {
        let old = s.altstack.report(sp);
        if let Some(n) = new {
            if s.altstack.contains(sp) {
                return Err(EPERM);
            }
            s.altstack = deliver::checked_altstack(&n)?;
        }
        Ok(old)
    })?;
    if oss != 0 {
        write_user(oss as usize, &old).map_err(|_| EFAULT)?;
    }
    Ok(0)
}

pub fn rt_sigreturn(frame: &mut TrapFrame) -> Result<u64, Errno> {
    Ok(deliver::sigreturn(frame))
}

/// The processes `pid` names for kill (a thread id names its process): ESRCH if
/// none. There are no process groups here: 0 names the caller's process (every
/// process is alone in its group), -1 every process but init and the caller's.
fn targets(pid: i64, me: &Task) -> Result<alloc::vec::Vec<Arc<Task>>, Errno> {
    let own = || task::get(me.tgid).ok_or(ESRCH);
    match pid {
        0 => Ok(alloc::vec![own()?]),
        -1 => {
            let all = task::all_user()
                .into_iter()
                .filter(|t| t.is_leader() && t.tgid != 1 && t.tgid != me.tgid)
                .collect::<alloc::vec::Vec<_>>();
            if all.is_empty() {
                Err(ESRCH)
            } else {
                Ok(all)
            }
        }
        p if p > 0 && p <= u32::MAX as i64 => {
            let t = task::get(p as u32).ok_or(ESRCH)?;
            Ok(alloc::vec![task::get(t.tgid).ok_or(ESRCH)?])
        }
        // A process group: only the caller's own (its pid) exists.
        p if p.unsigned_abs() == me.tgid as u64 => Ok(alloc::vec![own()?]),
        _ => Err(ESRCH),
    }
}

/// The siginfo of a signal the caller sends.
fn from_me(sig: u32, code: i32) -> SigInfo {
    SigInfo {
        signo: sig,
        code,
        cause: Cause::Sender { pid: me().tgid },
    }
}

/// Every process runs as root here, so Linux's permission rule (same user, or
/// CAP_KILL) always allows a kill; signal 0 only checks that the targets exist.
pub fn kill(pid: u64, sig: u64) -> Result<u64, Errno> {
    if sig > NSIG as u64 {
        return Err(EINVAL);
    }
    // pid_t is an int: the upper half of the register is not part of it.
    let targets = targets(pid as i32 as i64, &me())?;
    if sig != 0 {
        for t in &targets {
            deliver::send_process(t, from_me(sig as u32, SI_USER));
        }
    }
    Ok(0)
}

/// tgkill(tgid, tid, sig): to thread `tid` of process `tgid`; tkill is tgkill
/// without the process (`tgid` None).
pub fn tgkill(tgid: Option<u64>, tid: u64, sig: u64) -> Result<u64, Errno> {
    let (tid, tgid) = (tid as i32, tgid.map(|g| g as i32));
    if tid <= 0 || tgid.is_some_and(|g| g <= 0) || sig > NSIG as u64 {
        return Err(EINVAL);
    }
    let t = task::get(tid as u32).ok_or(ESRCH)?;
    if tgid.is_some_and(|g| g as u32 != t.tgid) {
        return Err(ESRCH);
    }
    if sig != 0 {
        deliver::send(&t, from_me(sig as u32, SI_TKILL));
    }
    Ok(0)
}
