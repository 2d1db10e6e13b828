//! The machine half of signals (`proc::signal` has the state and the frame layout):
//! sending to a task, delivery on the way back to EL0 (restart or EINTR for an
//! interrupted system call, the frame written to the user stack, the registers set
//! for the handler), rt_sigreturn, and the signals of faults.
//!
//! The FP/SIMD registers hold the user's values while the kernel runs (it is built
//! soft-float: `arch::aarch64::context`), so delivery saves them straight from the
//! CPU into the frame and rt_sigreturn loads them back from it.

use alloc::sync::Arc;
use alloc::vec;

use super::process;
use super::sched::{self, me};
use super::signal::*;
use super::task::Task;
use crate::arch::aarch64::context::{self, FpState};
use crate::arch::aarch64::trap::TrapFrame;
use crate::arch::aarch64::uaccess::{copy_from_user, copy_to_user, write_user};
use crate::mm::vma::VmProt;
use crate::mm::{VirtAddr, PAGE_SIZE};
use crate::uapi::*;

/// Queue `info` for task `t` and wake it, so that a blocking call it sleeps in
/// returns (a sleeping task re-checks its condition on any wake-up). Kernel
/// threads take no signals.
pub fn send(t: &Arc<Task>, info: SigInfo) {
    if t.is_user() && t.signals.with(|s| s.send(info)) {
        sched::wake(t);
    }
}

/// Whether `o` has not exited (a zombie leader or a dead thread takes no signals).
fn alive(o: &Task) -> bool {
    !matches!(
        o.state(),
        super::task::State::Zombie | super::task::State::Dead
    )
}

/// Queue a process-directed `info` (kill, a child's exit) for process `t`: pending
/// for the process until a thread takes it (`proc::signal`'s protocol). The first
/// thread, leader first, that is alive and does not block it is told and woken
/// (Linux's complete_signal); if every thread blocks it, it waits for one to unblock
/// it.
pub fn send_process(t: &Arc<Task>, info: SigInfo) {
    if !t.is_user() {
        return;
    }
    let threads = super::task::threads_of(t.tgid);
    let pick = threads
        .iter()
        .filter(|o| alive(o))
        .find(|o| !o.signals.with(|s| s.blocks(info.signo)));
    // Queued through the chosen thread's state, which recomputes its flag.
    if pick.unwrap_or(t).signals.with(|s| s.send_shared(info)) {
        if let Some(p) = pick {
            sched::wake(p);
        }
    }
}

/// Thread `t` stopped taking some of its process's pending signals (it blocked
/// them, or it is exiting): the other threads recompute their flags, and those that
/// can take one are woken (Linux's retarget_shared_pending).
pub fn retarget(t: &Task) {
    if t.signals.with(|s| s.shared_pending()) == 0 {
        return;
    }
    for o in super::task::threads_of(t.tgid)
        .iter()
        .filter(|o| o.pid() != t.pid() && alive(o))
    {
        if o.signals.with(|s| s.deliverable()) {
            sched::wake(o);
        }
    }
}

/// The way back to EL0 found `attention` set: restart or fail an interrupted system
/// call, run the default action or set up a handler's frame for each deliverable
/// signal (at most one per signal number: nested frames, as Linux), and put back
/// rt_sigsuspend's mask if no handler took it.
pub fn deliver(frame: &mut TrapFrame) {
    let t = me();
    let mut restart = t.signals.with(|s| s.restart.take());
    for _ in 0..NSIG {
        let Some(d) = t.signals.with(|s| s.dequeue()) else {
            break;
        };
        let (info, act) = match d {
            Delivery::Terminate(info) if t.doomed.load(core::sync::atomic::Ordering::Acquire) => {
                // Another thread's exec ends this one alone.
                drop(t);
                process::end_thread(signaled(info.signo))
            }
            Delivery::Terminate(info) => {
                drop(t);
                process::exit(signaled(info.signo))
            }
            Delivery::Handler(info, act) => (info, act),
        };
        if let Some(r) = restart.take() {
            if r.restarts(Some(act.flags)) {
                rewind(frame, r);
            } else {
                frame.x[0] = (-(EINTR as i64)) as u64;
            }
        }
        if setup_frame(&t, frame, &info, &act).is_err() {
            drop(t);
            process::kill_for_fault(frame, SIGSEGV, "cannot write the signal frame")
        }
    }
    if let Some(r) = restart {
        rewind(frame, r);
    }
    t.signals.with(|s| {
        if let Some(m) = s.saved_mask.take() {
            s.blocked = m;
        }
    });
}

