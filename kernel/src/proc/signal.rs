//! Signals: what a process has asked for (`SigState`: actions, blocked mask, pending
//! set, alternate stack), and the signal frame arm64 Linux lays out on the user stack
//! (`struct rt_sigframe`, `arch/arm64/kernel/signal.c`), written on delivery and read
//! back, checked, by rt_sigreturn. Nothing here touches the machine: `proc::process`
//! copies frames to and from user memory and switches the registers, and the host
//! tests below run the layout and the checks.
//!
//! # Protocol
//!
//! A task's `Signals` is one lock over its `SigState` and a flag, `attention`, that
//! mirrors "something to do on the way back to EL0" (a deliverable signal, a system
//! call to restart or a mask to restore) so that the common return path reads one
//! atomic. Every change goes through `Signals::with`, which recomputes the flag before
//! the lock is released. Senders (another CPU's `kill`, a child's exit) take the lock
//! to queue a signal and then wake the target, which re-checks its sleep condition
//! (`sched`'s wake-ups may be spurious); the target alone dequeues, changes its mask,
//! actions and alternate stack. Lock order: a task's signal lock is never held while
//! taking another task's, nor when waking.
//!
//! Threads: each has its own mask and pending set (signals sent to it: tgkill,
//! faults, SIGPIPE); the actions belong to the process and every thread holds a
//! copy, which rt_sigaction writes in all of them under the process's `sigaction`
//! lock (`proc::task::Group`). A signal sent to the process (kill, SIGCHLD) is
//! pending for the process (`SharedPending`, Linux's `signal->shared_pending`, one
//! per process, shared by its threads' states) until a thread that does not block
//! it takes it: the sender tells one such thread (Linux's complete_signal); if every
//! thread blocks it, it waits there until one unblocks it. A thread takes its own
//! signals first, then the process's; sigpending reports both.
//! `SharedPending`'s set is an atomic, read without a lock by the flag's recomputation
//! (a thread's signal lock held); it changes only under its `info` lock, taken under
//! a thread's signal lock (never the other way round).
//!
//! Standard and real-time signals alike are one bit each: a signal sent while one of
//! the same number is pending is merged into it (Linux queues real-time ones).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sync::SpinLock;
use crate::uapi::*;

/// A set of signals, bit `sig - 1` for signal `sig` (the kernel's `sigset_t` on arm64).
pub type SigSet = u64;

pub const fn bit(sig: u32) -> SigSet {
    1 << (sig - 1)
}

/// Signals no mask blocks and no action changes.
pub const UNBLOCKABLE: SigSet = bit(SIGKILL) | bit(SIGSTOP);
/// Signals the CPU raises for the instruction that runs: dequeued first, as Linux does.
const SYNCHRONOUS: SigSet =
    bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGTRAP) | bit(SIGFPE) | bit(SIGSYS);

/// The kernel's `struct sigaction` on arm64 (the one rt_sigaction copies).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: SigSet,
}

/// The flags rt_sigaction keeps; unknown bits read back as 0, which is how programs
/// learn that a flag is unsupported (Linux 5.11+).
pub const SA_KNOWN: u64 = SA_NOCLDSTOP
    | SA_NOCLDWAIT
    | SA_SIGINFO
    | SA_RESTORER
    | SA_ONSTACK
    | SA_RESTART
    | SA_NODEFER
    | SA_RESETHAND;

/// What a signal does when its action is SIG_DFL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    /// End the process (Linux's "terminate" and "core": no core files here).
    Terminate,
    Ignore,
    /// Stop or continue: there is no job control here, so these are ignored.
    Stop,
}

pub fn default_action(sig: u32) -> Default {
    match sig {
        SIGCHLD | SIGURG | SIGWINCH | SIGCONT => Default::Ignore,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Default::Stop,
        _ => Default::Terminate,
    }
}

/// Who sent a signal, or why the kernel did: the union part of `siginfo_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cause {
    /// kill, tgkill, or the kernel (SIGPIPE): `si_pid`, `si_uid`.
    #[default]
    None,
    Sender {
        pid: u32,
    },
    /// A fault: `si_addr`, and the ESR for the frame's `esr_context`.
    Fault {
        addr: u64,
        esr: u64,
    },
    /// SIGCHLD: the child and its exit code or signal.
    Child {
        pid: u32,
        status: i32,
    },
}

/// A signal's `siginfo_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SigInfo {
    pub signo: u32,
    pub code: i32,
    pub cause: Cause,
}

pub const SIGINFO_SIZE: usize = 128;

