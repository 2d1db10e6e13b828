//! Signals: rt_sigaction with the kernel's `struct sigaction`, the mask calls,
//! sigaltstack, kill/tgkill, and the arm64 signal frame a handler receives (siginfo,
//! ucontext with the sigcontext and its context records), so that tests can read and
//! change what rt_sigreturn restores.

use crate::sys::{nr, Errno};
use crate::syscall;

pub const SIGINT: u32 = 2;
pub const SIGILL: u32 = 4;
pub const SIGTRAP: u32 = 5;
pub const SIGBUS: u32 = 7;
pub const SIGKILL: u32 = 9;
pub const SIGUSR1: u32 = 10;
pub const SIGSEGV: u32 = 11;
pub const SIGUSR2: u32 = 12;
pub const SIGPIPE: u32 = 13;
pub const SIGTERM: u32 = 15;
pub const SIGCHLD: u32 = 17;
pub const SIGSTOP: u32 = 19;

pub const SA_SIGINFO: u64 = 0x4;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;
pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

pub const SIG_BLOCK: usize = 0;
pub const SIG_UNBLOCK: usize = 1;
pub const SIG_SETMASK: usize = 2;

pub const SS_ONSTACK: u32 = 1;
pub const SS_DISABLE: u32 = 2;

pub const SI_USER: i32 = 0;
pub const SI_TKILL: i32 = -6;
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
pub const BUS_ADRALN: i32 = 1;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;

/// The mask bit of signal `sig`.
pub const fn bit(sig: u32) -> u64 {
    1 << (sig - 1)
}

/// The kernel's `struct sigaction` on arm64.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// A handler as the kernel calls it: signal, siginfo, ucontext.
pub type Handler = extern "C" fn(u32, &SigInfo, &mut UContext);

impl SigAction {
    pub fn handler(h: Handler, flags: u64) -> Self {
        SigAction {
            handler: h as *const () as usize as u64,
            flags,
            ..Self::default()
        }
    }
}

/// `siginfo_t` (128 bytes): signo, errno, code, then the union.
#[repr(C)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    pad: i32,
    pub fields: [u64; 14],
}

impl SigInfo {
    /// si_addr (faults).
    pub fn addr(&self) -> u64 {
        self.fields[0]
    }
    /// si_pid (kill, SIGCHLD).
    pub fn pid(&self) -> u32 {
        self.fields[0] as u32
    }
    /// si_status (SIGCHLD).
    pub fn status(&self) -> i32 {
        self.fields[1] as i32
    }
}

/// `stack_t`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Stack {
    pub sp: u64,
    pub flags: u32,
    pub size: u64,
}

/// arm64's `struct ucontext`, with `struct sigcontext` at its 16-aligned end.
#[repr(C, align(16))]
pub struct UContext {
    pub flags: u64,
    pub link: u64,
    pub stack: Stack,
    pub sigmask: u64,
    /// The rest of 1024 bits of sigset, and the padding to the 16-aligned sigcontext.
    unused: [u8; 128],
    pub fault_address: u64,
    pub regs: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
    pad: u64,
    pub reserved: [u8; 4096],
}

const _: () = assert!(core::mem::size_of::<UContext>() == 4560);
const _: () = assert!(core::mem::offset_of!(UContext, fault_address) == 176);

/// The FP/SIMD record's magic, the first context record the kernel writes.
pub const FPSIMD_MAGIC: u32 = 0x4650_8001;

impl UContext {
    /// Magic and size of the context record at byte `off` of `reserved`.
    pub fn record(&self, off: usize) -> (u32, u32) {
        let w = |o: usize| u32::from_le_bytes(self.reserved[o..o + 4].try_into().unwrap());
        (w(off), w(off + 4))
    }

    pub fn set_record_magic(&mut self, off: usize, magic: u32) {
        self.reserved[off..off + 4].copy_from_slice(&magic.to_le_bytes());
    }

    /// V register `n` of the FP/SIMD record (the first record).
    pub fn vreg(&self, n: usize) -> u128 {
        let o = 16 + 16 * n;
        u128::from_le_bytes(self.reserved[o..o + 16].try_into().unwrap())
    }
}

core::arch::global_asm!(
    ".global rt_sigreturn_restorer",
    "rt_sigreturn_restorer:",
    "    mov x8, #139",
    "    svc #0",
);