/// Make the system call run again: its first argument back in x0, the PC on the SVC.
fn rewind(frame: &mut TrapFrame, r: Restart) {
    frame.x[0] = r.orig_x0;
    frame.elr -= 4;
}

/// Write the frame for the handler of `info` on the user stack and point the
/// registers at the handler (Linux's setup_rt_frame and setup_return): x0 the signal,
/// x1 and x2 the siginfo and ucontext (SA_SIGINFO), sp the frame, x29 the frame
/// record, x30 the restorer that makes rt_sigreturn.
fn setup_frame(t: &Task, frame: &mut TrapFrame, info: &SigInfo, act: &SigAction) -> Result<(), ()> {
    let (mask, alt, trampoline) = t.signals.with(|s| {
        (
            s.saved_mask.take().unwrap_or(s.blocked),
            s.altstack,
            s.trampoline,
        )
    });
    let (at, record) = frame_place(frame.sp_el0, act, &alt).ok_or(())?;
    let regs = UserRegs {
        x: frame.x,
        sp: frame.sp_el0,
        pc: frame.elr,
        pstate: frame.spsr,
    };
    let mut fp = FpState::default();
    context::save_fp(&mut fp);
    let fp = FpRegs {
        v: fp.q,
        fpsr: fp.fpsr as u32,
        fpcr: fp.fpcr as u32,
    };
    let mut buf = vec![0u8; FRAME_SIZE];
    let parts = FrameParts {
        info,
        mask,
        altstack: alt.report(frame.sp_el0),
    };
    encode_frame(buf.as_mut_slice().try_into().unwrap(), &regs, &fp, &parts);
    copy_to_user(at as usize, &buf).map_err(|_| ())?;
    write_user(record as usize, &[frame.x[29], frame.x[30]]).map_err(|_| ())?;
    frame.x[0] = info.signo as u64;
    if act.flags & SA_SIGINFO != 0 {
        frame.x[1] = at + INFO_OFFSET;
        frame.x[2] = at + UC_OFFSET;
    }
    frame.sp_el0 = at;
    frame.x[29] = record;
    frame.x[30] = if act.flags & SA_RESTORER != 0 {
        act.restorer
    } else {
        trampoline
    };
    frame.elr = act.handler;
    let onstack = alt.contains(at);
    t.signals.with(|s| {
        s.enter_handler(info.signo, act);
        if onstack && alt.flags & SS_AUTODISARM != 0 {
            s.altstack = AltStack::NONE;
        }
    });
    Ok(())
}

/// rt_sigreturn: restore what the frame at the user's sp holds. A frame that is
/// misaligned, unreadable, or fails `decode_frame`'s checks changes nothing and
/// earns SIGSEGV at the stack pointer, as on Linux. Returns the restored x0.
pub fn sigreturn(frame: &mut TrapFrame) -> u64 {
    let t = me();
    let sp = frame.sp_el0;
    let mut buf = vec![0u8; FRAME_SIZE];
    let restored = if !sp.is_multiple_of(16) || copy_from_user(&mut buf, sp as usize).is_err() {
        None
    } else {
        decode_frame(buf.as_slice().try_into().unwrap()).ok()
    };
    let Some(r) = restored else {
        drop(t);
        fault_signal(frame, SIGSEGV, segv_code(sp), sp);
        return frame.x[0];
    };
    frame.x = r.regs.x;
    frame.sp_el0 = r.regs.sp;
    frame.elr = r.regs.pc;
    frame.spsr = r.regs.pstate;
    let mut fp = FpState::default();
    fp.q = r.fp.v;
    fp.fpsr = r.fp.fpsr as u64;
    fp.fpcr = r.fp.fpcr as u64;
    context::load_fp(&fp);
    t.signals.with(|s| {
        s.blocked = r.mask;
        s.restart = None;
        // As Linux's restore_altstack: a stack the frame names that sigaltstack
        // would refuse is ignored, not an error.
        if !s.altstack.contains(r.regs.sp) {
            if let Ok(a) = checked_altstack(&r.altstack) {
                s.altstack = a;
            }
        }
    });
    frame.x[0]
}