impl SigInfo {
    /// The 128 bytes of arm64's `siginfo_t`: signo, errno, code, then the union at 16.
    pub fn encode(&self) -> [u8; SIGINFO_SIZE] {
        let mut b = [0u8; SIGINFO_SIZE];
        put(&mut b, 0, self.signo);
        put(&mut b, 8, self.code as u32);
        match self.cause {
            Cause::None => {}
            Cause::Sender { pid } => put(&mut b, 16, pid),
            Cause::Fault { addr, .. } => put64(&mut b, 16, addr),
            Cause::Child { pid, status } => {
                put(&mut b, 16, pid);
                put(&mut b, 24, status as u32);
            }
        }
        b
    }
}

/// `stack_t`: an alternate signal stack (`ss_size` 0 with SS_DISABLE when none).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub flags: u32,
    pub pad: u32,
    pub size: u64,
}

impl AltStack {
    pub const NONE: AltStack = AltStack {
        sp: 0,
        flags: SS_DISABLE,
        pad: 0,
        size: 0,
    };

    pub fn enabled(&self) -> bool {
        self.flags & SS_DISABLE == 0 && self.size != 0
    }

    /// Whether `sp` is on this stack (Linux's on_sig_stack: the stack grows down, so
    /// its top belongs to it and its base does not).
    pub fn contains(&self, sp: u64) -> bool {
        self.enabled() && sp > self.sp && sp - self.sp <= self.size
    }

    /// What sigaltstack reports as the current stack for user stack pointer `sp`.
    pub fn report(&self, sp: u64) -> AltStack {
        let flags = if !self.enabled() {
            SS_DISABLE
        } else if self.contains(sp) {
            SS_ONSTACK
        } else {
            self.flags & SS_AUTODISARM
        };
        AltStack { flags, ..*self }
    }
}

/// A system call that a signal interrupted: the errno it returned (ERESTARTSYS or
/// ERESTARTNOHAND) and its first argument, which the return value overwrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restart {
    pub errno: Errno,
    pub orig_x0: u64,
}

impl Restart {
    /// Linux's table (`arch/arm64/kernel/signal.c`, do_signal): with a handler about
    /// to run (its flags given), whether the call restarts or returns EINTR; with no
    /// handler it always restarts.
    pub fn restarts(&self, handler_flags: Option<u64>) -> bool {
        match handler_flags {
            None => true,
            Some(flags) => self.errno == ERESTARTSYS && flags & SA_RESTART != 0,
        }
    }
}

/// The signals sent to a process that no thread has taken yet (module doc).
pub struct SharedPending {
    /// Which are pending: changed under `info`'s lock, read without it.
    set: AtomicU64,
    info: SpinLock<PerSignal<SigInfo>>,
}

impl SharedPending {
    fn new() -> Arc<Self> {
        Arc::new(SharedPending {
            set: AtomicU64::new(0),
            info: SpinLock::new(per_signal(SigInfo::default())),
        })
    }

    fn set(&self) -> SigSet {
        self.set.load(Ordering::Acquire)
    }

    /// Queue `info`; false if one of its number is pending already (merged).
    fn queue(&self, info: SigInfo) -> bool {
        let mut slots = self.info.lock();
        let b = bit(info.signo);
        if self.set() & b != 0 {
            return false;
        }
        slots[info.signo as usize - 1] = info;
        self.set.fetch_or(b, Ordering::AcqRel);
        true
    }

    /// Take `sig` if it is still pending (another thread may have taken it).
    fn take(&self, sig: u32) -> Option<SigInfo> {
        let slots = self.info.lock();
        let b = bit(sig);
        (self.set.fetch_and(!b, Ordering::AcqRel) & b != 0).then(|| slots[sig as usize - 1])
    }
}

/// One `T` per signal, on the heap.
type PerSignal<T> = Box<[T; NSIG as usize]>;

/// A `PerSignal` of `v`, built on the heap: a `SigState` with its tables inline was
/// 4 KiB, moved by value through fork and clone, and their frames with it (fork and
/// `Task::build` reached 17 KiB of a 16 KiB kernel stack, and wrote into the frame
/// below it).
fn per_signal<T: Copy>(v: T) -> PerSignal<T> {
    alloc::vec![v; NSIG as usize]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("NSIG entries"))
}

/// A task's signal state. Who changes which field: see the module's protocol.
pub struct SigState {
    actions: PerSignal<SigAction>,
    pub blocked: SigSet,
    pending: SigSet,
    info: PerSignal<SigInfo>,
    /// The process's pending signals, shared by its threads.
    shared: Arc<SharedPending>,
    pub altstack: AltStack,
    /// rt_sigsuspend's mask to put back once a signal has been handled.
    pub saved_mask: Option<SigSet>,
    /// The system call returning now was interrupted.
    pub restart: Option<Restart>,
    /// The sigreturn trampoline for handlers installed without SA_RESTORER (Linux
    /// uses the vDSO's); 0 until the first such rt_sigaction maps it.
    pub trampoline: u64,
    /// This is pid 1: a signal whose action is SIG_DFL is dropped (Linux's
    /// SIGNAL_UNKILLABLE), faults aside.
    init: bool,
}

