//! System calls by Linux arm64 number: `dispatch` reads the number from x8 and the
//! arguments from x0-x5, and returns the result (or -errno) in x0. One file per family:
//! `process`, `signal`, `memory`, `files`, `memfd` (files of the RAM file system),
//! `pipe` (pipes and descriptors), `userfaultfd`, `misc`
//! (time, randomness, identity, power). Every user
//! pointer goes through the uaccess helpers: a bad one is EFAULT, never a kernel fault.
//! A system call runs with IRQs on (the tick and IPIs are taken, nothing preempts the
//! kernel), and masks them again before the way back to EL0.

// No `unsafe` in the system calls: user memory goes through `arch::aarch64::uaccess`.
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
mod files;
#[cfg(target_os = "none")]
mod memfd;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod misc;
#[cfg(target_os = "none")]
mod pipe;
#[cfg(target_os = "none")]
mod process;
#[cfg(target_os = "none")]
mod signal;
#[cfg(target_os = "none")]
mod userfaultfd;

pub use crate::uapi::Errno;

#[cfg(target_os = "none")]
pub use imp::dispatch;

#[cfg(target_os = "none")]
mod imp {
    use core::sync::atomic::{AtomicU64, Ordering};

    use super::{files, memfd, memory, misc, pipe, process, signal, userfaultfd, Errno};
    use crate::arch::aarch64::trap::TrapFrame;
    use crate::proc::signal::Restart;
    use crate::uapi::*;

    /// Unknown numbers already logged (one bit per number below 512).
    static LOGGED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

    fn unknown(nr: u64) -> Result<u64, Errno> {
        let (w, b) = ((nr as usize / 64).min(7), nr % 64);
        if LOGGED[w].fetch_or(1 << b, Ordering::Relaxed) & (1 << b) == 0 {
            log::warn!(
                "unknown system call {nr} ({}): ENOSYS",
                name(nr).unwrap_or("?")
            );
        }
        Err(ENOSYS)
    }

