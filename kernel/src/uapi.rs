//! The Linux arm64 ABI vocabulary (a leaf: mm, proc, fs and syscall all speak it):
//! system-call numbers, errnos ([`Errno`]), flags, signals. As named numbers: arm64 uses the asm-generic table
//! (`include/uapi/asm-generic/unistd.h`), so every number here is the one a static
//! aarch64 Linux binary puts in x8. Errors go back as `-errno` in x0
//! (`asm-generic/errno-base.h`, `errno.h`); flags are those of `asm-generic/mman-common.h`,
//! `mman.h`, `linux/sched.h`, `linux/wait.h`, `linux/time.h` and `asm-generic/signal.h`.
//!
//! Types follow the registers they arrive in: syscall numbers and flag words are `u64`,
//! errnos `i32` (positive, as in C; the syscall return negates them), signals `u32`,
//! wait statuses `u32`.

mod names;

/// A positive Linux errno; the system-call return negates it.
pub type Errno = i32;

/// Defines one constant per `NAME = value, "name"` line, and `$table`, the list of all
/// of them with their names, which the lookup functions and the tests walk.
macro_rules! named_numbers {
    ($(#[$doc:meta])* $table:ident: $ty:ty { $($c:ident = $v:literal, $name:literal;)* }) => {
        $(pub const $c: $ty = $v;)*
        $(#[$doc])*
        pub const $table: &[($ty, &str)] = &[$(($c, $name)),*];
    };
}

named_numbers! {
    /// The system calls this kernel knows by name, with their Linux names.
    SYSCALLS: u64 {
        SYS_DUP = 23, "dup";
        SYS_DUP3 = 24, "dup3";
        SYS_FCNTL = 25, "fcntl";
        SYS_IOCTL = 29, "ioctl";
        SYS_MKDIRAT = 34, "mkdirat";
        SYS_GETDENTS64 = 61, "getdents64";
        SYS_MOUNT = 40, "mount";
        SYS_FTRUNCATE = 46, "ftruncate";
        SYS_FALLOCATE = 47, "fallocate";
        SYS_FACCESSAT = 48, "faccessat";
        SYS_OPENAT = 56, "openat";
        SYS_CLOSE = 57, "close";
        SYS_PIPE2 = 59, "pipe2";
        SYS_LSEEK = 62, "lseek";
        SYS_READ = 63, "read";
        SYS_WRITE = 64, "write";
        SYS_READV = 65, "readv";
        SYS_WRITEV = 66, "writev";
        SYS_PREAD64 = 67, "pread64";
        SYS_PWRITE64 = 68, "pwrite64";
        SYS_PPOLL = 73, "ppoll";
        SYS_VMSPLICE = 75, "vmsplice";
        SYS_READLINKAT = 78, "readlinkat";
        SYS_NEWFSTATAT = 79, "newfstatat";
        SYS_FSTAT = 80, "fstat";
        SYS_SYNC = 81, "sync";
        SYS_EXIT = 93, "exit";
        SYS_EXIT_GROUP = 94, "exit_group";
        SYS_SET_TID_ADDRESS = 96, "set_tid_address";
        SYS_FUTEX = 98, "futex";
        SYS_SET_ROBUST_LIST = 99, "set_robust_list";
        SYS_GET_ROBUST_LIST = 100, "get_robust_list";
        SYS_NANOSLEEP = 101, "nanosleep";
        SYS_CLOCK_GETTIME = 113, "clock_gettime";
        SYS_CLOCK_NANOSLEEP = 115, "clock_nanosleep";
        SYS_SCHED_SETAFFINITY = 122, "sched_setaffinity";
        SYS_SCHED_GETAFFINITY = 123, "sched_getaffinity";
        SYS_SCHED_YIELD = 124, "sched_yield";
        SYS_KILL = 129, "kill";
        SYS_TKILL = 130, "tkill";
        SYS_TGKILL = 131, "tgkill";
        SYS_SIGALTSTACK = 132, "sigaltstack";
        SYS_RT_SIGSUSPEND = 133, "rt_sigsuspend";
        SYS_RT_SIGACTION = 134, "rt_sigaction";
        SYS_RT_SIGPROCMASK = 135, "rt_sigprocmask";
        SYS_RT_SIGPENDING = 136, "rt_sigpending";
        SYS_RT_SIGTIMEDWAIT = 137, "rt_sigtimedwait";
        SYS_RT_SIGRETURN = 139, "rt_sigreturn";
        SYS_REBOOT = 142, "reboot";
        SYS_UNAME = 160, "uname";
        SYS_GETRLIMIT = 163, "getrlimit";
        SYS_SETRLIMIT = 164, "setrlimit";
        SYS_GETRUSAGE = 165, "getrusage";
        SYS_PRCTL = 167, "prctl";
        SYS_GETCPU = 168, "getcpu";
        SYS_GETPID = 172, "getpid";
        SYS_GETPPID = 173, "getppid";
        SYS_GETUID = 174, "getuid";
        SYS_GETEUID = 175, "geteuid";
        SYS_GETGID = 176, "getgid";
        SYS_GETEGID = 177, "getegid";
        SYS_GETTID = 178, "gettid";
        SYS_SYSINFO = 179, "sysinfo";
        SYS_BRK = 214, "brk";
        SYS_MUNMAP = 215, "munmap";
        SYS_MREMAP = 216, "mremap";
        SYS_CLONE = 220, "clone";
        SYS_EXECVE = 221, "execve";
        SYS_MMAP = 222, "mmap";
        SYS_MPROTECT = 226, "mprotect";
        SYS_MSYNC = 227, "msync";
        SYS_MLOCK = 228, "mlock";
        SYS_MUNLOCK = 229, "munlock";
        SYS_MLOCKALL = 230, "mlockall";
        SYS_MUNLOCKALL = 231, "munlockall";
        SYS_MINCORE = 232, "mincore";
        SYS_MADVISE = 233, "madvise";
        SYS_WAIT4 = 260, "wait4";
        SYS_PRLIMIT64 = 261, "prlimit64";
        SYS_GETRANDOM = 278, "getrandom";
        SYS_MEMFD_CREATE = 279, "memfd_create";
        SYS_USERFAULTFD = 282, "userfaultfd";
        SYS_MLOCK2 = 284, "mlock2";
        SYS_RSEQ = 293, "rseq";
        SYS_CLONE3 = 435, "clone3";
        SYS_FACCESSAT2 = 439, "faccessat2";
    }
}

/// The Linux name of system call `nr`, for logging.
pub fn name(nr: u64) -> Option<&'static str> {
    SYSCALLS
        .iter()
        .find(|(n, _)| *n == nr)
        .map(|(_, s)| *s)
        .or_else(|| {
            usize::try_from(nr)
                .ok()
                .and_then(|i| names::NAMES.get(i))
                .copied()
                .filter(|s| !s.is_empty())
        })
}

named_numbers! {
    /// Error numbers, returned negated in x0.
    ERRNOS: i32 {
        EPERM = 1, "EPERM";
        ENOENT = 2, "ENOENT";
        ESRCH = 3, "ESRCH";
        EINTR = 4, "EINTR";
        EIO = 5, "EIO";
        ENXIO = 6, "ENXIO";
        E2BIG = 7, "E2BIG";
        ENOEXEC = 8, "ENOEXEC";
        EBADF = 9, "EBADF";
        ECHILD = 10, "ECHILD";
        EAGAIN = 11, "EAGAIN";
        ENOMEM = 12, "ENOMEM";
        EACCES = 13, "EACCES";
        EFAULT = 14, "EFAULT";
        EBUSY = 16, "EBUSY";
        EEXIST = 17, "EEXIST";
        ENODEV = 19, "ENODEV";
        ENOTDIR = 20, "ENOTDIR";
        EISDIR = 21, "EISDIR";
        EINVAL = 22, "EINVAL";
        ENFILE = 23, "ENFILE";
        EMFILE = 24, "EMFILE";
        ENOTTY = 25, "ENOTTY";
        EFBIG = 27, "EFBIG";
        ENOSPC = 28, "ENOSPC";
        ESPIPE = 29, "ESPIPE";
        EROFS = 30, "EROFS";
        EPIPE = 32, "EPIPE";
        ERANGE = 34, "ERANGE";
        ENAMETOOLONG = 36, "ENAMETOOLONG";
        ENOSYS = 38, "ENOSYS";
        EOVERFLOW = 75, "EOVERFLOW";
        EOPNOTSUPP = 95, "EOPNOTSUPP";
        ETIMEDOUT = 110, "ETIMEDOUT";
    }
}

// Kernel-internal errnos of an interrupted system call (never seen by user space):
// the signal code either restarts the call or turns them into EINTR (Linux's
// `include/linux/errno.h`; the table is in `proc::signal::Restart`).
/// Restart if no handler runs, or if the handler has SA_RESTART; EINTR otherwise.
pub const ERESTARTSYS: Errno = 512;
/// Restart if no handler runs; EINTR if one does.
pub const ERESTARTNOHAND: Errno = 514;

/// Linux's rule for a read or write that fails part way: the bytes moved so far if
/// any, else the error.
pub fn partial(done: usize, err: Errno) -> Result<u64, Errno> {
    if done == 0 {
        Err(err)
    } else {
        Ok(done as u64)
    }
}

/// The symbolic name of error number `errno`, for logging.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    ERRNOS.iter().find(|(e, _)| *e == errno).map(|(_, s)| *s)
}