/// What `dequeue` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Run the handler of this action.
    Handler(SigInfo, SigAction),
    /// SIG_DFL whose default ends the process.
    Terminate(SigInfo),
}

impl SigState {
    pub fn new(init: bool) -> Self {
        SigState {
            actions: per_signal(SigAction::default()),
            blocked: 0,
            pending: 0,
            info: per_signal(SigInfo::default()),
            shared: SharedPending::new(),
            altstack: AltStack::NONE,
            saved_mask: None,
            restart: None,
            trampoline: 0,
            init,
        }
    }

    /// The child of fork: the same actions, mask and alternate stack, nothing pending
    /// (for the thread or the new process).
    pub fn fork(&self) -> Self {
        SigState {
            actions: self.actions.clone(),
            blocked: self.blocked,
            altstack: self.altstack,
            trampoline: self.trampoline,
            ..SigState::new(false)
        }
    }

    /// A new thread of the same process: the actions (every thread holds a copy,
    /// which rt_sigaction writes in all of them) and the mask; nothing pending, and
    /// no alternate stack (Linux's copy_process for CLONE_VM); the process's pending
    /// set shared.
    pub fn new_thread(&self) -> Self {
        SigState {
            actions: self.actions.clone(),
            blocked: self.blocked,
            trampoline: self.trampoline,
            shared: self.shared.clone(),
            ..SigState::new(self.init)
        }
    }

    /// Whether `sig` is blocked by this thread (where a process-directed signal
    /// goes: a thread that does not block it).
    pub fn blocks(&self, sig: u32) -> bool {
        self.blocked & bit(sig) != 0
    }

    /// exec: handlers go back to SIG_DFL (ignored signals stay ignored, with no
    /// flags), the alternate stack and the trampoline go with the old address space;
    /// the mask and pending signals (the thread's and the process's) stay.
    pub fn exec(&mut self) {
        for a in self.actions.iter_mut() {
            let ignore = a.handler == SIG_IGN;
            *a = SigAction::default();
            if ignore {
                a.handler = SIG_IGN;
            }
        }
        self.altstack = AltStack::NONE;
        self.trampoline = 0;
    }

    pub fn action(&self, sig: u32) -> SigAction {
        self.actions[sig as usize - 1]
    }

    /// rt_sigaction's change (sig already checked: not SIGKILL or SIGSTOP). Setting a
    /// pending signal to be ignored discards it (POSIX).
    pub fn set_action(&mut self, sig: u32, mut act: SigAction) {
        act.flags &= SA_KNOWN;
        act.mask &= !UNBLOCKABLE;
        self.actions[sig as usize - 1] = act;
        if self.ignores(sig) {
            self.pending &= !bit(sig);
            self.shared.take(sig);
        }
    }

    /// Whether `sig` is dropped on arrival: its action ignores it. (A blocked signal
    /// is still queued: its action may change before it is unblocked.)
    fn ignores(&self, sig: u32) -> bool {
        let a = self.action(sig);
        match a.handler {
            SIG_IGN => sig != SIGKILL,
            SIG_DFL => self.init || default_action(sig) != Default::Terminate,
            _ => false,
        }
    }

    /// Queue a signal sent to the process, as this thread sees it (Linux checks
    /// the target's mask: a blocked signal is never ignored, its action may change);
    /// false if it was dropped (ignored, or one is pending already).
    pub fn send_shared(&mut self, info: SigInfo) -> bool {
        if self.blocked & bit(info.signo) == 0 && self.ignores(info.signo) {
            return false;
        }
        self.shared.queue(info)
    }

    /// Queue a signal for this thread; false if it was dropped (ignored, or one is
    /// pending already).
    pub fn send(&mut self, info: SigInfo) -> bool {
        let b = bit(info.signo);
        if self.pending & b != 0 || (self.blocked & b == 0 && self.ignores(info.signo)) {
            return false;
        }
        self.pending |= b;
        self.info[info.signo as usize - 1] = info;
        true
    }

    /// Queue a fault's signal so that it is delivered now: if it is blocked or
    /// ignored, or if this is pid 1 and its action is SIG_DFL, its action becomes
    /// SIG_DFL and it is unblocked (Linux's force_sig_info), so that it kills.
    /// Returns whether a handler will run.
    pub fn force(&mut self, info: SigInfo) -> bool {
        let b = bit(info.signo);
        let handler = self.action(info.signo).handler;
        if self.blocked & b != 0 || handler == SIG_IGN || handler == SIG_DFL {
            self.actions[info.signo as usize - 1].handler = SIG_DFL;
            self.blocked &= !b;
            return false;
        }
        self.pending |= b;
        self.info[info.signo as usize - 1] = info;
        true
    }