/// sigaltstack's checks of a new stack: the flags (EINVAL) and the size (ENOMEM).
pub fn checked_altstack(ss: &AltStack) -> Result<AltStack, Errno> {
    match ss.flags & !SS_AUTODISARM {
        SS_DISABLE => Ok(AltStack::NONE),
        0 | SS_ONSTACK if ss.size < MINSIGSTKSZ => Err(ENOMEM),
        0 | SS_ONSTACK => Ok(AltStack {
            flags: ss.flags & SS_AUTODISARM,
            pad: 0,
            ..*ss
        }),
        _ => Err(EINVAL),
    }
}

/// The code of a SIGSEGV at `addr` that the address space could not resolve: no VMA
/// there (SEGV_MAPERR) or one that forbids the access (SEGV_ACCERR).
pub fn segv_code(addr: u64) -> i32 {
    let t = me();
    let mm = t.mm.lock();
    match mm.as_ref().and_then(|m| m.vmas.find(VirtAddr(addr))) {
        Some(_) => SEGV_ACCERR,
        None => SEGV_MAPERR,
    }
}

/// A fault's signal: delivered to the handler on the way back to EL0 if the process
/// has one and does not block it; otherwise the process dies with the kernel's
/// one-line report (Linux's force_sig_fault).
pub fn fault_signal(frame: &TrapFrame, sig: u32, code: i32, addr: u64) {
    let info = SigInfo {
        signo: sig,
        code,
        cause: Cause::Fault {
            addr,
            esr: frame.esr,
        },
    };
    if !me().signals.with(|s| s.force(info)) {
        process::kill_for_fault(frame, sig, code_name(sig, code))
    }
}

fn code_name(sig: u32, code: i32) -> &'static str {
    match (sig, code) {
        (SIGSEGV, SEGV_MAPERR) => "SEGV_MAPERR",
        (SIGSEGV, SEGV_ACCERR) => "SEGV_ACCERR",
        (SIGSEGV, SEGV_MTESERR) => "SEGV_MTESERR",
        (SIGBUS, BUS_ADRALN) => "BUS_ADRALN",
        (SIGBUS, BUS_OBJERR) => "BUS_OBJERR",
        _ => "",
    }
}

/// The instructions of the sigreturn trampoline: `mov x8, #139; svc #0`.
const TRAMPOLINE: [u32; 2] = [0xd280_1168, 0xd400_0001];
const _: () = assert!(SYS_RT_SIGRETURN == 139);

/// The address handlers installed without SA_RESTORER return to: a read-only,
/// executable page mapped into the caller at its first such rt_sigaction (Linux
/// returns through the vDSO's `__kernel_rt_sigreturn`; glibc on arm64 relies on it).
pub fn trampoline() -> Result<u64, Errno> {
    let t = me();
    if let Some(a) = t
        .signals
        .with(|s| (s.trampoline != 0).then_some(s.trampoline))
    {
        return Ok(a);
    }
    let mut mm = t.mm.lock();
    let mm = mm.as_mut().ok_or(EINVAL)?;
    let at = mm.mmap(
        0,
        PAGE_SIZE as u64,
        VmProt::new(true, false, true),
        MAP_PRIVATE | MAP_ANONYMOUS,
    )?;
    let mut code = [0u8; 8];
    code[..4].copy_from_slice(&TRAMPOLINE[0].to_le_bytes());
    code[4..].copy_from_slice(&TRAMPOLINE[1].to_le_bytes());
    mm.write_bytes(at, &code).map_err(|_| ENOMEM)?;
    t.signals.with(|s| s.trampoline = at.as_u64());
    Ok(at.as_u64())
}