// mmap/mprotect protection bits.
pub const PROT_NONE: u64 = 0x0;
pub const PROT_READ: u64 = 0x1;
pub const PROT_WRITE: u64 = 0x2;
pub const PROT_EXEC: u64 = 0x4;

// mmap flags: the sharing type (MAP_SHARED or MAP_PRIVATE) and modifiers.
pub const MAP_SHARED: u64 = 0x01;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_SHARED_VALIDATE: u64 = 0x03;
/// The sharing type bits of the mmap flags.
pub const MAP_TYPE: u64 = 0x0f;
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_GROWSDOWN: u64 = 0x100;
pub const MAP_LOCKED: u64 = 0x2000;
pub const MAP_NORESERVE: u64 = 0x4000;
pub const MAP_POPULATE: u64 = 0x8000;
pub const MAP_STACK: u64 = 0x20000;
pub const MAP_HUGETLB: u64 = 0x40000;
pub const MAP_FIXED_NOREPLACE: u64 = 0x100000;
/// The hugetlb page size of MAP_HUGETLB, as its log2 in these bits of the flags.
pub const MAP_HUGE_SHIFT: u64 = 26;
pub const MAP_HUGE_MASK: u64 = 0x3f;

// mremap flags.
pub const MREMAP_MAYMOVE: u64 = 1;
pub const MREMAP_FIXED: u64 = 2;
pub const MREMAP_DONTUNMAP: u64 = 4;