    /// The thread's pending signals and the process's (sigpending's union).
    pub fn pending(&self) -> SigSet {
        self.pending | self.shared.set()
    }

    /// The process's pending signals alone.
    pub fn shared_pending(&self) -> SigSet {
        self.shared.set()
    }

    /// A signal is pending that the mask lets through: blocking calls return.
    pub fn deliverable(&self) -> bool {
        self.pending() & !self.blocked != 0
    }

    /// Take pending signal `sig`: the thread's own, else the process's; `None` if
    /// another thread took the process's first.
    fn take(&mut self, sig: u32) -> Option<SigInfo> {
        if self.pending & bit(sig) != 0 {
            self.pending &= !bit(sig);
            return Some(self.info[sig as usize - 1]);
        }
        self.shared.take(sig)
    }

    /// Take the next signal to act on: the thread's own before the process's (as
    /// Linux's dequeue_signal), synchronous ones first, then the lowest number.
    /// Ignored ones are discarded on the way (their action may have changed since
    /// they were queued).
    pub fn dequeue(&mut self) -> Option<Delivery> {
        loop {
            let own = self.pending & !self.blocked;
            let ready = if own != 0 {
                own
            } else {
                self.shared.set() & !self.blocked
            };
            if ready == 0 {
                return None;
            }
            let pick = if ready & SYNCHRONOUS != 0 {
                ready & SYNCHRONOUS
            } else {
                ready
            };
            let sig = pick.trailing_zeros() + 1;
            let Some(info) = self.take(sig) else {
                continue;
            };
            let act = self.action(sig);
            match act.handler {
                SIG_IGN => continue,
                SIG_DFL if self.ignores(sig) => continue,
                SIG_DFL => return Some(Delivery::Terminate(info)),
                _ => return Some(Delivery::Handler(info, act)),
            }
        }
    }

    /// rt_sigtimedwait: take the lowest pending signal of `set`, whatever its action
    /// and mask (the caller receives it instead of a handler).
    pub fn take_from(&mut self, set: SigSet) -> Option<SigInfo> {
        loop {
            let own = self.pending & set;
            let ready = if own != 0 {
                own
            } else {
                self.shared.set() & set
            };
            if ready == 0 {
                return None;
            }
            if let Some(info) = self.take(ready.trailing_zeros() + 1) {
                return Some(info);
            }
        }
    }

    /// The handler of `sig` is about to run with action `act`: block its mask and
    /// the signal itself (unless SA_NODEFER), and reset it if SA_RESETHAND.
    pub fn enter_handler(&mut self, sig: u32, act: &SigAction) {
        self.blocked |= act.mask;
        if act.flags & SA_NODEFER == 0 {
            self.blocked |= bit(sig);
        }
        self.blocked &= !UNBLOCKABLE;
        if act.flags & SA_RESETHAND != 0 {
            self.actions[sig as usize - 1] = SigAction::default();
        }
    }

    /// Whether the way back to EL0 has work to do.
    fn needs_attention(&self) -> bool {
        self.deliverable() || self.restart.is_some() || self.saved_mask.is_some()
    }
}

/// A task's signals: the state under its lock, and the flag the return path reads.
pub struct Signals {
    state: SpinLock<SigState>,
    attention: AtomicBool,
}

impl Signals {
    pub fn new(state: SigState) -> Self {
        Signals {
            attention: AtomicBool::new(state.needs_attention()),
            state: SpinLock::new(state),
        }
    }

    /// Run `f` on the state under the lock, then update the flag.
    pub fn with<R>(&self, f: impl FnOnce(&mut SigState) -> R) -> R {
        let mut s = self.state.lock();
        let r = f(&mut s);
        self.attention.store(s.needs_attention(), Ordering::Release);
        r
    }

    /// Cheap check for the return path: something may need doing.
    pub fn attention(&self) -> bool {
        self.attention.load(Ordering::Acquire)
    }

    /// A blocking system call should return (ERESTARTSYS or EINTR).
    pub fn interrupted(&self) -> bool {
        self.attention() && self.with(|s| s.deliverable())
    }
}

/// The registers a signal frame saves: x0-x30, sp, pc, pstate (`struct user_pt_regs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UserRegs {
    pub x: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
}

/// The FP/SIMD registers (`struct user_fpsimd_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FpRegs {
    pub v: [u128; 32],
    pub fpsr: u32,
    pub fpcr: u32,
}

