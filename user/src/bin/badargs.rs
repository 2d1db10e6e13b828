//! Bad arguments give the errno Linux gives. Each row passes one bad input: a kernel
//! address (0xffff000040000000), a low unmapped address (0x10), an unmapped page, a
//! misaligned address, length 0 or an overflowing length, an out-of-range flag; the
//! expected result is what Linux 6.12 arm64 returns (checked by booting Linux with
//! this program as a child of /init, see user/README.md). Length-0 calls and
//! misaligned buffers are successes on Linux: only addresses whose alignment the call
//! defines (mmap, munmap, mprotect, madvise, mincore) must be page-aligned.
#![no_std]
#![no_main]

use rt::mm::MAP_POPULATE;
use rt::mm::MAP_SHARED;
use rt::mm::{brk, Region, MADV_COLLAPSE, MADV_DONTNEED, MADV_FREE, MAP_ANONYMOUS, MAP_FIXED};
use rt::mm::{MADV_DOFORK, MADV_DONTFORK, MADV_DONTNEED_LOCKED, MADV_KEEPONFORK, MADV_PAGEOUT};
use rt::mm::{MADV_WIPEONFORK, MCL_ONFAULT, MLOCK_ONFAULT};
use rt::mm::{
    MAP_PRIVATE, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PAGE, PROT_NONE, PROT_READ,
    PROT_WRITE,
};
use rt::proc::{self, RUSAGE_SELF};
use rt::sys::nr;
use rt::test::{Fail, Outcome, Suite};
use rt::time::{CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, TIMER_ABSTIME};
use rt::{fs, Errno};

rt::entry!(main);

/// A kernel address (the start of RAM in the linear map of both kernels).
const KERNEL: usize = 0xffff_0000_4000_0000;
/// A low address that is never mapped.
const LOW: usize = 0x10;

/// What a row expects.
#[derive(Clone, Copy)]
enum Want {
    Ok(usize),
    /// Success with a value only known at run time (a pid, the current break).
    OkAny,
    Err(Errno),
    /// Linux 6.12's error, which this kernel gives too; Linux 7 returns `Ok(n)` since
    /// it changed the call on purpose (the reason stands at the row).
    ErrUntilLinux7(Errno, usize),
}

/// The addresses and descriptors the rows use.
struct Env {
    /// Three mapped pages: data at `buf`, `hello` on the second, `edge` is the last
    /// page before `hole`.
    buf: usize,
    edge: usize,
    /// An unmapped page right after `edge`.
    hole: usize,
    /// A readable file (this program).
    fd: usize,
    /// "/" repeated past PATH_MAX (4096), NUL-terminated.
    long_path: usize,
    /// The path of `hello` (an existing program), NUL-terminated.
    hello: usize,
}

/// `sys!(NR, args...)`: the raw call, errno and all.
macro_rules! sys {
    ($($t:tt)*) => {
        // SAFETY: every pointer argument in the table is either invalid on purpose
        // (the kernel must reject it without touching memory) or points into Env's
        // scratch pages, which nothing else uses.
        unsafe { rt::syscall!($($t)*) }
    };
}

type Call = fn(&Env) -> Result<usize, Errno>;

const EFAULT: Want = Want::Err(Errno::EFAULT);
const EINVAL: Want = Want::Err(Errno::EINVAL);
const ENOMEM: Want = Want::Err(Errno::ENOMEM);
const ENOENT: Want = Want::Err(Errno::ENOENT);
const EBADF: Want = Want::Err(Errno::EBADF);
const ESRCH: Want = Want::Err(Errno::ESRCH);

/// access(2) modes and the flag faccessat2 takes for an empty path.
const F_OK: usize = 0;
const R_OK: usize = 4;
const X_OK: usize = 1;
const AT_EMPTY_PATH: usize = 0x1000;

