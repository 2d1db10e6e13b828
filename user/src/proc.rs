//! Processes: identity, fork (clone with fork semantics), execve, exit, wait4 and
//! its status decoding, getrusage, reboot.

use crate::sys::{nr, Errno};
use crate::syscall;
use core::ffi::{c_char, CStr};
use core::fmt;
use core::sync::atomic::AtomicI32;

/// Signal numbers used here.
pub const SIGCHLD: usize = 17;
pub const SIGBUS: u32 = 7;
pub const SIGSEGV: u32 = 11;

/// wait4 options.
pub const WNOHANG: usize = 1;

/// getrusage target: the calling process.
pub const RUSAGE_SELF: isize = 0;

/// Ends the calling thread (the process when it is the only one).
pub fn exit(code: i32) -> ! {
    // SAFETY: exit touches no user memory.
    let _ = unsafe { syscall!(nr::EXIT, code) };
    unreachable!("exit returned")
}

/// Ends every thread of the process.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group touches no user memory.
    let _ = unsafe { syscall!(nr::EXIT_GROUP, code) };
    unreachable!("exit_group returned")
}

pub fn getpid() -> Result<usize, Errno> {
    // SAFETY: no arguments.
    unsafe { syscall!(nr::GETPID) }
}

pub fn getppid() -> Result<usize, Errno> {
    // SAFETY: no arguments.
    unsafe { syscall!(nr::GETPPID) }
}

pub fn gettid() -> Result<usize, Errno> {
    // SAFETY: no arguments.
    unsafe { syscall!(nr::GETTID) }
}

/// Registers `tid` to be cleared (and futex-woken) when the thread exits while the
/// address space is shared; returns the caller's thread id.
pub fn set_tid_address(tid: &'static AtomicI32) -> Result<usize, Errno> {
    // SAFETY: the kernel may store to `tid` at any time: it is a 'static atomic.
    unsafe { syscall!(nr::SET_TID_ADDRESS, tid.as_ptr()) }
}

/// fork(): `clone(SIGCHLD, 0, 0, 0, 0)`. Returns 0 in the child and the child's pid
/// in the parent.
pub fn fork() -> Result<usize, Errno> {
    // SAFETY: without CLONE_VM the child gets a copy of the address space, so nothing
    // Rust references is shared; the runtime has no threads or locks to break.
    unsafe { syscall!(nr::CLONE, SIGCHLD, 0, 0, 0, 0) }
}

/// Forks a child that runs `child` and exits with its result; returns the child's
/// pid in the parent.
pub fn spawn(child: impl FnOnce() -> i32) -> Result<usize, Errno> {
    match fork()? {
        0 => exit_group(child()),
        pid => Ok(pid),
    }
}

/// Runs `child` in a forked child and waits for it: its exit code (the closure's
/// result) or the signal that killed it.
pub fn fork_wait(child: impl FnOnce() -> i32) -> Result<WaitStatus, Errno> {
    spawn(child).and_then(wait)
}

/// Runs `bad` in a child that must be killed by signal `sig` (not exit, not another
/// signal), saying first that the kill report the kernel prints next is expected, so
/// it does not read as a failure among the `TEST ... ok` lines.
pub fn expect_killed(prog: &str, sig: u32, bad: impl FnOnce()) -> Result<(), crate::test::Fail> {
    use crate::test::Context;
    crate::println!("{prog}: the next child is killed on purpose (signal {sig} expected)");
    let s = fork_wait(|| {
        bad();
        0
    })
    .ctx("fork/wait4")?;
    if !(s.signaled() && s.term_sig() == sig) || s.exited() {
        return Err(crate::test::Fail::new(format_args!(
            "child {s} (status {:#x}), want killed by signal {sig}",
            s.0
        )));
    }
    Ok(())
}

/// A deliberately bad access, for [`expect_segv`].
#[derive(Clone, Copy)]
pub enum BadAccess {
    /// A one-byte load from the address.
    Read(usize),
    /// A one-byte store to the address.
    Write(usize),
    /// A branch to the address.
    Jump(usize),
}