// madvise advice values (not bits).
pub const MADV_NORMAL: u64 = 0;
pub const MADV_RANDOM: u64 = 1;
pub const MADV_SEQUENTIAL: u64 = 2;
pub const MADV_WILLNEED: u64 = 3;
pub const MADV_DONTNEED: u64 = 4;
pub const MADV_FREE: u64 = 8;
pub const MADV_DONTFORK: u64 = 10;
pub const MADV_DOFORK: u64 = 11;
pub const MADV_HUGEPAGE: u64 = 14;
pub const MADV_REMOVE: u64 = 9;
pub const MADV_PAGEOUT: u64 = 21;
pub const MADV_NOHUGEPAGE: u64 = 15;
pub const MADV_POPULATE_READ: u64 = 22;
pub const MADV_POPULATE_WRITE: u64 = 23;
pub const MADV_DONTNEED_LOCKED: u64 = 24;
pub const MADV_WIPEONFORK: u64 = 18;
pub const MADV_KEEPONFORK: u64 = 19;
pub const MADV_COLLAPSE: u64 = 25;

// mlock2 and mlockall flags.
pub const MLOCK_ONFAULT: u64 = 0x01;
pub const MCL_CURRENT: u64 = 1;
pub const MCL_FUTURE: u64 = 2;
pub const MCL_ONFAULT: u64 = 4;