#[rustfmt::skip]
const ROWS: &[(&str, Want, Call)] = &[
    ("write_kernel_buf",    EFAULT,      |_| sys!(nr::WRITE, 1, KERNEL, 8)),
    ("write_low_buf",       EFAULT,      |_| sys!(nr::WRITE, 1, LOW, 8)),
    ("write_hole_buf",      EFAULT,      |e| sys!(nr::WRITE, 1, e.hole, 8)),
    ("write_len0_kernel",   EFAULT,      |_| sys!(nr::WRITE, 1, KERNEL, 0)),
    ("write_len0_low",      Want::Ok(0), |_| sys!(nr::WRITE, 1, LOW, 0)),
    ("write_len_max",       EFAULT,      |e| sys!(nr::WRITE, 1, e.buf, usize::MAX)),
    ("write_bad_fd",        EBADF,       |e| sys!(nr::WRITE, 999, e.buf, 1)),
    ("read_kernel_buf",     EFAULT,      |e| sys!(nr::READ, e.fd, KERNEL, 8)),
    ("read_low_buf",        EFAULT,      |e| sys!(nr::READ, e.fd, LOW, 8)),
    ("read_hole_buf",       EFAULT,      |e| sys!(nr::READ, e.fd, e.hole, 8)),
    ("read_len0_kernel",    EFAULT,      |e| sys!(nr::READ, e.fd, KERNEL, 0)),
    ("read_len0_low",       Want::Ok(0), |e| sys!(nr::READ, e.fd, LOW, 0)),
    ("read_len_max",        EFAULT,      |e| sys!(nr::READ, e.fd, e.buf, usize::MAX)),
    ("read_misaligned",     Want::Ok(3), |e| sys!(nr::READ, e.fd, e.buf + 1, 3)),
    ("read_bad_fd",         EBADF,       |e| sys!(nr::READ, 999, e.buf, 1)),
    // pwrite64 in Linux's order: a negative offset before the descriptor, ESPIPE for
    // the console, EBADF for a file open read-only, then the buffer; /proc/self/mem
    // (open read-write) at an address no VMA covers is EIO.
    ("pwrite64_negative_offset", EINVAL, |e| sys!(nr::PWRITE64, 999, e.buf, 1, -1isize)),
    ("pwrite64_bad_fd",     EBADF,       |e| sys!(nr::PWRITE64, 999, e.buf, 1, 0)),
    ("pwrite64_console",    Want::Err(Errno::ESPIPE), |e| sys!(nr::PWRITE64, 1, e.buf, 1, 0)),
    ("pwrite64_read_only",  EBADF,       |e| sys!(nr::PWRITE64, e.fd, e.buf, 1, 0)),
    ("pwrite64_kernel_buf", EFAULT,      |e| pwrite_mem(KERNEL, 8, e.buf)),
    ("pwrite64_hole_buf",   EFAULT,      |e| pwrite_mem(e.hole, 8, e.buf)),
    ("pwrite64_len_max",    EFAULT,      |e| pwrite_mem(e.buf, usize::MAX, e.buf)),
    ("pwrite64_len0",       Want::Ok(0), |e| pwrite_mem(e.buf, 0, e.hole)),
    ("pwrite64_mem_hole",   Want::Err(Errno::EIO), |e| pwrite_mem(e.buf, 8, e.hole)),
    ("pwrite64_mem_into_hole", Want::Ok(8), |e| pwrite_mem(e.buf, 16, e.hole - 8)),
    ("pwrite64_mem_offset_overflow", Want::Err(Errno::EIO), |e| pwrite_mem(e.buf, 16, i64::MAX as usize - 8)),
    ("clock_gettime_kernel", EFAULT,     |_| sys!(nr::CLOCK_GETTIME, CLOCK_MONOTONIC, KERNEL)),
    ("clock_gettime_low",   EFAULT,      |_| sys!(nr::CLOCK_GETTIME, CLOCK_MONOTONIC, LOW)),
    ("clock_gettime_hole",  EFAULT,      |e| sys!(nr::CLOCK_GETTIME, CLOCK_MONOTONIC, e.hole)),
    ("clock_gettime_straddle", EFAULT,   |e| sys!(nr::CLOCK_GETTIME, CLOCK_MONOTONIC, e.hole - 8)),
    ("clock_gettime_misaligned", Want::Ok(0), |e| sys!(nr::CLOCK_GETTIME, CLOCK_MONOTONIC, e.buf + 1)),
    ("clock_gettime_bad_clock", EINVAL,  |e| sys!(nr::CLOCK_GETTIME, 99, e.buf)),
    ("uname_kernel",        EFAULT,      |_| sys!(nr::UNAME, KERNEL)),
    ("uname_low",           EFAULT,      |_| sys!(nr::UNAME, LOW)),
    ("uname_straddle",      EFAULT,      |e| sys!(nr::UNAME, e.hole - 100)),
    ("uname_misaligned",    Want::Ok(0), |e| sys!(nr::UNAME, e.buf + 3)),
    ("getrandom_kernel",    EFAULT,      |_| sys!(nr::GETRANDOM, KERNEL, 8, 0)),
    ("getrandom_low",       EFAULT,      |_| sys!(nr::GETRANDOM, LOW, 8, 0)),
    ("getrandom_len0_low",  Want::Ok(0), |_| sys!(nr::GETRANDOM, LOW, 0, 0)),
    ("getrandom_len0_kernel", EFAULT,    |_| sys!(nr::GETRANDOM, KERNEL, 0, 0)),
    ("getrandom_len_max",   Want::Ok(PAGE), |e| sys!(nr::GETRANDOM, e.edge, usize::MAX, 0)),
    ("getrandom_misaligned", Want::Ok(5), |e| sys!(nr::GETRANDOM, e.buf + 1, 5, 0)),
    ("getrandom_bad_flags", EINVAL,      |e| sys!(nr::GETRANDOM, e.buf, 8, 0x100)),
    ("nanosleep_kernel",    EFAULT,      |_| sys!(nr::NANOSLEEP, KERNEL, 0)),
    ("nanosleep_low",       EFAULT,      |_| sys!(nr::NANOSLEEP, LOW, 0)),
    ("nanosleep_hole",      EFAULT,      |e| sys!(nr::NANOSLEEP, e.hole, 0)),
    ("nanosleep_misaligned", Want::Ok(0), |e| { put_timespec(e.buf + 1, 0, 1); sys!(nr::NANOSLEEP, e.buf + 1, 0) }),
    ("nanosleep_nsec_1e9",  EINVAL,      |e| { put_timespec(e.buf, 0, 1_000_000_000); sys!(nr::NANOSLEEP, e.buf, 0) }),
    ("nanosleep_negative",  EINVAL,      |e| { put_timespec(e.buf, -1, 0); sys!(nr::NANOSLEEP, e.buf, 0) }),
    ("nanosleep_rem_kernel", Want::Ok(0), |e| { put_timespec(e.buf, 0, 1); sys!(nr::NANOSLEEP, e.buf, KERNEL) }),
    ("clock_nanosleep_kernel", EFAULT,   |_| sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, 0, KERNEL, 0)),
    ("clock_nanosleep_low", EFAULT,      |_| sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, 0, LOW, 0)),
    ("clock_nanosleep_hole", EFAULT,     |e| sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, 0, e.hole, 0)),
    ("clock_nanosleep_misaligned", Want::Ok(0), |e| { put_timespec(e.buf + 1, 0, 1); sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, 0, e.buf + 1, 0) }),
    ("clock_nanosleep_nsec_1e9", EINVAL, |e| { put_timespec(e.buf, 0, 1_000_000_000); sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, 0, e.buf, 0) }),
    ("clock_nanosleep_negative", EINVAL, |e| { put_timespec(e.buf, -1, 0); sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, 0, e.buf, 0) }),
    ("clock_nanosleep_abs_negative", EINVAL, |e| { put_timespec(e.buf, -1, 0); sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, TIMER_ABSTIME, e.buf, 0) }),
    ("clock_nanosleep_abs_past", Want::Ok(0), |e| { put_timespec(e.buf, 0, 0); sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, TIMER_ABSTIME, e.buf, 0) }),
    ("clock_nanosleep_bad_clock", EINVAL, |e| { put_timespec(e.buf, 0, 1); sys!(nr::CLOCK_NANOSLEEP, 99, 0, e.buf, 0) }),
    ("clock_nanosleep_bad_clock_kernel", EINVAL, |_| sys!(nr::CLOCK_NANOSLEEP, 99, 0, KERNEL, 0)),
    ("clock_nanosleep_monotonic_raw", Want::Err(Errno::EOPNOTSUPP), |e| { put_timespec(e.buf, 0, 1); sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC_RAW, 0, e.buf, 0) }),
    ("clock_nanosleep_rem_kernel", Want::Ok(0), |e| { put_timespec(e.buf, 0, 1); sys!(nr::CLOCK_NANOSLEEP, CLOCK_MONOTONIC, 0, e.buf, KERNEL) }),
    ("wait4_status_kernel", EFAULT,      |_| wait_child_with(KERNEL, 0)),
    ("wait4_status_low",    EFAULT,      |_| wait_child_with(LOW, 0)),
    ("wait4_status_misaligned", Want::OkAny, |e| wait_child_with(e.buf + 1, 0)),
    ("wait4_rusage_kernel", EFAULT,      |e| wait_child_with(e.buf, KERNEL)),
    ("wait4_efault_reaps",  Want::Err(Errno::ECHILD), |_| wait_twice()),
    ("wait4_bad_options",   EINVAL,      |e| sys!(nr::WAIT4, -1isize, e.buf, 0x40, 0)),
    ("mincore_vec_kernel",  EFAULT,      |e| sys!(nr::MINCORE, e.buf, PAGE, KERNEL)),
    ("mincore_vec_low",     EFAULT,      |e| sys!(nr::MINCORE, e.buf, PAGE, LOW)),
    ("mincore_vec_hole",    EFAULT,      |e| sys!(nr::MINCORE, e.buf, PAGE, e.hole)),
    ("mincore_addr_misaligned", EINVAL,  |e| sys!(nr::MINCORE, e.buf + 1, PAGE, e.edge)),
    ("mincore_addr_kernel", ENOMEM,      |e| sys!(nr::MINCORE, KERNEL, PAGE, e.edge)),
    ("mincore_addr_hole",   ENOMEM,      |e| sys!(nr::MINCORE, e.hole, PAGE, e.edge)),
    ("mincore_len0",        Want::Ok(0), |e| sys!(nr::MINCORE, e.buf, 0, e.edge)),
    ("mincore_len_max",     ENOMEM,      |e| sys!(nr::MINCORE, e.buf, usize::MAX, e.edge)),
    ("getrusage_kernel",    EFAULT,      |_| sys!(nr::GETRUSAGE, RUSAGE_SELF, KERNEL)),
    ("getrusage_low",       EFAULT,      |_| sys!(nr::GETRUSAGE, RUSAGE_SELF, LOW)),
    ("getrusage_misaligned", Want::Ok(0), |e| sys!(nr::GETRUSAGE, RUSAGE_SELF, e.buf + 1)),
    ("getrusage_bad_who",   EINVAL,      |e| sys!(nr::GETRUSAGE, 5, e.buf)),
    ("execve_path_kernel",  EFAULT,      |_| exec_in_child(KERNEL, 0)),
    ("execve_path_low",     EFAULT,      |_| exec_in_child(LOW, 0)),
    ("execve_path_hole",    EFAULT,      |e| exec_in_child(e.hole, 0)),
    ("execve_path_unterminated", EFAULT, |e| exec_in_child(unterminated(e), 0)),
    ("execve_path_empty",   ENOENT,      |_| exec_in_child(c"".as_ptr() as usize, 0)),
    ("execve_path_missing", ENOENT,      |_| exec_in_child(c"/nonexistent".as_ptr() as usize, 0)),
    ("execve_path_too_long", Want::Err(Errno::ENAMETOOLONG), |e| exec_in_child(e.long_path, 0)),
    ("execve_argv_kernel",  EFAULT,      |e| exec_in_child(e.hello, KERNEL)),
    ("openat_path_kernel",  EFAULT,      |_| open(KERNEL)),
    ("openat_path_low",     EFAULT,      |_| open(LOW)),
    ("openat_path_hole",    EFAULT,      |e| open(e.hole)),
    ("openat_path_unterminated", EFAULT, |e| open(unterminated(e))),
    ("openat_path_empty",   ENOENT,      |_| open(c"".as_ptr() as usize)),
    ("openat_path_missing", ENOENT,      |_| open(c"/nonexistent".as_ptr() as usize)),
    ("openat_path_too_long", Want::Err(Errno::ENAMETOOLONG), |e| open(e.long_path)),
    ("openat_file_as_directory", Want::Err(Errno::ENOTDIR), |e| sys!(nr::OPENAT, fs::AT_FDCWD, e.hello, fs::O_RDONLY | fs::O_DIRECTORY | fs::O_CLOEXEC, 0)),
    ("openat_tmpfile_read_only", EINVAL, |_| sys!(nr::OPENAT, fs::AT_FDCWD, c"/".as_ptr(), O_TMPFILE | fs::O_CLOEXEC, 0o600)),
    ("openat_tmpfile_of_file", Want::Err(Errno::ENOTDIR), |e| sys!(nr::OPENAT, fs::AT_FDCWD, e.hello, O_TMPFILE | fs::O_RDWR | fs::O_CLOEXEC, 0o600)),
    ("memfd_create_bad_flags", EINVAL,   |_| sys!(nr::MEMFD_CREATE, c"x".as_ptr(), 0x100)),
    ("memfd_create_exec_and_noexec", EINVAL, |_| sys!(nr::MEMFD_CREATE, c"x".as_ptr(), 0x18)),
    ("memfd_create_name_kernel", EFAULT, |_| sys!(nr::MEMFD_CREATE, KERNEL, 0)),
    ("memfd_create_name_too_long", EINVAL, |e| sys!(nr::MEMFD_CREATE, e.long_path, 0)),
    ("userfaultfd_bad_flags", EINVAL,    |_| sys!(nr::USERFAULTFD, 0x2)),
    ("uffdio_api_bad_version", EINVAL,   |_| with_uffd(false, |fd| uffd_ioctl(fd, UFFDIO_API, &mut [0xab, 0, 0]))),
    ("uffdio_api_unknown_feature", EINVAL, |_| with_uffd(false, |fd| uffd_ioctl(fd, UFFDIO_API, &mut [0xaa, 1 << 40, 0]))),
    ("uffdio_api_kernel", EFAULT,        |_| with_uffd(false, |fd| sys!(nr::IOCTL, fd, UFFDIO_API, KERNEL))),
    ("uffdio_api_twice", EINVAL,         |_| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_API, &mut [0xaa, 0, 0]))),
    ("uffdio_register_before_api", EINVAL, |e| with_uffd(false, |fd| uffd_ioctl(fd, UFFDIO_REGISTER, &mut [e.buf as u64, PAGE as u64, 1, 0]))),
    ("uffdio_register_mode0", EINVAL,    |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_REGISTER, &mut [e.buf as u64, PAGE as u64, 0, 0]))),
    ("uffdio_register_bad_mode", EINVAL, |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_REGISTER, &mut [e.buf as u64, PAGE as u64, 1 << 20, 0]))),
    ("uffdio_register_misaligned", EINVAL, |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_REGISTER, &mut [e.buf as u64 + 8, PAGE as u64, 1, 0]))),
    ("uffdio_register_len0", EINVAL,     |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_REGISTER, &mut [e.buf as u64, 0, 1, 0]))),
    ("uffdio_register_hole", EINVAL,     |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_REGISTER, &mut [e.hole as u64, PAGE as u64, 1, 0]))),
    ("uffdio_register_kernel_range", EINVAL, |_| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_REGISTER, &mut [KERNEL as u64, PAGE as u64, 1, 0]))),
    // The executable's text: a private mapping of a tmpfs file on Linux (shmem).
    ("uffdio_register_text", Want::Ok(0), |_| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_REGISTER, &mut [text_page() as u64, PAGE as u64, 1, 0]))),
    ("uffdio_register_struct_kernel", EFAULT, |_| with_uffd(true, |fd| sys!(nr::IOCTL, fd, UFFDIO_REGISTER, KERNEL))),
    ("uffdio_unregister_len_overflow", EINVAL, |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_UNREGISTER, &mut [e.buf as u64, !(PAGE as u64 - 1)]))),
    ("uffdio_wake_len0", EINVAL,         |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_WAKE, &mut [e.buf as u64, 0]))),
    ("uffdio_copy_unregistered", ENOENT, |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_COPY, &mut [e.hole as u64, e.buf as u64, PAGE as u64, 0, 0]))),
    ("uffdio_copy_bad_mode", EINVAL,     |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_COPY, &mut [e.hole as u64, e.buf as u64, PAGE as u64, 4, 0]))),
    ("uffdio_copy_src_len_misaligned", EINVAL, |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_COPY, &mut [e.hole as u64, e.buf as u64, 100, 0, 0]))),
    ("uffdio_zeropage_misaligned", EINVAL, |e| with_uffd(true, |fd| uffd_ioctl(fd, UFFDIO_ZEROPAGE, &mut [e.hole as u64 + 8, PAGE as u64, 0, 0]))),
    ("uffdio_unknown_ioctl", EINVAL,     |e| with_uffd(true, |fd| sys!(nr::IOCTL, fd, 0xaa99, e.buf))),
    ("uffd_read_short", EINVAL,          |e| with_uffd(true, |fd| sys!(nr::READ, fd, e.buf, 16))),
    ("uffd_read_before_api", EINVAL,     |e| with_uffd(false, |fd| sys!(nr::READ, fd, e.buf, 32))),
    ("uffd_read_nothing", Want::Err(Errno::EAGAIN), |e| with_uffd(true, |fd| sys!(nr::READ, fd, e.buf, 32))),
    ("uffd_write", EBADF,               |e| with_uffd(true, |fd| sys!(nr::WRITE, fd, e.buf, 32))),
    // MFD_HUGETLB with MFD_HUGE_1MB: no pool of that size.
    ("memfd_create_hugetlb_no_such_size", Want::Err(Errno::ENODEV), |_| sys!(nr::MEMFD_CREATE, c"x".as_ptr(), 0x4 | 20 << 26)),
    ("memfd_create_huge_size_without_hugetlb", EINVAL, |_| sys!(nr::MEMFD_CREATE, c"x".as_ptr(), 21 << 26)),
    ("ftruncate_negative",  EINVAL,      |_| sys!(nr::FTRUNCATE, 999, -1isize)),
    ("ftruncate_bad_fd",    EBADF,       |_| sys!(nr::FTRUNCATE, 999, 0)),
    ("ftruncate_read_only", EINVAL,      |e| sys!(nr::FTRUNCATE, e.fd, 0)),
    ("fallocate_len0",      EINVAL,      |e| sys!(nr::FALLOCATE, e.fd, 0, 0, 0)),
    ("fallocate_negative_offset", EINVAL, |e| sys!(nr::FALLOCATE, e.fd, 0, -1isize, PAGE)),
    ("fallocate_read_only", EBADF,       |e| sys!(nr::FALLOCATE, e.fd, 0, 0, PAGE)),
    ("mmap_shared_write_read_only_fd", Want::Err(Errno::EACCES), |e| sys!(nr::MMAP, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, e.fd, 0)),
    ("mmap_bad_type",       EINVAL,      |_| mmap(0, PAGE, MAP_ANONYMOUS | 0x0f, -1, 0)),
    ("msync_bad_flags",     EINVAL,      |e| sys!(nr::MSYNC, e.buf, PAGE, 8)),
    ("msync_async_and_sync", EINVAL,     |e| sys!(nr::MSYNC, e.buf, PAGE, 5)),
    ("msync_misaligned",    EINVAL,      |e| sys!(nr::MSYNC, e.buf + 1, PAGE, 4)),
    ("msync_hole",          ENOMEM,      |e| sys!(nr::MSYNC, e.hole, PAGE, 4)),
    ("msync_across_the_hole", ENOMEM,    |e| sys!(nr::MSYNC, e.buf, 4 * PAGE, 1)),
    ("msync_len0",          Want::Ok(0), |e| sys!(nr::MSYNC, e.hole, 0, 4)),
    ("msync_len_max",       Want::Ok(0), |e| sys!(nr::MSYNC, e.hole, usize::MAX, 4)),
    ("msync_wraps",         ENOMEM,      |_| sys!(nr::MSYNC, usize::MAX & !(PAGE - 1), 2 * PAGE, 4)),
    ("msync_mapped",        Want::Ok(0), |e| sys!(nr::MSYNC, e.buf, PAGE, 2)),
    ("faccessat_path_kernel", EFAULT,    |_| sys!(nr::FACCESSAT, fs::AT_FDCWD, KERNEL, F_OK)),
    ("faccessat_path_low",  EFAULT,      |_| sys!(nr::FACCESSAT, fs::AT_FDCWD, LOW, F_OK)),
    ("faccessat_path_unterminated", EFAULT, |e| sys!(nr::FACCESSAT, fs::AT_FDCWD, unterminated(e), F_OK)),
    ("faccessat_path_empty", ENOENT,     |_| sys!(nr::FACCESSAT, fs::AT_FDCWD, c"".as_ptr(), F_OK)),
    ("faccessat_path_missing", ENOENT,   |_| sys!(nr::FACCESSAT, fs::AT_FDCWD, c"/nonexistent".as_ptr(), F_OK)),
    ("faccessat_path_too_long", Want::Err(Errno::ENAMETOOLONG), |e| sys!(nr::FACCESSAT, fs::AT_FDCWD, e.long_path, F_OK)),
    ("faccessat_exec_program", Want::Ok(0), |e| sys!(nr::FACCESSAT, fs::AT_FDCWD, e.hello, R_OK | X_OK)),
    ("faccessat_bad_mode",  EINVAL,      |e| sys!(nr::FACCESSAT, fs::AT_FDCWD, e.hello, 8)),
    ("faccessat_bad_mode_kernel", EINVAL, |_| sys!(nr::FACCESSAT, fs::AT_FDCWD, KERNEL, 8)),
    ("faccessat_bad_dirfd", EBADF,       |_| sys!(nr::FACCESSAT, 999, c"bin".as_ptr(), F_OK)),
    ("faccessat2_bad_flags", EINVAL,     |e| sys!(nr::FACCESSAT2, fs::AT_FDCWD, e.hello, F_OK, 1)),
    ("faccessat2_empty_path_fd", Want::Ok(0), |e| sys!(nr::FACCESSAT2, e.fd, c"".as_ptr(), R_OK, AT_EMPTY_PATH)),
    ("faccessat2_empty_path_no_flag", ENOENT, |e| sys!(nr::FACCESSAT2, e.fd, c"".as_ptr(), R_OK, 0)),
    ("mmap_len0",           EINVAL,      |_| mmap(0, 0, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)),
    ("mmap_len_max",        ENOMEM,      |_| mmap(0, usize::MAX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)),
    ("mmap_fixed_misaligned", EINVAL,    |e| mmap(e.hole + 1, PAGE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)),
    ("mmap_fixed_kernel",   ENOMEM,      |_| mmap(KERNEL, PAGE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)),
    ("mmap_no_type",        EINVAL,      |_| mmap(0, PAGE, MAP_ANONYMOUS, -1, 0)),
    ("mmap_offset_misaligned", EINVAL,   |_| mmap(0, PAGE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 1)),
    ("mmap_file_bad_fd",    EBADF,       |_| mmap(0, PAGE, MAP_PRIVATE, 999, 0)),
    // MAP_HUGETLB (hugetlb): a size without a pool (8 KiB) is EINVAL; the 2 MiB pool
    // is empty unless a program filled it, so the reservation fails; a file is looked
    // up before MAP_HUGETLB is refused for it.
    ("mmap_hugetlb_bad_size", EINVAL,    |_| mmap(0, PAGE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | 13 << MAP_HUGE_SHIFT, -1, 0)),
    ("mmap_hugetlb_pool_empty", ENOMEM,  |_| mmap(0, PAGE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | 21 << MAP_HUGE_SHIFT, -1, 0)),
    ("mmap_hugetlb_bad_fd", EBADF,       |_| mmap(0, PAGE, MAP_PRIVATE | MAP_HUGETLB, 999, 0)),
    ("munmap_misaligned",   EINVAL,      |e| sys!(nr::MUNMAP, e.hole + 1, PAGE)),
    ("munmap_len0",         EINVAL,      |e| sys!(nr::MUNMAP, e.hole, 0)),
    ("munmap_kernel",       EINVAL,      |_| sys!(nr::MUNMAP, KERNEL, PAGE)),
    ("munmap_hole",         Want::Ok(0), |e| sys!(nr::MUNMAP, e.hole, PAGE)),
    // mremap: Linux 6.12's checks (flags, alignment, lengths, then the VMA of the
    // source, then the destination); none of these changes anything.
    ("mremap_bad_flag",     EINVAL,      |e| sys!(nr::MREMAP, e.buf, PAGE, PAGE, 8, 0)),
    ("mremap_fixed_no_maymove", EINVAL,  |e| sys!(nr::MREMAP, e.buf, PAGE, PAGE, MREMAP_FIXED, e.hole)),
    ("mremap_dontunmap_no_maymove", EINVAL, |e| sys!(nr::MREMAP, e.buf, PAGE, PAGE, MREMAP_DONTUNMAP, 0)),
    ("mremap_dontunmap_resize", EINVAL,  |e| sys!(nr::MREMAP, e.buf, PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0)),
    ("mremap_misaligned",   EINVAL,      |e| sys!(nr::MREMAP, e.buf + 1, PAGE, PAGE, MREMAP_MAYMOVE, 0)),
    ("mremap_new_len0",     EINVAL,      |e| sys!(nr::MREMAP, e.buf, PAGE, 0, MREMAP_MAYMOVE, 0)),
    ("mremap_new_len_wraps", EINVAL,     |e| sys!(nr::MREMAP, e.buf, PAGE, usize::MAX, MREMAP_MAYMOVE, 0)),
    ("mremap_old_len0_private", EINVAL,  |e| sys!(nr::MREMAP, e.buf, 0, PAGE, MREMAP_MAYMOVE, 0)),
    ("mremap_hole",         EFAULT,      |e| sys!(nr::MREMAP, e.hole, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0)),
    ("mremap_kernel",       EFAULT,      |_| sys!(nr::MREMAP, KERNEL, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0)),
    ("mremap_low",          EFAULT,      |_| sys!(nr::MREMAP, LOW & !(PAGE - 1), PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0)),
    ("mremap_across_vmas",  EFAULT,      |e| sys!(nr::MREMAP, e.buf, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE, 0)),
    ("mremap_overlapping",  EINVAL,      |e| sys!(nr::MREMAP, e.buf, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, e.buf + PAGE)),
    ("mremap_fixed_misaligned", EINVAL,  |e| sys!(nr::MREMAP, e.buf, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, e.hole + 1)),
    ("mremap_fixed_kernel", EINVAL,      |e| sys!(nr::MREMAP, e.buf, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, KERNEL)),
    ("mremap_fixed_wraps",  EINVAL,      |e| sys!(nr::MREMAP, e.buf, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, 0usize.wrapping_sub(PAGE))),
    // More than any gap below TASK_SIZE (contkernel: no address space) and than
    // memory (Linux: its overcommit heuristic); 2^47 bytes would fit here, where
    // overcommit is mode 1, as with Linux's mode 1.
    ("mremap_huge",         ENOMEM,      |e| sys!(nr::MREMAP, e.buf, PAGE, (1usize << 48) - (1 << 20), MREMAP_MAYMOVE, 0)),
    ("mremap_grow_no_move", ENOMEM,      |e| sys!(nr::MREMAP, e.buf, PAGE, 2 * PAGE, 0, 0)),
    ("mremap_same_size_noop", Want::OkAny, |e| sys!(nr::MREMAP, e.buf, 1usize << 40, 1usize << 40, 0, 0)),
    ("mprotect_misaligned", EINVAL,      |e| sys!(nr::MPROTECT, e.buf + 1, PAGE, PROT_READ | PROT_WRITE)),
    ("mprotect_hole",       ENOMEM,      |e| sys!(nr::MPROTECT, e.hole, PAGE, PROT_READ)),
    ("mprotect_kernel",     ENOMEM,      |_| sys!(nr::MPROTECT, KERNEL, PAGE, PROT_READ)),
    ("mprotect_len0",       Want::Ok(0), |e| sys!(nr::MPROTECT, e.hole, 0, PROT_READ)),
    ("mprotect_bad_prot",   EINVAL,      |e| sys!(nr::MPROTECT, e.buf, PAGE, 0x4000)),
    ("madvise_misaligned",  EINVAL,      |e| sys!(nr::MADVISE, e.buf + 1, PAGE, 0)),
    ("madvise_hole",        ENOMEM,      |e| sys!(nr::MADVISE, e.hole, PAGE, 0)),
    ("madvise_kernel",      ENOMEM,      |_| sys!(nr::MADVISE, KERNEL, PAGE, 0)),
    ("madvise_len0",        Want::Ok(0), |e| sys!(nr::MADVISE, e.hole, 0, 0)),
    ("madvise_unknown",     EINVAL,      |e| sys!(nr::MADVISE, e.buf, PAGE, 9999)),
    // MADV_COLLAPSE of a range inside one 2 MiB block: EINVAL when it starts past the
    // block's edge (rounded inward, the range is empty and inverted), a success with
    // nothing done when it starts on the edge. Linux 7 returns 0 for both: its
    // madvise_collapse returns early when no aligned block lies inside (hstart >=
    // hend), where 6.12 fell through to EINVAL.
    ("madvise_collapse_inside_block", Want::ErrUntilLinux7(Errno::EINVAL, 0), |_| collapse_in_block(PAGE, 2 * PAGE)),
    ("madvise_collapse_on_edge", Want::Ok(0), |_| collapse_in_block(0, 2 * PAGE)),
    // A range running from a mapped page into a hole: Linux applies the call to the
    // mapped part and then fails (these leave `edge` as it was, or zeroed).
    ("madvise_dontneed_into_hole", ENOMEM, |e| sys!(nr::MADVISE, e.edge, 2 * PAGE, MADV_DONTNEED)),
    ("madvise_free_into_hole", ENOMEM,   |e| sys!(nr::MADVISE, e.edge, 2 * PAGE, MADV_FREE)),
    ("mprotect_into_hole",  ENOMEM,      |e| sys!(nr::MPROTECT, e.edge, 2 * PAGE, PROT_READ | PROT_WRITE)),
    // The fork advice: holes as any advice; wipe-on-fork only for anonymous memory
    // (the program's text is a file mapping on Linux). The rows into a hole change the
    // mapped part: each is undone by the next.
    ("madvise_dontfork_into_hole", ENOMEM, |e| sys!(nr::MADVISE, e.edge, 2 * PAGE, MADV_DONTFORK)),
    ("madvise_dofork_into_hole", ENOMEM, |e| sys!(nr::MADVISE, e.edge, 2 * PAGE, MADV_DOFORK)),
    ("madvise_wipeonfork_into_hole", ENOMEM, |e| sys!(nr::MADVISE, e.edge, 2 * PAGE, MADV_WIPEONFORK)),
    ("madvise_keeponfork_into_hole", ENOMEM, |e| sys!(nr::MADVISE, e.edge, 2 * PAGE, MADV_KEEPONFORK)),
    ("madvise_wipeonfork_text", EINVAL,  |_| sys!(nr::MADVISE, text_page(), PAGE, MADV_WIPEONFORK)),
    ("madvise_dontfork_text", Want::Ok(0), |_| sys!(nr::MADVISE, text_page(), PAGE, MADV_DONTFORK)),
    ("madvise_dofork_text", Want::Ok(0), |_| sys!(nr::MADVISE, text_page(), PAGE, MADV_DOFORK)),
    ("madvise_dontneed_locked_hole", ENOMEM, |e| sys!(nr::MADVISE, e.hole, PAGE, MADV_DONTNEED_LOCKED)),
    // A locked page refuses the advice that would discard it.
    ("madvise_free_locked", EINVAL,      |_| advise_locked(MADV_FREE)),
    ("madvise_dontneed_locked", EINVAL,  |_| advise_locked(MADV_DONTNEED)),
    ("madvise_pageout_locked", EINVAL,   |_| advise_locked(MADV_PAGEOUT)),
    ("madvise_dontneed_locked_locked", Want::Ok(0), |_| advise_locked(MADV_DONTNEED_LOCKED)),
    // mlock, mlock2, munlock as Linux's do_mlock: the start is rounded down and the
    // length up (no alignment required), a length whose rounding wraps is 0; a hole
    // is ENOMEM (after locking what lies before it: the next row unlocks it).
    ("mlock_hole",          ENOMEM,      |e| sys!(nr::MLOCK, e.hole, PAGE)),
    ("mlock_kernel",        ENOMEM,      |_| sys!(nr::MLOCK, KERNEL, PAGE)),
    ("mlock_into_hole",     ENOMEM,      |e| sys!(nr::MLOCK, e.edge, 2 * PAGE)),
    // Pages 2..4 next to a locked 4..8: one locked VMA reaching past the range (this
    // kernel's population loop once found it again at the end, for ever).
    ("mlock_next_to_locked", Want::Ok(0), |_| mlock_next_to_locked()),
    ("munlock_into_hole",   ENOMEM,      |e| sys!(nr::MUNLOCK, e.edge, 2 * PAGE)),
    ("mlock_len0_hole",     Want::Ok(0), |e| sys!(nr::MLOCK, e.hole, 0)),
    ("mlock_misaligned",    Want::Ok(0), |e| sys!(nr::MLOCK, e.buf + 1, PAGE)),
    ("munlock_misaligned",  Want::Ok(0), |e| sys!(nr::MUNLOCK, e.buf + 1, PAGE)),
    ("mlock_len_max",       Want::Ok(0), |e| sys!(nr::MLOCK, e.buf, usize::MAX)),
    ("mlock_len_wraps",     EINVAL,      |e| sys!(nr::MLOCK, e.buf, usize::MAX - PAGE + 1)),
    ("mlock2_bad_flags",    EINVAL,      |e| sys!(nr::MLOCK2, e.buf, PAGE, 2)),
    ("mlock2_bad_flags_hole", EINVAL,    |e| sys!(nr::MLOCK2, e.hole, PAGE, 2)),
    ("mlock2_onfault_hole", ENOMEM,      |e| sys!(nr::MLOCK2, e.hole, PAGE, MLOCK_ONFAULT)),
    ("munlock_hole",        ENOMEM,      |e| sys!(nr::MUNLOCK, e.hole, PAGE)),
    ("munlock_kernel",      ENOMEM,      |_| sys!(nr::MUNLOCK, KERNEL, PAGE)),
    ("munlock_len0_kernel", Want::Ok(0), |_| sys!(nr::MUNLOCK, KERNEL, 0)),
    ("mlockall_0",          EINVAL,      |_| sys!(nr::MLOCKALL, 0)),
    ("mlockall_onfault_alone", EINVAL,   |_| sys!(nr::MLOCKALL, MCL_ONFAULT)),
    ("mlockall_unknown",    EINVAL,      |_| sys!(nr::MLOCKALL, 8)),
    ("mmap_prot_none_populate", Want::OkAny, |_| sys!(nr::MMAP, 0, PAGE, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1isize, 0)),
    ("brk_huge",            Want::OkAny, |_| sys!(nr::BRK, usize::MAX)),
    ("brk_low",             Want::OkAny, |_| brk_low()),
    ("unknown_syscall",     Want::Err(Errno::ENOSYS), |_| sys!(999)),
    ("rt_sigaction_size4",  EINVAL,      |_| sys!(nr::RT_SIGACTION, 10, 0, 0, 4)),
    ("rt_sigaction_sig0",   EINVAL,      |_| sys!(nr::RT_SIGACTION, 0, 0, 0, 8)),
    ("rt_sigaction_sig65",  EINVAL,      |_| sys!(nr::RT_SIGACTION, 65, 0, 0, 8)),
    ("rt_sigaction_act_kernel", EFAULT,  |_| sys!(nr::RT_SIGACTION, 10, KERNEL, 0, 8)),
    ("rt_sigaction_oact_kernel", EFAULT, |_| sys!(nr::RT_SIGACTION, 10, 0, KERNEL, 8)),
    ("rt_sigaction_sigkill", EINVAL,     |e| sys!(nr::RT_SIGACTION, 9, e.buf, 0, 8)),
    ("rt_sigprocmask_size4", EINVAL,     |_| sys!(nr::RT_SIGPROCMASK, 0, 0, 0, 4)),
    ("rt_sigprocmask_set_kernel", EFAULT, |_| sys!(nr::RT_SIGPROCMASK, 0, KERNEL, 0, 8)),
    ("rt_sigprocmask_old_low", EFAULT,   |_| sys!(nr::RT_SIGPROCMASK, 0, 0, LOW, 8)),
    ("rt_sigprocmask_how3", EINVAL,      |e| sys!(nr::RT_SIGPROCMASK, 3, e.buf, 0, 8)),
    ("rt_sigpending_size9", EINVAL,      |e| sys!(nr::RT_SIGPENDING, e.buf, 9)),
    ("rt_sigpending_kernel", EFAULT,     |_| sys!(nr::RT_SIGPENDING, KERNEL, 8)),
    ("rt_sigsuspend_size4", EINVAL,      |e| sys!(nr::RT_SIGSUSPEND, e.buf, 4)),
    ("rt_sigsuspend_hole",  EFAULT,      |e| sys!(nr::RT_SIGSUSPEND, e.hole, 8)),
    ("rt_sigtimedwait_size4", EINVAL,    |e| sys!(nr::RT_SIGTIMEDWAIT, e.buf, 0, 0, 4)),
    ("rt_sigtimedwait_set_kernel", EFAULT, |_| sys!(nr::RT_SIGTIMEDWAIT, KERNEL, 0, 0, 8)),
    ("rt_sigtimedwait_tmo_kernel", EFAULT, |e| sys!(nr::RT_SIGTIMEDWAIT, e.buf, 0, KERNEL, 8)),
    ("sigaltstack_ss_kernel", EFAULT,    |_| sys!(nr::SIGALTSTACK, KERNEL, 0)),
    ("sigaltstack_oss_low", EFAULT,      |_| sys!(nr::SIGALTSTACK, 0, LOW)),
    ("kill_sig65",          EINVAL,      |_| sys!(nr::KILL, 1, 65)),
    ("kill_no_such_pid",    ESRCH,       |_| sys!(nr::KILL, 0x3fff_ffff, 0)),
    ("tgkill_tgid0",        EINVAL,      |_| sys!(nr::TGKILL, 0, 1, 0)),
    ("tgkill_tid_negative", EINVAL,      |_| sys!(nr::TGKILL, 1, -1isize, 0)),
    ("tkill_tid0",          EINVAL,      |_| sys!(nr::TKILL, 0, 0)),
    // Threads: the flag rules of Linux's copy_process and clone3_args_valid, and
    // futex's checks (timeout first, then alignment, then the word).
    ("clone_thread_without_sighand", EINVAL, |_| sys!(nr::CLONE, CLONE_VM | CLONE_THREAD, 0, 0, 0, 0)),
    ("clone_sighand_without_vm", EINVAL, |_| sys!(nr::CLONE, CLONE_SIGHAND, 0, 0, 0, 0)),
    ("clone3_size_small",   EINVAL,      |e| sys!(nr::CLONE3, clone_args(e, 0, 0, 0, 0), 8)),
    ("clone3_size_page_plus", Want::Err(Errno::E2BIG), |e| sys!(nr::CLONE3, clone_args(e, 0, 0, 0, 0), PAGE + 8)),
    ("clone3_args_kernel",  EFAULT,      |_| sys!(nr::CLONE3, KERNEL, 88)),
    ("clone3_csignal_in_flags", EINVAL,  |e| sys!(nr::CLONE3, clone_args(e, SIGCHLD, 0, 0, 0), 88)),
    ("clone3_thread_exit_signal", EINVAL, |e| sys!(nr::CLONE3, clone_args(e, CLONE_VM | CLONE_SIGHAND | CLONE_THREAD, SIGCHLD, 0, 0), 88)),
    ("clone3_stack_without_size", EINVAL, |e| sys!(nr::CLONE3, clone_args(e, CLONE_VM | CLONE_SIGHAND | CLONE_THREAD, 0, e.buf, 0), 88)),
    ("clone3_size_without_stack", EINVAL, |e| sys!(nr::CLONE3, clone_args(e, CLONE_VM | CLONE_SIGHAND | CLONE_THREAD, 0, 0, PAGE), 88)),
    ("futex_wait_unaligned", EINVAL,     |e| sys!(nr::FUTEX, e.buf + 2, FUTEX_WAIT, 0, 0, 0, 0)),
    ("futex_wait_kernel",   EFAULT,      |_| sys!(nr::FUTEX, KERNEL, FUTEX_WAIT, 0, 0, 0, 0)),
    ("futex_wait_hole",     EFAULT,      |e| sys!(nr::FUTEX, e.hole, FUTEX_WAIT, 0, 0, 0, 0)),
    ("futex_wait_other_value", Want::Err(Errno::EAGAIN), |e| { put_word(e.buf + 512, 1); sys!(nr::FUTEX, e.buf + 512, FUTEX_WAIT, 2, 0, 0, 0) }),
    ("futex_wait_timeout_kernel", EFAULT, |e| { put_word(e.buf + 512, 1); sys!(nr::FUTEX, e.buf + 512, FUTEX_WAIT, 1, KERNEL, 0, 0) }),
    ("futex_wait_timeout_nsec_1e9", EINVAL, |e| { put_timespec(e.buf, 0, 1_000_000_000); sys!(nr::FUTEX, e.buf + 512, FUTEX_WAIT, 1, e.buf, 0, 0) }),
    ("futex_wait_timeout_zero", Want::Err(Errno::ETIMEDOUT), |e| { put_word(e.buf + 512, 1); put_timespec(e.buf, 0, 0); sys!(nr::FUTEX, e.buf + 512, FUTEX_WAIT, 1, e.buf, 0, 0) }),
    ("futex_wait_bitset0",  EINVAL,      |e| { put_word(e.buf + 512, 1); sys!(nr::FUTEX, e.buf + 512, FUTEX_WAIT_BITSET, 1, 0, 0, 0) }),
    ("futex_wait_realtime", Want::Err(Errno::ENOSYS), |e| sys!(nr::FUTEX, e.buf + 512, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 1, 0, 0, 0)),
    ("futex_bad_op",        Want::Err(Errno::ENOSYS), |e| sys!(nr::FUTEX, e.buf + 512, 99, 1, 0, 0, 0)),
    ("futex_wake_nobody",   Want::Ok(0), |e| sys!(nr::FUTEX, e.buf + 512, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0, 0, 0)),
    ("futex_wake_bitset0",  EINVAL,      |e| sys!(nr::FUTEX, e.buf + 512, FUTEX_WAKE_BITSET, 1, 0, 0, 0)),
    ("futex_cmp_requeue_other_value", Want::Err(Errno::EAGAIN), |e| { put_word(e.buf + 512, 1); sys!(nr::FUTEX, e.buf + 512, FUTEX_CMP_REQUEUE, 1, 1, e.buf + 520, 2) }),
    ("futex_requeue_negative", EINVAL,   |e| sys!(nr::FUTEX, e.buf + 512, FUTEX_CMP_REQUEUE, -1isize, 1, e.buf + 520, 1)),
    // Robust lists: set_robust_list checks only the size (the head is read at exit:
    // an unmapped one is accepted, and the walk of it at this program's exit must be
    // harmless); get_robust_list writes the size first, then the head.
    ("set_robust_list_len0", EINVAL,     |e| sys!(nr::SET_ROBUST_LIST, e.buf, 0)),
    ("set_robust_list_len25", EINVAL,    |e| sys!(nr::SET_ROBUST_LIST, e.buf, 25)),
    ("get_robust_list_self", Want::Ok(0), |e| sys!(nr::GET_ROBUST_LIST, 0, e.buf, e.buf + 8)),
    ("get_robust_list_pid_negative", ESRCH, |e| sys!(nr::GET_ROBUST_LIST, -1isize, e.buf, e.buf + 8)),
    ("get_robust_list_no_such_pid", ESRCH, |e| sys!(nr::GET_ROBUST_LIST, 0x3fff_ffff, e.buf, e.buf + 8)),
    ("get_robust_list_len_kernel", EFAULT, |e| sys!(nr::GET_ROBUST_LIST, 0, e.buf, KERNEL)),
    ("get_robust_list_head_kernel", EFAULT, |e| sys!(nr::GET_ROBUST_LIST, 0, KERNEL, e.buf)),
    ("get_robust_list_head_hole", EFAULT, |e| sys!(nr::GET_ROBUST_LIST, 0, e.hole, e.buf)),
    ("set_robust_list_hole_head", Want::Ok(0), |e| sys!(nr::SET_ROBUST_LIST, e.hole, 24)),
    ("pipe2_kernel",        EFAULT,      |_| sys!(nr::PIPE2, KERNEL, 0)),
    ("pipe2_low",           EFAULT,      |_| sys!(nr::PIPE2, LOW, 0)),
    ("pipe2_bad_flag",      EINVAL,      |e| sys!(nr::PIPE2, e.buf, 1)),
    // vmsplice pins the pages for reading (`mm::pin`): a PROT_WRITE-only page is
    // readable on arm64 (Linux's GUP-fast looks at the entry), PROT_NONE and a hole
    // are EFAULT.
    ("vmsplice_write_only", Want::Ok(PAGE), |_| vmsplice_page(PROT_WRITE)),
    ("vmsplice_prot_none",  EFAULT,      |_| vmsplice_page(PROT_NONE)),
    ("vmsplice_hole",       EFAULT,      |e| vmsplice_at(e.hole)),
    ("clear_refs_6",        EINVAL,      |_| clear_refs(b"6")),
    ("clear_refs_word",     EINVAL,      |_| clear_refs(b"all")),
    ("clear_refs_1",        Want::Ok(1), |_| clear_refs(b"1")),
    ("dup_bad_fd",          EBADF,       |_| sys!(nr::DUP, 999)),
    ("dup3_bad_old",        EBADF,       |_| sys!(nr::DUP3, 999, 50, 0)),
    ("dup3_same",           EINVAL,      |_| sys!(nr::DUP3, 0, 0, 0)),
    ("dup3_bad_flag",       EINVAL,      |_| sys!(nr::DUP3, 0, 50, 1)),
    ("fcntl_bad_fd",        EBADF,       |_| sys!(nr::FCNTL, 999, 1, 0)),
    ("fcntl_bad_cmd",       EINVAL,      |_| sys!(nr::FCNTL, 0, 9999, 0)),
    ("ppoll_fds_kernel",    EFAULT,      |_| sys!(nr::PPOLL, KERNEL, 1, 0, 0, 8)),
    ("ppoll_tmo_kernel",    EFAULT,      |e| sys!(nr::PPOLL, e.buf, 1, KERNEL, 0, 8)),
    ("ppoll_nfds_huge",     EINVAL,      |e| sys!(nr::PPOLL, e.buf, 1usize << 30, 0, 0, 8)),
    ("ppoll_sigmask_size4", EINVAL,      |e| sys!(nr::PPOLL, e.buf, 0, 0, e.buf, 4)),
    ("sched_getaffinity_len4", EINVAL,   |e| sys!(nr::SCHED_GETAFFINITY, 0, 4, e.buf)),
    ("sched_getaffinity_kernel", EFAULT, |_| sys!(nr::SCHED_GETAFFINITY, 0, 8, KERNEL)),
    ("sched_setaffinity_kernel", EFAULT, |_| sys!(nr::SCHED_SETAFFINITY, 0, 8, KERNEL)),
    ("sysinfo_kernel",      EFAULT,      |_| sys!(nr::SYSINFO, KERNEL)),
    ("sysinfo_straddle",    EFAULT,      |e| sys!(nr::SYSINFO, e.hole - 8)),
    ("getrlimit_bad_resource", EINVAL,   |e| sys!(nr::GETRLIMIT, 99, e.buf)),
    ("getrlimit_kernel",    EFAULT,      |_| sys!(nr::GETRLIMIT, 7, KERNEL)),
    ("setrlimit_low",       EFAULT,      |_| sys!(nr::SETRLIMIT, 7, LOW)),
    ("prctl_get_thp_arg2",  EINVAL,      |_| sys!(nr::PRCTL, 42, 1, 0, 0, 0)),
];