/// Makes `bad` in a child, which must be killed by SIGSEGV ([`expect_killed`]).
pub fn expect_segv(prog: &str, bad: BadAccess) -> Result<(), crate::test::Fail> {
    expect_killed(prog, SIGSEGV, || match bad {
        // SAFETY (all three): deliberately invalid, and only in the child that
        // `expect_killed` forks: the access faults and the kernel kills the child
        // before anything uses the value or runs at the target; if it did not, the
        // child exits at once and the check fails.
        BadAccess::Read(a) => {
            // SAFETY: see above.
            unsafe { core::ptr::read_volatile(a as *const u8) };
        }
        BadAccess::Write(a) => {
            // SAFETY: see above.
            unsafe { core::ptr::write_volatile(a as *mut u8, 0x55) };
        }
        BadAccess::Jump(a) => {
            // SAFETY: see above.
            unsafe { core::arch::asm!("br {0}", in(reg) a, options(noreturn)) }
        }
    })
}

/// `/proc/sys/debug/exception-trace` (Linux's switch, and this kernel's): whether the
/// kernel prints a report for each process it kills for a fault. A program whose
/// children fault by the hundred turns it off around them, having said so; this
/// kernel then prints one line counting the kills it did not report. Returns the
/// value before, to put back.
pub fn set_exception_trace(on: bool) -> Result<bool, Errno> {
    const PATH: &CStr = c"/proc/sys/debug/exception-trace";
    let mut old = [0u8; 8];
    let n = crate::fs::read_file(PATH, &mut old)?;
    crate::fs::write_file(PATH, if on { b"1\n" } else { b"0\n" })?;
    Ok(old[..n].first().is_some_and(|&b| b != b'0'))
}

/// Maximum number of arguments or environment strings [`execve`] passes.
pub const EXEC_MAX_STRINGS: usize = 32;

/// Replaces the program; returns only on failure. More than
/// [`EXEC_MAX_STRINGS`] arguments or environment strings give E2BIG.
pub fn execve(path: &CStr, argv: &[&CStr], envp: &[&CStr]) -> Errno {
    fn table(strings: &[&CStr]) -> Option<[*const c_char; EXEC_MAX_STRINGS + 1]> {
        if strings.len() > EXEC_MAX_STRINGS {
            return None;
        }
        let mut t = [core::ptr::null(); EXEC_MAX_STRINGS + 1];
        for (slot, s) in t.iter_mut().zip(strings) {
            *slot = s.as_ptr();
        }
        Some(t)
    }
    let (Some(argv), Some(envp)) = (table(argv), table(envp)) else {
        return Errno::E2BIG;
    };
    // SAFETY: path and every table entry are NUL-terminated strings; both tables end
    // with NULL. On success the address space is replaced and nothing returns.
    match unsafe { syscall!(nr::EXECVE, path.as_ptr(), argv.as_ptr(), envp.as_ptr()) } {
        Ok(_) => unreachable!("execve returned success"),
        Err(e) => e,
    }
}

/// A wait status as wait4 stores it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WaitStatus(pub u32);

impl WaitStatus {
    /// WIFEXITED: the child called exit.
    pub fn exited(self) -> bool {
        self.0 & 0x7f == 0
    }
    /// WEXITSTATUS: its exit code.
    pub fn exit_status(self) -> u32 {
        (self.0 >> 8) & 0xff
    }
    /// WIFSIGNALED: the child was killed by a signal.
    pub fn signaled(self) -> bool {
        let low = self.0 & 0x7f;
        low != 0 && low != 0x7f
    }
    /// WTERMSIG: that signal.
    pub fn term_sig(self) -> u32 {
        self.0 & 0x7f
    }
}

/// `exited N`, `signal N`, or the raw value.
impl fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exited() {
            write!(f, "exited {}", self.exit_status())
        } else if self.signaled() {
            write!(f, "signal {}", self.term_sig())
        } else {
            write!(f, "status {:#x}", self.0)
        }
    }
}