// The frame's layout (arm64 uapi `asm/sigcontext.h`, `asm/ucontext.h`): siginfo (128
// bytes), then the ucontext: uc_flags, uc_link, uc_stack (24), uc_sigmask (8), padding
// to 1024 bits of sigset, then the 16-aligned sigcontext: fault_address, regs[31], sp,
// pc, pstate, and 4096 bytes of context records.
const UC: usize = SIGINFO_SIZE;
const UC_STACK: usize = UC + 16;
const UC_SIGMASK: usize = UC + 40;
const MCONTEXT: usize = UC + 176;
const FAULT_ADDRESS: usize = MCONTEXT;
const REGS: usize = MCONTEXT + 8;
const SP: usize = REGS + 31 * 8;
const PC: usize = SP + 8;
const PSTATE: usize = PC + 8;
const RESERVED: usize = MCONTEXT + 288;
const RESERVED_SIZE: usize = 4096;
/// sizeof(struct rt_sigframe).
pub const FRAME_SIZE: usize = RESERVED + RESERVED_SIZE;
/// Offsets of siginfo and ucontext in the frame: x1 and x2 of an SA_SIGINFO handler.
pub const INFO_OFFSET: u64 = 0;
pub const UC_OFFSET: u64 = UC as u64;

/// Context record magics and sizes (`_aarch64_ctx`: u32 magic, u32 size).
const FPSIMD_MAGIC: u32 = 0x4650_8001;
const FPSIMD_SIZE: usize = 8 + 8 + 32 * 16;
const ESR_MAGIC: u32 = 0x4553_5201;
const ESR_SIZE: usize = 16;

const _: () = assert!(FRAME_SIZE == 4688 && RESERVED == 592);

/// PSTATE bits rt_sigreturn may not set (SPSR_EL1_AARCH64_RES0_BITS), and the mode and
/// interrupt-mask bits it checks (Arm ARM "SPSR_EL1"): M[4:0] must say EL0t with
/// AArch64, and D, A, I, F must be clear.
const PSTATE_RES0: u64 =
    0xffff_ffff_0000_0000 | (0b11 << 26) | (0b11 << 22) | (0xff << 13) | (1 << 5);
const PSTATE_MODE: u64 = 0x1f;
const PSTATE_DAIF: u64 = 0xf << 6;
/// PSTATE.SS: single-step is not offered to user space here.
const PSTATE_SS: u64 = 1 << 21;

/// Where a handler's frame goes: below `sp`, or at the top of the alternate stack if
/// the action asks for it and the task is not on it already. Returns the frame's
/// address (16-aligned) and that of the frame record (x29, x30) above it, which makes
/// the handler's call chain continue into the interrupted code.
pub fn frame_place(sp: u64, act: &SigAction, alt: &AltStack) -> Option<(u64, u64)> {
    let top = if act.flags & SA_ONSTACK != 0 && alt.enabled() && !alt.contains(sp) {
        alt.sp.checked_add(alt.size)?
    } else {
        sp
    };
    let record = top.checked_sub(16)? & !15;
    let frame = record.checked_sub(FRAME_SIZE as u64)?;
    Some((frame, record))
}

/// What a frame holds besides the registers.
pub struct FrameParts<'a> {
    pub info: &'a SigInfo,
    /// The mask rt_sigreturn puts back.
    pub mask: SigSet,
    /// The alternate stack as sigaltstack would report it.
    pub altstack: AltStack,
}

/// Write the frame for `regs`/`fp` into `buf`.
pub fn encode_frame(buf: &mut [u8; FRAME_SIZE], regs: &UserRegs, fp: &FpRegs, p: &FrameParts) {
    buf.fill(0);
    buf[..SIGINFO_SIZE].copy_from_slice(&p.info.encode());
    put64(buf, UC_STACK, p.altstack.sp);
    put(buf, UC_STACK + 8, p.altstack.flags);
    put64(buf, UC_STACK + 16, p.altstack.size);
    put64(buf, UC_SIGMASK, p.mask);
    let fault = match p.info.cause {
        Cause::Fault { addr, esr } => Some((addr, esr)),
        _ => None,
    };
    put64(buf, FAULT_ADDRESS, fault.map_or(0, |f| f.0));
    for (i, x) in regs.x.iter().enumerate() {
        put64(buf, REGS + 8 * i, *x);
    }
    put64(buf, SP, regs.sp);
    put64(buf, PC, regs.pc);
    put64(buf, PSTATE, regs.pstate);
    let mut at = RESERVED;
    put(buf, at, FPSIMD_MAGIC);
    put(buf, at + 4, FPSIMD_SIZE as u32);
    put(buf, at + 8, fp.fpsr);
    put(buf, at + 12, fp.fpcr);
    for (i, v) in fp.v.iter().enumerate() {
        buf[at + 16 + 16 * i..at + 32 + 16 * i].copy_from_slice(&v.to_le_bytes());
    }
    at += FPSIMD_SIZE;
    if let Some((_, esr)) = fault {
        put(buf, at, ESR_MAGIC);
        put(buf, at + 4, ESR_SIZE as u32);
        put64(buf, at + 8, esr);
        at += ESR_SIZE;
    }
    // The terminating record: magic 0, size 0 (already zero).
    debug_assert!(at + 16 <= RESERVED + RESERVED_SIZE);
}