fn main(args: &rt::Args) -> i32 {
    rt::thp::mount_pseudo_fs();
    let mut t = Suite::new("badargs");
    let env = match setup(args) {
        Ok(env) => env,
        Err(Fail(why)) => {
            rt::println!("badargs: set-up failed: {why}");
            return 1;
        }
    };
    for (name, want, call) in ROWS {
        t.report(name, check(*want, call(&env.0)));
    }
    t.finish()
}

fn check(want: Want, got: Result<usize, Errno>) -> Outcome {
    let want = match want {
        Want::ErrUntilLinux7(_, n) if rt::proc::linux_at_least(7, 0) => Want::Ok(n),
        Want::ErrUntilLinux7(e, _) => Want::Err(e),
        w => w,
    };
    match (want, got) {
        (Want::Ok(w), Ok(g)) if w == g => Ok(()),
        (Want::OkAny, Ok(_)) => Ok(()),
        (Want::Err(w), Err(g)) if w == g => Ok(()),
        (Want::Ok(w), g) => Err(Fail::new(format_args!("got {g:?}, want Ok({w})"))),
        (Want::OkAny, g) => Err(Fail::new(format_args!("got {g:?}, want success"))),
        (Want::Err(w), g) => Err(Fail::new(format_args!("got {g:?}, want {w}"))),
        (Want::ErrUntilLinux7(..), _) => unreachable!("resolved above"),
    }
}