extern "C" {
    /// `mov x8, #139; svc #0`: a restorer to pass with SA_RESTORER.
    pub fn rt_sigreturn_restorer();
}

/// rt_sigaction(sig, act, old): the previous action.
pub fn sigaction(sig: u32, act: Option<&SigAction>) -> Result<SigAction, Errno> {
    let mut old = SigAction::default();
    let p = act.map_or(core::ptr::null(), |a| a as *const SigAction);
    // SAFETY: the kernel reads one struct sigaction from `p` and writes one to `old`;
    // a handler it records runs only on signals, with the frame this module reads.
    unsafe { syscall!(nr::RT_SIGACTION, sig, p, &mut old as *mut SigAction, 8)? };
    Ok(old)
}

/// Installs `h` for `sig` with `flags`.
pub fn on(sig: u32, h: Handler, flags: u64) -> Result<SigAction, Errno> {
    sigaction(sig, Some(&SigAction::handler(h, flags)))
}

/// Sets `sig` to SIG_DFL or SIG_IGN.
pub fn set(sig: u32, handler: u64) -> Result<SigAction, Errno> {
    sigaction(
        sig,
        Some(&SigAction {
            handler,
            ..SigAction::default()
        }),
    )
}

/// rt_sigprocmask(how, set): the old mask.
pub fn sigprocmask(how: usize, set: Option<u64>) -> Result<u64, Errno> {
    let mut old = 0u64;
    let p = set.as_ref().map_or(core::ptr::null(), |s| s as *const u64);
    // SAFETY: the kernel reads and writes one 8-byte sigset.
    unsafe { syscall!(nr::RT_SIGPROCMASK, how, p, &mut old as *mut u64, 8)? };
    Ok(old)
}

pub fn sigpending() -> Result<u64, Errno> {
    let mut set = 0u64;
    // SAFETY: the kernel writes one 8-byte sigset.
    unsafe { syscall!(nr::RT_SIGPENDING, &mut set as *mut u64, 8)? };
    Ok(set)
}

/// rt_sigsuspend(mask): returns when a handler has run (always EINTR).
pub fn sigsuspend(mask: u64) -> Errno {
    // SAFETY: the kernel reads one 8-byte sigset.
    match unsafe { syscall!(nr::RT_SIGSUSPEND, &mask as *const u64, 8) } {
        Ok(_) => Errno(0),
        Err(e) => e,
    }
}

/// rt_sigtimedwait(set, info, timeout in ms or None): the signal taken.
pub fn sigtimedwait(set: u64, info: &mut SigInfo, timeout_ms: Option<u64>) -> Result<u32, Errno> {
    let ts = timeout_ms.map(|ms| [(ms / 1000) as i64, ((ms % 1000) * 1_000_000) as i64]);
    let tp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const [i64; 2]);
    // SAFETY: the kernel reads the set and the timespec and writes one siginfo.
    let sig = unsafe {
        syscall!(
            nr::RT_SIGTIMEDWAIT,
            &set as *const u64,
            info as *mut SigInfo,
            tp,
            8
        )?
    };
    Ok(sig as u32)
}

/// An all-zero siginfo to receive one.
impl Default for SigInfo {
    fn default() -> Self {
        SigInfo {
            signo: 0,
            errno: 0,
            code: 0,
            pad: 0,
            fields: [0; 14],
        }
    }
}

/// sigaltstack(new, old): the previous alternate stack.
pub fn sigaltstack(new: Option<&Stack>) -> Result<Stack, Errno> {
    let mut old = Stack::default();
    let p = new.map_or(core::ptr::null(), |s| s as *const Stack);
    // SAFETY: the kernel reads and writes one stack_t; the stack it names is memory
    // the caller keeps mapped while it is installed.
    unsafe { syscall!(nr::SIGALTSTACK, p, &mut old as *mut Stack)? };
    Ok(old)
}

pub fn kill(pid: isize, sig: u32) -> Result<usize, Errno> {
    // SAFETY: no memory arguments.
    unsafe { syscall!(nr::KILL, pid, sig) }
}

pub fn tgkill(tgid: isize, tid: isize, sig: u32) -> Result<usize, Errno> {
    // SAFETY: no memory arguments.
    unsafe { syscall!(nr::TGKILL, tgid, tid, sig) }
}

/// Sends `sig` to the calling process.
pub fn raise(sig: u32) -> Result<usize, Errno> {
    kill(crate::proc::getpid()? as isize, sig)
}