/// Why rt_sigreturn refused a frame (the process gets SIGSEGV).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// PSTATE names another exception level, AArch32, or masks interrupts.
    Pstate,
    /// A context record with a bad size, an unknown magic, or no FP/SIMD record.
    Records,
}

/// What rt_sigreturn restores.
#[derive(Debug, PartialEq, Eq)]
pub struct Restored {
    pub regs: UserRegs,
    pub fp: FpRegs,
    pub mask: SigSet,
    pub altstack: AltStack,
}

/// Read back a frame, as Linux's restore_sigframe does: the registers, a PSTATE that
/// returns to EL0 with nothing masked (the mode and DAIF bits are never trusted: a
/// frame cannot raise the exception level or mask what the kernel relies on), and the
/// context records, of which the FP/SIMD one is required.
pub fn decode_frame(buf: &[u8; FRAME_SIZE]) -> Result<Restored, BadFrame> {
    let mut regs = UserRegs::default();
    for (i, x) in regs.x.iter_mut().enumerate() {
        *x = get64(buf, REGS + 8 * i);
    }
    regs.sp = get64(buf, SP);
    regs.pc = get64(buf, PC);
    let pstate = get64(buf, PSTATE) & !PSTATE_RES0;
    if pstate & (PSTATE_MODE | PSTATE_DAIF) != 0 {
        return Err(BadFrame::Pstate);
    }
    regs.pstate = pstate & !PSTATE_SS;
    let mut fp = None;
    let mut at = RESERVED;
    let end = RESERVED + RESERVED_SIZE;
    loop {
        if end - at < 8 {
            return Err(BadFrame::Records);
        }
        let (magic, size) = (get(buf, at), get(buf, at + 4) as usize);
        if magic == 0 {
            if size != 0 {
                return Err(BadFrame::Records);
            }
            break;
        }
        if size < 16 || size % 16 != 0 || size > end - at {
            return Err(BadFrame::Records);
        }
        match magic {
            FPSIMD_MAGIC if size == FPSIMD_SIZE && fp.is_none() => {
                let mut f = FpRegs {
                    fpsr: get(buf, at + 8),
                    fpcr: get(buf, at + 12),
                    ..FpRegs::default()
                };
                for (i, v) in f.v.iter_mut().enumerate() {
                    let o = at + 16 + 16 * i;
                    *v = u128::from_le_bytes(buf[o..o + 16].try_into().unwrap());
                }
                fp = Some(f);
            }
            // Written for faults, ignored on the way back (as Linux).
            ESR_MAGIC => {}
            _ => return Err(BadFrame::Records),
        }
        at += size;
    }
    Ok(Restored {
        regs,
        fp: fp.ok_or(BadFrame::Records)?,
        mask: get64(buf, UC_SIGMASK) & !UNBLOCKABLE,
        altstack: AltStack {
            sp: get64(buf, UC_STACK),
            flags: get(buf, UC_STACK + 8),
            pad: 0,
            size: get64(buf, UC_STACK + 16),
        },
    })
}