// clone flags; the low byte (CSIGNAL) is the signal sent to the parent at exit.
pub const CSIGNAL: u64 = 0xff;
pub const CLONE_VM: u64 = 0x100;
pub const CLONE_FS: u64 = 0x200;
pub const CLONE_FILES: u64 = 0x400;
pub const CLONE_SIGHAND: u64 = 0x800;
pub const CLONE_VFORK: u64 = 0x4000;
pub const CLONE_THREAD: u64 = 0x10000;
pub const CLONE_SYSVSEM: u64 = 0x40000;
pub const CLONE_SETTLS: u64 = 0x80000;
pub const CLONE_PIDFD: u64 = 0x1000;
pub const CLONE_PARENT_SETTID: u64 = 0x100000;
pub const CLONE_CHILD_CLEARTID: u64 = 0x200000;
pub const CLONE_CHILD_SETTID: u64 = 0x1000000;

// futex operations (the low bits of `op`) and their flags.
pub const FUTEX_WAIT: u32 = 0;
pub const FUTEX_WAKE: u32 = 1;
pub const FUTEX_REQUEUE: u32 = 3;
pub const FUTEX_CMP_REQUEUE: u32 = 4;
pub const FUTEX_WAIT_BITSET: u32 = 9;
pub const FUTEX_WAKE_BITSET: u32 = 10;
pub const FUTEX_PRIVATE_FLAG: u32 = 128;
pub const FUTEX_CLOCK_REALTIME: u32 = 256;
pub const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;

// wait4 options (`WALL` and `WCLONE` are Linux's `__WALL` and `__WCLONE`).
pub const WNOHANG: u64 = 0x1;
pub const WUNTRACED: u64 = 0x2;
pub const WALL: u64 = 0x4000_0000;
pub const WCLONE: u64 = 0x8000_0000;

// Clock ids.
pub const CLOCK_REALTIME: u64 = 0;
pub const CLOCK_MONOTONIC: u64 = 1;
pub const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
pub const CLOCK_THREAD_CPUTIME_ID: u64 = 3;
pub const CLOCK_MONOTONIC_RAW: u64 = 4;
pub const CLOCK_REALTIME_COARSE: u64 = 5;
pub const CLOCK_MONOTONIC_COARSE: u64 = 6;
pub const CLOCK_BOOTTIME: u64 = 7;
pub const CLOCK_REALTIME_ALARM: u64 = 8;
pub const CLOCK_BOOTTIME_ALARM: u64 = 9;
pub const CLOCK_TAI: u64 = 11;
/// clock_nanosleep: the time given is an absolute time on the clock.
pub const TIMER_ABSTIME: u64 = 1;

named_numbers! {
    /// Signals (`asm-generic/signal.h`); 32..=64 are the real-time signals.
    SIGNALS: u32 {
        SIGHUP = 1, "SIGHUP";
        SIGINT = 2, "SIGINT";
        SIGQUIT = 3, "SIGQUIT";
        SIGILL = 4, "SIGILL";
        SIGTRAP = 5, "SIGTRAP";
        SIGABRT = 6, "SIGABRT";
        SIGBUS = 7, "SIGBUS";
        SIGFPE = 8, "SIGFPE";
        SIGKILL = 9, "SIGKILL";
        SIGUSR1 = 10, "SIGUSR1";
        SIGSEGV = 11, "SIGSEGV";
        SIGUSR2 = 12, "SIGUSR2";
        SIGPIPE = 13, "SIGPIPE";
        SIGALRM = 14, "SIGALRM";
        SIGTERM = 15, "SIGTERM";
        SIGSTKFLT = 16, "SIGSTKFLT";
        SIGCHLD = 17, "SIGCHLD";
        SIGCONT = 18, "SIGCONT";
        SIGSTOP = 19, "SIGSTOP";
        SIGTSTP = 20, "SIGTSTP";
        SIGTTIN = 21, "SIGTTIN";
        SIGTTOU = 22, "SIGTTOU";
        SIGURG = 23, "SIGURG";
        SIGXCPU = 24, "SIGXCPU";
        SIGXFSZ = 25, "SIGXFSZ";
        SIGVTALRM = 26, "SIGVTALRM";
        SIGPROF = 27, "SIGPROF";
        SIGWINCH = 28, "SIGWINCH";
        SIGIO = 29, "SIGIO";
        SIGPWR = 30, "SIGPWR";
        SIGSYS = 31, "SIGSYS";
    }
}