/// userfaultfd's ioctls (`linux/userfaultfd.h`).
const UFFDIO_API: usize = 0xc018_aa3f;
const UFFDIO_REGISTER: usize = 0xc020_aa00;
const UFFDIO_UNREGISTER: usize = 0x8010_aa01;
const UFFDIO_WAKE: usize = 0x8010_aa02;
const UFFDIO_COPY: usize = 0xc028_aa03;
const UFFDIO_ZEROPAGE: usize = 0xc020_aa04;
/// arm64's O_NONBLOCK.
const O_NONBLOCK: usize = 0o4000;

/// `f` on a new userfaultfd (non-blocking), after the UFFDIO_API handshake if `api`;
/// the descriptor closed after.
fn with_uffd(api: bool, f: impl Fn(usize) -> Result<usize, Errno>) -> Result<usize, Errno> {
    let fd = sys!(nr::USERFAULTFD, O_NONBLOCK | fs::O_CLOEXEC)?;
    let r = if api {
        uffd_ioctl(fd, UFFDIO_API, &mut [0xaa, 0, 0]).and_then(|_| f(fd))
    } else {
        f(fd)
    };
    let _ = sys!(nr::CLOSE, fd);
    r
}

/// ioctl `req` of `fd` with the struct `arg`.
fn uffd_ioctl(fd: usize, req: usize, arg: &mut [u64]) -> Result<usize, Errno> {
    sys!(nr::IOCTL, fd, req, arg.as_mut_ptr())
}