fn put(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn get64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> UserRegs {
        let mut r = UserRegs::default();
        for (i, x) in r.x.iter_mut().enumerate() {
            *x = 0x1111_0000_0000_0000 * (i as u64 % 7) + i as u64;
        }
        r.sp = 0x7fff_f000;
        r.pc = 0x40_1234;
        r.pstate = 0x6000_0000; // Z and C
        r
    }

    fn fp() -> FpRegs {
        let mut f = FpRegs {
            fpsr: 0x0800_0010,
            fpcr: 0x0300_0000,
            ..FpRegs::default()
        };
        for (i, v) in f.v.iter_mut().enumerate() {
            *v = (u128::MAX / 37).wrapping_mul(i as u128 + 1);
        }
        f
    }

    fn frame(info: &SigInfo) -> [u8; FRAME_SIZE] {
        let mut b = [0u8; FRAME_SIZE];
        let parts = FrameParts {
            info,
            mask: bit(SIGUSR1) | bit(SIGKILL),
            altstack: AltStack::NONE,
        };
        encode_frame(&mut b, &regs(), &fp(), &parts);
        b
    }

    #[test]
    fn frame_round_trips_every_register() {
        let info = SigInfo {
            signo: SIGSEGV,
            code: SEGV_ACCERR,
            cause: Cause::Fault {
                addr: 0xdead_0008,
                esr: 0x9200_004f,
            },
        };
        let b = frame(&info);
        let r = decode_frame(&b).unwrap();
        assert_eq!(r.regs, regs());
        assert_eq!(r.fp, fp());
        assert_eq!(r.mask, bit(SIGUSR1), "SIGKILL is never restored as blocked");
        assert_eq!(r.altstack, AltStack::NONE);
        // Linux's layout: si_addr at 16, fault_address, the FPSIMD and ESR records.
        assert_eq!(get64(&b, 16), 0xdead_0008);
        assert_eq!(get64(&b, FAULT_ADDRESS), 0xdead_0008);
        assert_eq!(get(&b, 592), FPSIMD_MAGIC);
        assert_eq!(get(&b, 596), 528);
        assert_eq!(get(&b, 592 + 528), ESR_MAGIC);
        assert_eq!(get(&b, 592 + 544), 0, "terminator");
    }

    #[test]
    fn hostile_pstate_is_refused() {
        let info = SigInfo {
            signo: SIGUSR1,
            ..SigInfo::default()
        };
        for bad in [0b0101u64, 0b0100, 0b10000, 1 << 6, 1 << 7, 1 << 8, 1 << 9] {
            let mut b = frame(&info);
            put64(&mut b, PSTATE, 0x6000_0000 | bad);
            assert_eq!(decode_frame(&b), Err(BadFrame::Pstate), "{bad:#x}");
        }
        let mut b = frame(&info);
        put64(
            &mut b,
            PSTATE,
            0x6000_0000 | PSTATE_SS | (1 << 40) | (1 << 22),
        );
        assert_eq!(decode_frame(&b).unwrap().regs.pstate, 0x6000_0000);
    }

    #[test]
    fn corrupt_records_are_refused() {
        let info = SigInfo {
            signo: SIGUSR1,
            ..SigInfo::default()
        };
        let cases: [(usize, u32); 5] = [
            (RESERVED, 0x1234_5678),   // unknown magic
            (RESERVED + 4, 520),       // FPSIMD of the wrong size
            (RESERVED + 4, 8),         // smaller than a header
            (RESERVED + 4, 0x10_0000), // past the end
            (RESERVED + 528 + 4, 16),  // terminator with a size
        ];
        for (at, v) in cases {
            let mut b = frame(&info);
            put(&mut b, at, v);
            assert_eq!(decode_frame(&b), Err(BadFrame::Records), "{at} {v:#x}");
        }
        let mut b = frame(&info);
        put(&mut b, RESERVED, 0);
        put(&mut b, RESERVED + 4, 0);
        assert_eq!(decode_frame(&b), Err(BadFrame::Records), "no FPSIMD record");
    }

    #[test]
    fn records_chain_without_end_is_refused() {
        let mut b = [0u8; FRAME_SIZE];
        let mut at = RESERVED;
        while at + ESR_SIZE <= RESERVED + RESERVED_SIZE {
            put(&mut b, at, ESR_MAGIC);
            put(&mut b, at + 4, ESR_SIZE as u32);
            at += ESR_SIZE;
        }
        assert_eq!(decode_frame(&b), Err(BadFrame::Records));
    }

    #[test]
    fn frame_goes_on_the_alternate_stack_once() {
        let act = SigAction {
            handler: 0x1000,
            flags: SA_ONSTACK,
            ..SigAction::default()
        };
        let alt = AltStack {
            sp: 0x10_0000,
            flags: 0,
            pad: 0,
            size: 0x4000,
        };
        let (f, rec) = frame_place(0x7fff_f008, &act, &alt).unwrap();
        assert_eq!(rec, 0x10_4000 - 16);
        assert_eq!(f, rec - FRAME_SIZE as u64);
        assert!(f % 16 == 0);
        // Already on it: nested frames go below the current sp.
        let (f2, _) = frame_place(f, &act, &alt).unwrap();
        assert_eq!(f2, f - 16 - FRAME_SIZE as u64);
        assert!(frame_place(100, &SigAction::default(), &AltStack::NONE).is_none());
    }

    #[test]
    fn masks_defaults_and_pending() {
        let mut s = SigState::new(false);
        let usr1 = SigInfo {
            signo: SIGUSR1,
            code: SI_USER,
            cause: Cause::Sender { pid: 7 },
        };
        // Default SIGCHLD is dropped, default SIGUSR1 kills.
        assert!(!s.send(SigInfo {
            signo: SIGCHLD,
            ..usr1
        }));
        assert!(s.send(usr1));
        assert!(!s.send(usr1), "a second one merges into the pending one");
        assert_eq!(s.dequeue(), Some(Delivery::Terminate(usr1)));
        // Blocked: pending, not deliverable, until unblocked.
        let act = SigAction {
            handler: 0x4000,
            flags: SA_RESETHAND,
            ..SigAction::default()
        };
        s.set_action(SIGUSR1, act);
        s.blocked = bit(SIGUSR1);
        assert!(s.send(usr1));
        assert!(!s.deliverable() && s.dequeue().is_none());
        s.blocked = 0;
        assert_eq!(s.dequeue(), Some(Delivery::Handler(usr1, act)));
        s.enter_handler(SIGUSR1, &act);
        assert_eq!(s.blocked, bit(SIGUSR1));
        assert_eq!(s.action(SIGUSR1), SigAction::default(), "SA_RESETHAND");
        // Ignoring a pending signal discards it.
        s.blocked = bit(SIGUSR2);
        assert!(s.send(SigInfo {
            signo: SIGUSR2,
            ..usr1
        }));
        s.set_action(
            SIGUSR2,
            SigAction {
                handler: SIG_IGN,
                ..SigAction::default()
            },
        );
        assert_eq!(s.pending(), 0);
        // Synchronous signals come first.
        s.blocked = 0;
        s.set_action(SIGUSR1, act);
        s.set_action(SIGSEGV, act);
        assert!(s.send(usr1));
        assert!(s.force(SigInfo {
            signo: SIGSEGV,
            ..usr1
        }));
        assert!(matches!(s.dequeue(), Some(Delivery::Handler(i, _)) if i.signo == SIGSEGV));
    }

    #[test]
    fn process_signals_wait_for_a_thread_that_takes_them() {
        let act = SigAction {
            handler: 0x4000,
            ..SigAction::default()
        };
        let mut a = SigState::new(false);
        a.set_action(SIGUSR1, act);
        a.set_action(SIGUSR2, act);
        a.blocked = bit(SIGUSR1);
        let mut b = a.new_thread();
        let usr = |signo| SigInfo {
            signo,
            code: SI_USER,
            cause: Cause::Sender { pid: 7 },
        };
        // Every thread blocks it: pending for the process, seen by both, taken by none.
        assert!(a.send_shared(usr(SIGUSR1)));
        assert!(!b.send_shared(usr(SIGUSR1)), "a second one merges");
        assert_eq!((a.pending(), b.pending()), (bit(SIGUSR1), bit(SIGUSR1)));
        assert!(!a.deliverable() && !b.deliverable());
        assert_eq!((a.dequeue(), b.dequeue()), (None, None));
        // The thread that unblocks it takes it, once.
        b.blocked = 0;
        assert!(b.deliverable());
        assert_eq!(b.dequeue(), Some(Delivery::Handler(usr(SIGUSR1), act)));
        assert_eq!((a.pending(), b.pending()), (0, 0));
        a.blocked = 0;
        assert_eq!(a.dequeue(), None);
        // A thread's own signals come before the process's.
        assert!(a.send_shared(usr(SIGUSR1)));
        assert!(a.send(usr(SIGUSR2)));
        assert_eq!(a.dequeue(), Some(Delivery::Handler(usr(SIGUSR2), act)));
        assert_eq!(b.take_from(bit(SIGUSR1)), Some(usr(SIGUSR1)));
        // Ignoring it discards it for the process; a fork's child starts with none.
        b.blocked = bit(SIGUSR2);
        assert!(b.send_shared(usr(SIGUSR2)));
        let child = a.fork();
        assert_eq!(child.pending(), 0);
        let ign = SigAction {
            handler: SIG_IGN,
            ..SigAction::default()
        };
        a.set_action(SIGUSR2, ign);
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn init_drops_what_it_does_not_handle() {
        let mut s = SigState::new(true);
        let term = SigInfo {
            signo: SIGTERM,
            ..SigInfo::default()
        };
        assert!(!s.send(term));
        assert!(!s.send(SigInfo {
            signo: SIGKILL,
            ..term
        }));
        // A fault still kills: force resets to SIG_DFL and says no handler runs.
        assert!(!s.force(SigInfo {
            signo: SIGSEGV,
            ..term
        }));
    }

    #[test]
    fn exec_resets_handlers_but_keeps_ignored() {
        let mut s = SigState::new(false);
        let h = SigAction {
            handler: 0x4000,
            flags: SA_SIGINFO,
            ..SigAction::default()
        };
        s.set_action(SIGUSR1, h);
        s.set_action(
            SIGUSR2,
            SigAction {
                handler: SIG_IGN,
                flags: SA_RESTART,
                ..SigAction::default()
            },
        );
        s.blocked = bit(SIGINT);
        s.exec();
        assert_eq!(s.action(SIGUSR1), SigAction::default());
        assert_eq!(s.action(SIGUSR2).handler, SIG_IGN);
        assert_eq!(s.action(SIGUSR2).flags, 0);
        assert_eq!(s.blocked, bit(SIGINT));
    }

    #[test]
    fn restart_table() {
        let sys = Restart {
            errno: ERESTARTSYS,
            orig_x0: 3,
        };
        let nohand = Restart {
            errno: ERESTARTNOHAND,
            ..sys
        };
        assert!(sys.restarts(None) && nohand.restarts(None));
        assert!(sys.restarts(Some(SA_RESTART)));
        assert!(!sys.restarts(Some(0)));
        assert!(!nohand.restarts(Some(SA_RESTART)));
    }
}