/// The highest signal number (the last real-time signal).
pub const NSIG: u32 = 64;

// rt_sigaction's sa_flags (`asm-generic/signal.h`, arm64's SA_RESTORER).
pub const SA_NOCLDSTOP: u64 = 0x1;
pub const SA_NOCLDWAIT: u64 = 0x2;
pub const SA_SIGINFO: u64 = 0x4;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;
/// The handler values that are not addresses.
pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;
// rt_sigprocmask's `how`.
pub const SIG_BLOCK: u64 = 0;
pub const SIG_UNBLOCK: u64 = 1;
pub const SIG_SETMASK: u64 = 2;
// sigaltstack's ss_flags.
pub const SS_ONSTACK: u32 = 1;
pub const SS_DISABLE: u32 = 2;
pub const SS_AUTODISARM: u32 = 1 << 31;
/// The smallest alternate stack arm64 Linux accepts (MINSIGSTKSZ).
pub const MINSIGSTKSZ: u64 = 5120;

// siginfo's si_code values.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
pub const SI_TKILL: i32 = -6;
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
pub const SEGV_MTESERR: i32 = 9;
pub const BUS_ADRALN: i32 = 1;
pub const BUS_ADRERR: i32 = 2;
pub const BUS_OBJERR: i32 = 3;
pub const ILL_ILLOPC: i32 = 1;
pub const TRAP_BRKPT: i32 = 1;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;

/// The symbolic name of signal `sig`, for logging.
pub fn signal_name(sig: u32) -> Option<&'static str> {
    SIGNALS.iter().find(|(s, _)| *s == sig).map(|(_, n)| *n)
}

/// The wait status of a process that called `exit(code)`: only the low byte of the
/// code survives, in bits 8..16 (`WEXITSTATUS`).
pub const fn exited(code: u8) -> u32 {
    (code as u32) << 8
}

/// The wait status of a process killed by signal `sig` (`WTERMSIG`, no core dump).
pub const fn signaled(sig: u32) -> u32 {
    assert!(sig > 0 && sig < 0x7f);
    sig
}