/// The page of this program's text that holds `main`.
fn text_page() -> usize {
    (main as *const () as usize) & !(PAGE - 1)
}

/// `advice` on a fresh locked page (unmapped after).
fn advise_locked(advice: usize) -> Result<usize, Errno> {
    let r = Region::anon(PAGE, PROT_READ | PROT_WRITE, 0)?;
    sys!(nr::MLOCK, r.addr, PAGE)?;
    r.advise(0, PAGE, advice)
}

/// The scratch mappings (kept alive with the env) and the open file.
fn setup(args: &rt::Args) -> Result<(Env, Region, Region), Fail> {
    use rt::test::Context;
    let scratch = Region::anon(4 * PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    scratch.unmap(3 * PAGE, PAGE).ctx("munmap")?;
    let long = Region::anon(2 * PAGE, PROT_READ | PROT_WRITE, 0).ctx("mmap")?;
    long.fill(0, 2 * PAGE, b'/');
    long.store(5000, 0);
    let hello = args.sibling("hello");
    for (i, &b) in hello.as_bytes().iter().chain(&[0]).enumerate() {
        scratch.store(PAGE + i, b);
    }
    let me = args.get(0).ok_or(Fail::new(format_args!("no argv[0]")))?;
    let fd =
        fs::openat(fs::AT_FDCWD, me, fs::O_RDONLY | fs::O_CLOEXEC, 0).ctx("openat(argv[0])")?;
    let env = Env {
        buf: scratch.addr,
        edge: scratch.addr + 2 * PAGE,
        hole: scratch.addr + 3 * PAGE,
        fd,
        long_path: long.addr,
        hello: scratch.addr + PAGE,
    };
    Ok((env, scratch, long))
}

/// 64 bytes of "/" running into `hole` (no NUL): rewritten on each use, since other
/// rows write over `edge`.
fn unterminated(e: &Env) -> usize {
    let at = e.hole - 64;
    // SAFETY: [at, hole) is the end of Env's scratch page `edge`.
    unsafe { core::ptr::write_bytes(at as *mut u8, b'/', 64) };
    at
}

/// clone and futex arguments the rows above use.
const CLONE_VM: usize = 0x100;
const CLONE_SIGHAND: usize = 0x800;
const CLONE_THREAD: usize = 0x10000;
const SIGCHLD: usize = 17;
const FUTEX_WAIT: usize = 0;
const FUTEX_WAKE: usize = 1;
const FUTEX_CMP_REQUEUE: usize = 4;
const FUTEX_WAIT_BITSET: usize = 9;
const FUTEX_WAKE_BITSET: usize = 10;
const FUTEX_PRIVATE_FLAG: usize = 128;
const FUTEX_CLOCK_REALTIME: usize = 256;

/// A `struct clone_args` (88 bytes, Linux 5.7+'s) at `buf + 1024`: flags,
/// exit_signal, stack and stack_size, the rest 0; returns its address.
fn clone_args(e: &Env, flags: usize, exit_signal: usize, stack: usize, stack_size: usize) -> usize {
    let at = e.buf + 1024;
    let mut a = [0u64; 11];
    a[0] = flags as u64;
    a[4] = exit_signal as u64;
    a[5] = stack as u64;
    a[6] = stack_size as u64;
    // SAFETY: as put_timespec: Env's scratch page, unused by anything else.
    unsafe { core::ptr::write_unaligned(at as *mut [u64; 11], a) };
    at
}

fn put_word(at: usize, v: u32) {
    // SAFETY: as put_timespec.
    unsafe { core::ptr::write_unaligned(at as *mut u32, v) }
}

fn put_timespec(at: usize, sec: i64, nsec: i64) {
    // SAFETY: `at` is inside Env's scratch pages (mapped, unused by anything else);
    // unaligned writes are allowed for normal memory.
    unsafe { core::ptr::write_unaligned(at as *mut [i64; 2], [sec, nsec]) }
}

/// MADV_COLLAPSE of `[off, off + len)` from the start of a 2 MiB-aligned block of a
/// 4 MiB anonymous mapping (a VMA that may hold a 2 MiB folio), written first.
fn collapse_in_block(off: usize, len: usize) -> Result<usize, Errno> {
    const BLOCK: usize = 2 << 20;
    let r = Region::anon_aligned(2 * BLOCK, BLOCK, PROT_READ | PROT_WRITE)?;
    r.store(off, 1);
    sys!(nr::MADVISE, r.addr + off, len, MADV_COLLAPSE)
}

/// open's O_TMPFILE on arm64 (__O_TMPFILE with O_DIRECTORY).
const O_TMPFILE: usize = 0o20000000 | fs::O_DIRECTORY;

const MAP_HUGETLB: usize = 0x40000;
const MAP_HUGE_SHIFT: usize = 26;

fn mmap(addr: usize, len: usize, flags: usize, fd: isize, off: usize) -> Result<usize, Errno> {
    sys!(nr::MMAP, addr, len, PROT_READ | PROT_WRITE, flags, fd, off)
}

fn open(path: usize) -> Result<usize, Errno> {
    let r = sys!(
        nr::OPENAT,
        fs::AT_FDCWD,
        path,
        fs::O_RDONLY | fs::O_CLOEXEC,
        0
    );
    if let Ok(fd) = r {
        let _ = fs::close(fd);
    }
    r
}

/// pwrite64 of `len` bytes from `buf` to this process's address `at` through
/// /proc/self/mem (open read-write, so that the buffer and offset checks are reached).
fn pwrite_mem(buf: usize, len: usize, at: usize) -> Result<usize, Errno> {
    let fd = fs::openat(
        fs::AT_FDCWD,
        c"/proc/self/mem",
        fs::O_RDWR | fs::O_CLOEXEC,
        0,
    )?;
    let r = sys!(nr::PWRITE64, fd, buf, len, at);
    let _ = fs::close(fd);
    r
}

/// mlock of pages 4..8 of a fresh mapping, then of pages 2..4.
fn mlock_next_to_locked() -> Result<usize, Errno> {
    let m = Region::anon(8 * PAGE, PROT_READ | PROT_WRITE, 0)?;
    sys!(nr::MLOCK, m.addr + 4 * PAGE, 4 * PAGE)?;
    let r = sys!(nr::MLOCK, m.addr + 2 * PAGE, 2 * PAGE);
    let _ = rt::mm::munlock(m.addr, 8 * PAGE);
    r
}

/// vmsplice of one page at `addr` into a fresh pipe.
fn vmsplice_at(addr: usize) -> Result<usize, Errno> {
    let (r, w) = rt::pipe::pipe2(0)?;
    let iov = [addr, PAGE];
    let res = sys!(nr::VMSPLICE, w, iov.as_ptr(), 1, 0);
    let _ = fs::close(r);
    let _ = fs::close(w);
    res
}

/// vmsplice of a fresh page mapped with `prot` (written first where it can be).
fn vmsplice_page(prot: usize) -> Result<usize, Errno> {
    let m = Region::anon(PAGE, prot, 0)?;
    if prot & PROT_WRITE != 0 {
        m.store(0, 1);
    }
    vmsplice_at(m.addr)
}

/// A write of `what` to /proc/self/clear_refs.
fn clear_refs(what: &[u8]) -> Result<usize, Errno> {
    let fd = fs::openat(
        fs::AT_FDCWD,
        c"/proc/self/clear_refs",
        fs::O_WRONLY | fs::O_CLOEXEC,
        0,
    )?;
    let r = fs::write(fd, what);
    let _ = fs::close(fd);
    r
}

/// Forks a child that exits at once and reaps it with wait4(pid, status, 0, rusage).
fn wait_child_with(status: usize, rusage: usize) -> Result<usize, Errno> {
    let pid = proc::spawn(|| 0)?;
    let r = sys!(nr::WAIT4, pid, status, 0, rusage);
    let _ = proc::wait(pid);
    r
}

/// A wait4 that fails with EFAULT on the status pointer has still reaped the child:
/// the second wait4 gives ECHILD.
fn wait_twice() -> Result<usize, Errno> {
    let pid = proc::spawn(|| 0)?;
    let _ = sys!(nr::WAIT4, pid, KERNEL, 0, 0);
    proc::wait(pid).map(|s| s.0 as usize)
}

/// execve(path, argv, NULL) in a child (a wrongly successful exec replaces only the
/// child); the child exits with the errno, 0 meaning the exec'd program exited 0.
fn exec_in_child(path: usize, argv: usize) -> Result<usize, Errno> {
    let s = proc::fork_wait(|| match sys!(nr::EXECVE, path, argv, 0) {
        Ok(_) => 0,
        Err(e) => e.0,
    })?;
    match (s.exited(), s.exit_status()) {
        (true, 0) => Ok(0),
        (true, e) => Err(Errno(e as i32)),
        _ => Err(Errno(-1)),
    }
}

/// brk below the program: refused, which brk reports by returning the current
/// break (no errno).
fn brk_low() -> Result<usize, Errno> {
    // SAFETY: the call asks for an impossible break, so the heap does not change.
    let (cur, got) = unsafe { (brk(0)?, brk(LOW)?) };
    if got == cur {
        Ok(got)
    } else {
        Err(Errno(-2))
    }
}