    // One arm per system call: a table, read by number, not a procedure to split.
    #[allow(clippy::too_many_lines)]
    pub fn dispatch(frame: &mut TrapFrame) {
        crate::arch::irq::entered_from_el0();
        crate::arch::irq::enable();
        let nr = frame.x[8];
        let a = [
            frame.x[0], frame.x[1], frame.x[2], frame.x[3], frame.x[4], frame.x[5],
        ];
        let r = match nr {
            SYS_READ => files::read(a[0], a[1], a[2]),
            SYS_WRITE => files::write(a[0], a[1], a[2]),
            SYS_READV => files::readv(a[0], a[1], a[2]),
            SYS_WRITEV => files::writev(a[0], a[1], a[2]),
            SYS_OPENAT => files::openat(a[0], a[1], a[2]),
            SYS_CLOSE => files::close(a[0]),
            SYS_PIPE2 => pipe::pipe2(a[0], a[1]),
            SYS_DUP => pipe::dup(a[0]),
            SYS_DUP3 => pipe::dup3(a[0], a[1], a[2]),
            SYS_FCNTL => pipe::fcntl(a[0], a[1], a[2]),
            SYS_PPOLL => pipe::ppoll(a[0], a[1], a[2], a[3], a[4]),
            SYS_VMSPLICE => pipe::vmsplice(a[0], a[1], a[2], a[3]),
            SYS_LSEEK => files::lseek(a[0], a[1], a[2]),
            SYS_PREAD64 => files::pread64(a[0], a[1], a[2], a[3]),
            SYS_PWRITE64 => files::pwrite64(a[0], a[1], a[2], a[3]),
            SYS_NEWFSTATAT => files::newfstatat(a[0], a[1], a[2], a[3]),
            SYS_FSTAT => files::fstat(a[0], a[1]),
            SYS_IOCTL => files::ioctl(a[0], a[1], a[2]),
            SYS_READLINKAT => files::readlinkat(a[0], a[1]),
            SYS_MKDIRAT => files::mkdirat(a[0], a[1]),
            SYS_GETDENTS64 => files::getdents64(a[0], a[1], a[2]),
            SYS_FACCESSAT => files::faccessat(a[0], a[1], a[2], 0),
            SYS_FACCESSAT2 => files::faccessat(a[0], a[1], a[2], a[3]),
            SYS_MOUNT | SYS_SYNC => Ok(0),
            SYS_EXIT => crate::proc::process::end_thread(exited(a[0] as u8)),
            SYS_EXIT_GROUP => crate::proc::process::exit(exited(a[0] as u8)),
            SYS_GETPID => process::getpid(),
            SYS_GETTID => process::gettid(),
            SYS_FUTEX => process::futex(a[0], a[1], a[2], a[3], a[4], a[5]),
            SYS_CLONE3 => process::clone3(frame, a[0], a[1]),
            // Restartable sequences are optional for glibc, which goes on without.
            SYS_RSEQ => Err(ENOSYS),
            SYS_GETPPID => process::getppid(),
            SYS_GETUID | SYS_GETEUID | SYS_GETGID | SYS_GETEGID => Ok(0),
            SYS_SET_TID_ADDRESS => process::set_tid_address(a[0]),
            SYS_SET_ROBUST_LIST => process::set_robust_list(a[0], a[1]),
            SYS_GET_ROBUST_LIST => process::get_robust_list(a[0], a[1], a[2]),
            SYS_CLONE => process::clone(frame, a[0], a[1], a[2], a[3], a[4]),
            SYS_EXECVE => process::execve(frame, a[0], a[1], a[2]),
            SYS_WAIT4 => process::wait4(a[0], a[1], a[2], a[3]),
            SYS_GETRUSAGE => process::getrusage(a[0], a[1]),
            SYS_SCHED_YIELD => process::sched_yield(),
            SYS_KILL => signal::kill(a[0], a[1]),
            SYS_TKILL => signal::tgkill(None, a[0], a[1]),
            SYS_TGKILL => signal::tgkill(Some(a[0]), a[1], a[2]),
            SYS_RT_SIGACTION => signal::rt_sigaction(a[0], a[1], a[2], a[3]),
            SYS_RT_SIGPROCMASK => signal::rt_sigprocmask(a[0], a[1], a[2], a[3]),
            SYS_RT_SIGPENDING => signal::rt_sigpending(a[0], a[1]),
            SYS_RT_SIGSUSPEND => signal::rt_sigsuspend(a[0], a[1]),
            SYS_RT_SIGTIMEDWAIT => signal::rt_sigtimedwait(a[0], a[1], a[2], a[3]),
            SYS_SIGALTSTACK => signal::sigaltstack(frame, a[0], a[1]),
            SYS_RT_SIGRETURN => signal::rt_sigreturn(frame),
            SYS_PRLIMIT64 => process::prlimit64(a[0], a[1], a[2], a[3]),
            SYS_GETRLIMIT => process::getrlimit(a[0], a[1]),
            SYS_SETRLIMIT => process::setrlimit(a[0], a[1]),
            SYS_SCHED_GETAFFINITY => process::sched_getaffinity(a[0], a[1], a[2]),
            SYS_SCHED_SETAFFINITY => process::sched_setaffinity(a[0], a[1], a[2]),
            SYS_SYSINFO => process::sysinfo(a[0]),
            SYS_GETCPU => process::getcpu(a[0], a[1]),
            SYS_PRCTL => process::prctl(a[0], a[1], a[2], a[3], a[4]),
            SYS_BRK => memory::brk(a[0]),
            SYS_MMAP => memory::mmap(a[0], a[1], a[2], a[3], a[4], a[5]),
            SYS_MEMFD_CREATE => memfd::memfd_create(a[0], a[1]),
            SYS_USERFAULTFD => userfaultfd::userfaultfd(a[0]),
            SYS_FTRUNCATE => memfd::ftruncate(a[0], a[1]),
            SYS_FALLOCATE => memfd::fallocate(a[0], a[1], a[2], a[3]),
            SYS_MUNMAP => memory::munmap(a[0], a[1]),
            SYS_MREMAP => memory::mremap(a[0], a[1], a[2], a[3], a[4]),
            SYS_MPROTECT => memory::mprotect(a[0], a[1], a[2]),
            SYS_MSYNC => memory::msync(a[0], a[1], a[2]),
            SYS_MADVISE => memory::madvise(a[0], a[1], a[2]),
            SYS_MINCORE => memory::mincore(a[0], a[1], a[2]),
            SYS_MLOCK => memory::mlock(a[0], a[1]),
            SYS_MLOCK2 => memory::mlock2(a[0], a[1], a[2]),
            SYS_MUNLOCK => memory::munlock(a[0], a[1]),
            SYS_MLOCKALL => memory::mlockall(a[0]),
            SYS_MUNLOCKALL => memory::munlockall(),
            SYS_CLOCK_GETTIME => misc::clock_gettime(a[0], a[1]),
            SYS_NANOSLEEP => misc::nanosleep(a[0], a[1]),
            SYS_CLOCK_NANOSLEEP => misc::clock_nanosleep(a[0], a[1], a[2], a[3]),
            SYS_GETRANDOM => misc::getrandom(a[0], a[1], a[2]),
            SYS_UNAME => misc::uname(a[0]),
            SYS_REBOOT => misc::reboot(a[0], a[1], a[2]),
            _ => unknown(nr),
        };
        frame.x[0] = match r {
            Ok(v) => v,
            Err(e) => {
                if e == ERESTARTSYS || e == ERESTARTNOHAND {
                    // A signal interrupted the call: the way back to EL0 restarts
                    // it (x0 back) or turns this into EINTR (`proc::deliver`).
                    let r = Restart {
                        errno: e,
                        orig_x0: a[0],
                    };
                    crate::proc::sched::me()
                        .signals
                        .with(|s| s.restart = Some(r));
                }
                (-(e as i64)) as u64
            }
        };
        crate::arch::irq::disable();
    }
}
