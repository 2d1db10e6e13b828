//! Raw system calls, Linux arm64 ABI: `svc #0` with the number in x8 and arguments in
//! x0..x5; the result comes back in x0, where -4095..=-1 is a negated errno.

use core::arch::asm;
use core::fmt;

/// System call numbers (the asm-generic table arm64 uses).
pub mod nr {
    pub const DUP: usize = 23;
    pub const FUTEX: usize = 98;
    pub const CLONE3: usize = 435;
    pub const DUP3: usize = 24;
    pub const FCNTL: usize = 25;
    pub const IOCTL: usize = 29;
    pub const MKDIRAT: usize = 34;
    pub const UNLINKAT: usize = 35;
    pub const MOUNT: usize = 40;
    pub const FTRUNCATE: usize = 46;
    pub const FALLOCATE: usize = 47;
    pub const FACCESSAT: usize = 48;
    pub const OPENAT: usize = 56;
    pub const CLOSE: usize = 57;
    pub const PIPE2: usize = 59;
    pub const LSEEK: usize = 62;
    pub const READ: usize = 63;
    pub const PPOLL: usize = 73;
    pub const VMSPLICE: usize = 75;
    pub const WRITE: usize = 64;
    pub const PREAD64: usize = 67;
    pub const PWRITE64: usize = 68;
    pub const EXIT: usize = 93;
    pub const EXIT_GROUP: usize = 94;
    pub const SET_TID_ADDRESS: usize = 96;
    pub const SET_ROBUST_LIST: usize = 99;
    pub const GET_ROBUST_LIST: usize = 100;
    pub const NANOSLEEP: usize = 101;
    pub const CLOCK_GETTIME: usize = 113;
    pub const CLOCK_NANOSLEEP: usize = 115;
    pub const SCHED_YIELD: usize = 124;
    pub const KILL: usize = 129;
    pub const TKILL: usize = 130;
    pub const TGKILL: usize = 131;
    pub const SIGALTSTACK: usize = 132;
    pub const RT_SIGSUSPEND: usize = 133;
    pub const RT_SIGACTION: usize = 134;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const RT_SIGPENDING: usize = 136;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const RT_SIGRETURN: usize = 139;
    pub const REBOOT: usize = 142;
    pub const UNAME: usize = 160;
    pub const GETRLIMIT: usize = 163;
    pub const SETRLIMIT: usize = 164;
    pub const GETRUSAGE: usize = 165;
    pub const PRCTL: usize = 167;
    pub const GETCPU: usize = 168;
    pub const SYSINFO: usize = 179;
    pub const SCHED_SETAFFINITY: usize = 122;
    pub const SCHED_GETAFFINITY: usize = 123;
    pub const GETPID: usize = 172;
    pub const GETPPID: usize = 173;
    pub const GETTID: usize = 178;
    pub const BRK: usize = 214;
    pub const MUNMAP: usize = 215;
    pub const MREMAP: usize = 216;
    pub const CLONE: usize = 220;
    pub const EXECVE: usize = 221;
    pub const MMAP: usize = 222;
    pub const MPROTECT: usize = 226;
    pub const MSYNC: usize = 227;
    pub const MLOCK: usize = 228;
    pub const MUNLOCK: usize = 229;
    pub const MLOCKALL: usize = 230;
    pub const MUNLOCKALL: usize = 231;
    pub const MINCORE: usize = 232;
    pub const MADVISE: usize = 233;
    pub const WAIT4: usize = 260;
    pub const GETRANDOM: usize = 278;
    pub const MEMFD_CREATE: usize = 279;
    pub const USERFAULTFD: usize = 282;
    pub const MLOCK2: usize = 284;
    pub const FACCESSAT2: usize = 439;
}

/// Issues system call `nr` with six arguments (unused ones zero).
///
/// # Safety
/// The kernel reads and writes whatever the arguments point to, and calls like
/// `munmap` or `execve` change the address space under the program: the caller
/// answers for what the call does to memory Rust code still uses.
#[inline(always)]
pub unsafe fn raw(nr: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: `svc #0` only enters the kernel; what the call does is the caller's
    // contract above. The kernel preserves every register but x0.
    unsafe {
        asm!("svc #0", in("x8") nr, inlateout("x0") a[0] => ret, in("x1") a[1],
             in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5], options(nostack));
    }
    ret
}

/// Splits a raw return value into a value or an errno.
pub fn result(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// `syscall!(NR, a, b, ...)`: up to six arguments cast with `as usize`, the result as
/// `Result<usize, Errno>`. Needs an `unsafe` block: see [`raw`].
#[macro_export]
macro_rules! syscall {
    ($nr:expr $(, $a:expr)* $(,)?) => {{
        let mut args = [0usize; 6];
        let given: &[usize] = &[$($a as usize),*];
        args[..given.len()].copy_from_slice(given);
        $crate::sys::result($crate::sys::raw($nr, args))
    }};
}

/// An error number as Linux defines it for arm64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $n:literal,)*) => {
        impl Errno {
            $(pub const $name: Errno = Errno($n);)*

            /// The symbolic name (`EFAULT`), or `E?` for a number not listed here.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($n => stringify!($name),)*
                    _ => "E?",
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, E2BIG = 7, ENOEXEC = 8,
    EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14,
    EBUSY = 16, EEXIST = 17, ENODEV = 19, ENOTDIR = 20, EISDIR = 21, EINVAL = 22,
    EMFILE = 24, ENOSPC = 28, ESPIPE = 29, EROFS = 30, ERANGE = 34, ENAMETOOLONG = 36, ENOSYS = 38,
    EOPNOTSUPP = 95, ETIMEDOUT = 110,
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A call's result as reports print it: the value, or the errno (`ENOMEM(12)`), not
/// Rust's `Ok(..)` / `Err(..)`. A call returning nothing shows as Linux's `0`:
/// `Res(r.map(|()| 0))`.
pub struct Res<T>(pub Result<T, Errno>);

impl<T: fmt::Display> fmt::Display for Res<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Ok(v) => v.fmt(f),
            Err(e) => e.fmt(f),
        }
    }
}
