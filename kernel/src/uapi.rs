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
        SYS_IOCTL = 29, "ioctl";
        SYS_MKDIRAT = 34, "mkdirat";
        SYS_GETDENTS64 = 61, "getdents64";
        SYS_MOUNT = 40, "mount";
        SYS_FACCESSAT = 48, "faccessat";
        SYS_OPENAT = 56, "openat";
        SYS_CLOSE = 57, "close";
        SYS_LSEEK = 62, "lseek";
        SYS_READ = 63, "read";
        SYS_WRITE = 64, "write";
        SYS_READV = 65, "readv";
        SYS_WRITEV = 66, "writev";
        SYS_PREAD64 = 67, "pread64";
        SYS_READLINKAT = 78, "readlinkat";
        SYS_NEWFSTATAT = 79, "newfstatat";
        SYS_FSTAT = 80, "fstat";
        SYS_SYNC = 81, "sync";
        SYS_EXIT = 93, "exit";
        SYS_EXIT_GROUP = 94, "exit_group";
        SYS_SET_TID_ADDRESS = 96, "set_tid_address";
        SYS_SET_ROBUST_LIST = 99, "set_robust_list";
        SYS_NANOSLEEP = 101, "nanosleep";
        SYS_CLOCK_GETTIME = 113, "clock_gettime";
        SYS_CLOCK_NANOSLEEP = 115, "clock_nanosleep";
        SYS_SCHED_YIELD = 124, "sched_yield";
        SYS_KILL = 129, "kill";
        SYS_TGKILL = 131, "tgkill";
        SYS_RT_SIGACTION = 134, "rt_sigaction";
        SYS_RT_SIGPROCMASK = 135, "rt_sigprocmask";
        SYS_REBOOT = 142, "reboot";
        SYS_UNAME = 160, "uname";
        SYS_GETRUSAGE = 165, "getrusage";
        SYS_GETPID = 172, "getpid";
        SYS_GETPPID = 173, "getppid";
        SYS_GETUID = 174, "getuid";
        SYS_GETEUID = 175, "geteuid";
        SYS_GETGID = 176, "getgid";
        SYS_GETEGID = 177, "getegid";
        SYS_GETTID = 178, "gettid";
        SYS_BRK = 214, "brk";
        SYS_MUNMAP = 215, "munmap";
        SYS_CLONE = 220, "clone";
        SYS_EXECVE = 221, "execve";
        SYS_MMAP = 222, "mmap";
        SYS_MPROTECT = 226, "mprotect";
        SYS_MINCORE = 232, "mincore";
        SYS_MADVISE = 233, "madvise";
        SYS_WAIT4 = 260, "wait4";
        SYS_PRLIMIT64 = 261, "prlimit64";
        SYS_GETRANDOM = 278, "getrandom";
        SYS_RSEQ = 293, "rseq";
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
        EOPNOTSUPP = 95, "EOPNOTSUPP";
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
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_GROWSDOWN: u64 = 0x100;
pub const MAP_NORESERVE: u64 = 0x4000;
pub const MAP_POPULATE: u64 = 0x8000;
pub const MAP_STACK: u64 = 0x20000;
pub const MAP_FIXED_NOREPLACE: u64 = 0x100000;

// madvise advice values (not bits).
pub const MADV_NORMAL: u64 = 0;
pub const MADV_RANDOM: u64 = 1;
pub const MADV_SEQUENTIAL: u64 = 2;
pub const MADV_WILLNEED: u64 = 3;
pub const MADV_DONTNEED: u64 = 4;
pub const MADV_FREE: u64 = 8;
pub const MADV_HUGEPAGE: u64 = 14;
pub const MADV_PAGEOUT: u64 = 21;
pub const MADV_NOHUGEPAGE: u64 = 15;
pub const MADV_POPULATE_READ: u64 = 22;
pub const MADV_POPULATE_WRITE: u64 = 23;
pub const MADV_COLLAPSE: u64 = 25;

// clone flags; the low byte (CSIGNAL) is the signal sent to the parent at exit.
pub const CSIGNAL: u64 = 0xff;
pub const CLONE_VM: u64 = 0x100;
pub const CLONE_FS: u64 = 0x200;
pub const CLONE_FILES: u64 = 0x400;
pub const CLONE_SIGHAND: u64 = 0x800;
pub const CLONE_VFORK: u64 = 0x4000;
pub const CLONE_THREAD: u64 = 0x10000;
pub const CLONE_SETTLS: u64 = 0x80000;
pub const CLONE_PARENT_SETTID: u64 = 0x100000;
pub const CLONE_CHILD_CLEARTID: u64 = 0x200000;
pub const CLONE_CHILD_SETTID: u64 = 0x1000000;

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
    /// Signals.
    SIGNALS: u32 {
        SIGILL = 4, "SIGILL";
        SIGTRAP = 5, "SIGTRAP";
        SIGBUS = 7, "SIGBUS";
        SIGKILL = 9, "SIGKILL";
        SIGSEGV = 11, "SIGSEGV";
        SIGCHLD = 17, "SIGCHLD";
    }
}

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
        assert_eq!(name(216), Some("mremap"));
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
                MAP_FIXED_NOREPLACE,
            ],
            &[
                CLONE_VM,
                CLONE_FS,
                CLONE_FILES,
                CLONE_SIGHAND,
                CLONE_VFORK,
                CLONE_THREAD,
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