// userfaultfd (`linux/userfaultfd.h`).
/// userfaultfd's flag: faults of the kernel's own user accesses are not handed out.
pub const UFFD_USER_MODE_ONLY: u64 = 1;
/// The only API version.
pub const UFFD_API: u64 = 0xaa;
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_MISSING_HUGETLBFS: u64 = 1 << 4;
pub const UFFD_FEATURE_MISSING_SHMEM: u64 = 1 << 5;
pub const UFFD_FEATURE_THREAD_ID: u64 = 1 << 8;
pub const UFFD_FEATURE_EXACT_ADDRESS: u64 = 1 << 11;
/// Not a user feature: set once the UFFDIO_API handshake is done.
pub const UFFD_FEATURE_INITIALIZED: u64 = 1 << 31;
pub const UFFDIO_API: u64 = 0xc018_aa3f;
pub const UFFDIO_REGISTER: u64 = 0xc020_aa00;
pub const UFFDIO_UNREGISTER: u64 = 0x8010_aa01;
pub const UFFDIO_WAKE: u64 = 0x8010_aa02;
pub const UFFDIO_COPY: u64 = 0xc028_aa03;
pub const UFFDIO_ZEROPAGE: u64 = 0xc020_aa04;
/// The ioctls' numbers, for the `ioctls` bit masks.
pub const _UFFDIO_REGISTER: u64 = 0x00;
pub const _UFFDIO_UNREGISTER: u64 = 0x01;
pub const _UFFDIO_WAKE: u64 = 0x02;
pub const _UFFDIO_COPY: u64 = 0x03;
pub const _UFFDIO_ZEROPAGE: u64 = 0x04;
pub const _UFFDIO_API: u64 = 0x3f;
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
pub const UFFDIO_REGISTER_MODE_WP: u64 = 2;
pub const UFFDIO_REGISTER_MODE_MINOR: u64 = 4;
/// UFFDIO_COPY's and UFFDIO_ZEROPAGE's mode: no wake-up after the fill.
pub const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1;
pub const UFFDIO_COPY_MODE_WP: u64 = 2;
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_unique<T: PartialEq + core::fmt::Debug>(table: &[(T, &str)]) {
        for (i, (a, an)) in table.iter().enumerate() {
            for (b, bn) in &table[i + 1..] {
                assert!(a != b, "{an} and {bn} share {a:?}");
                assert!(an != bn, "{an} listed twice");
            }
        }
    }

    #[test]
    fn syscall_numbers_and_errnos_are_unique() {
        assert_unique(SYSCALLS);
        assert_unique(ERRNOS);
        assert_unique(SIGNALS);
    }

    #[test]
    fn names_for_logging() {
        assert_eq!(name(SYS_WRITE), Some("write"));
        assert_eq!(name(SYS_EXIT_GROUP), Some("exit_group"));
        assert_eq!(name(1000), None);
        // Unknown to this kernel, named for the warning all the same.
        assert_eq!(name(217), Some("add_key"));
        assert_eq!(name(59), Some("pipe2"));
        assert_eq!(name(244), None);
        assert_eq!(errno_name(ENOSYS), Some("ENOSYS"));
        assert_eq!(errno_name(0), None);
        assert_eq!(signal_name(SIGSEGV), Some("SIGSEGV"));
        assert_eq!(signal_name(0), None);
    }

    #[test]
    fn flag_groups_are_distinct_single_bits() {
        let groups: [&[u64]; 3] = [
            &[
                MAP_SHARED,
                MAP_PRIVATE,
                MAP_FIXED,
                MAP_ANONYMOUS,
                MAP_GROWSDOWN,
                MAP_NORESERVE,
                MAP_POPULATE,
                MAP_STACK,
                MAP_HUGETLB,
                MAP_FIXED_NOREPLACE,
            ],
            &[
                CLONE_VM,
                CLONE_FS,
                CLONE_FILES,
                CLONE_SIGHAND,
                CLONE_VFORK,
                CLONE_THREAD,
                CLONE_SYSVSEM,
                CLONE_SETTLS,
                CLONE_PARENT_SETTID,
                CLONE_CHILD_CLEARTID,
                CLONE_CHILD_SETTID,
            ],
            &[WNOHANG, WUNTRACED, WALL, WCLONE],
        ];
        for group in groups {
            let mut seen = 0;
            for &bit in group {
                assert!(bit.is_power_of_two() && seen & bit == 0, "{bit:#x}");
                seen |= bit;
            }
        }
        for flag in [CLONE_VM, CLONE_SETTLS, CLONE_CHILD_SETTID] {
            assert_eq!(flag & CSIGNAL, 0);
        }
    }

    #[test]
    fn partial_counts_win_over_errors() {
        assert_eq!(partial(0, EFAULT), Err(EFAULT));
        assert_eq!(partial(5, EFAULT), Ok(5));
    }

    #[test]
    fn wait_status_encoders() {
        assert_eq!(exited(0), 0);
        assert_eq!(exited(1), 0x100);
        assert_eq!(exited(255), 0xff00);
        assert_eq!(exited(-1i32 as u8), 0xff00);
        assert_eq!(signaled(SIGKILL), 9);
        assert_eq!(signaled(SIGSEGV), 11);
        // WIFEXITED is "low 7 bits zero", WIFSIGNALED "low 7 bits neither 0 nor 0x7f".
        assert_eq!(exited(42) & 0x7f, 0);
        assert!(signaled(SIGBUS) & 0x7f != 0 && signaled(SIGBUS) & 0x7f != 0x7f);
    }
}