/// wait4(pid, &status, options, NULL): the pid reaped (0 with WNOHANG and no child
/// ready) and its status.
pub fn wait4(pid: isize, options: usize) -> Result<(usize, WaitStatus), Errno> {
    let mut status = 0u32;
    // SAFETY: the kernel writes one u32 to `status`.
    let pid = unsafe { syscall!(nr::WAIT4, pid, &mut status as *mut u32, options, 0)? };
    Ok((pid, WaitStatus(status)))
}

/// Waits for `pid` and returns its status.
pub fn wait(pid: usize) -> Result<WaitStatus, Errno> {
    wait4(pid as isize, 0).map(|(_, s)| s)
}

/// struct rusage.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct Rusage {
    pub utime: [i64; 2],
    pub stime: [i64; 2],
    pub maxrss: i64,
    pub ixrss: i64,
    pub idrss: i64,
    pub isrss: i64,
    /// Page faults served without I/O.
    pub minflt: i64,
    /// Page faults that needed I/O.
    pub majflt: i64,
    pub nswap: i64,
    pub inblock: i64,
    pub oublock: i64,
    pub msgsnd: i64,
    pub msgrcv: i64,
    pub nsignals: i64,
    pub nvcsw: i64,
    pub nivcsw: i64,
}

pub fn getrusage(who: isize) -> Result<Rusage, Errno> {
    let mut r = Rusage::default();
    // SAFETY: the kernel writes one struct rusage to `r`.
    unsafe { syscall!(nr::GETRUSAGE, who, &mut r as *mut Rusage)? };
    Ok(r)
}

/// struct utsname: six NUL-terminated 65-byte fields.
#[repr(C)]
pub struct Utsname {
    fields: [[u8; 65]; 6],
}

impl Utsname {
    fn field(&self, i: usize) -> &str {
        let f = &self.fields[i];
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        core::str::from_utf8(&f[..end]).unwrap_or("?")
    }
    pub fn sysname(&self) -> &str {
        self.field(0)
    }
    pub fn release(&self) -> &str {
        self.field(2)
    }
    pub fn machine(&self) -> &str {
        self.field(4)
    }
}

pub fn uname() -> Result<Utsname, Errno> {
    let mut u = Utsname {
        fields: [[0; 65]; 6],
    };
    // SAFETY: the kernel writes one struct utsname to `u`.
    unsafe { syscall!(nr::UNAME, &mut u as *mut Utsname)? };
    Ok(u)
}

/// Whether this is Linux `major.minor` or later (uname release `7.3.0`, ...; never
/// contkernel, whose release names no Linux version), for the calls Linux changed on
/// purpose.
pub fn linux_at_least(major: u32, minor: u32) -> bool {
    uname().is_ok_and(|u| {
        let mut parts = u.release().split(['.', '-']).map(|p| p.parse::<u32>().ok());
        let version = (parts.next().flatten(), parts.next().flatten());
        let (Some(a), Some(b)) = version else {
            return false;
        };
        !u.release().contains("contkernel") && (a, b) >= (major, minor)
    })
}

/// reboot(2) magic numbers and the power-off command.
pub const LINUX_REBOOT_MAGIC1: usize = 0xfee1_dead;
pub const LINUX_REBOOT_MAGIC2: usize = 672_274_793;
pub const LINUX_REBOOT_CMD_POWER_OFF: usize = 0x4321_fedc;

/// Powers the machine off: returns only if the kernel refuses (EPERM without the
/// capability) or does it asynchronously.
pub fn power_off() -> Result<usize, Errno> {
    // SAFETY: the power-off command reads no user memory.
    unsafe {
        syscall!(
            nr::REBOOT,
            LINUX_REBOOT_MAGIC1,
            LINUX_REBOOT_MAGIC2,
            LINUX_REBOOT_CMD_POWER_OFF,
            0
        )
    }
}
