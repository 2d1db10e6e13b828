//! Files: openat, read, pread, lseek, write, pwrite, close, mkdir, rmdir, mount,
//! memfd_create, ftruncate, fallocate, and whole-file helpers.

use crate::sys::{nr, Errno};
use crate::syscall;
use core::ffi::CStr;

/// The current directory for openat's `dirfd`.
pub const AT_FDCWD: isize = -100;
/// open flags (arm64 values).
pub const O_RDONLY: usize = 0;
pub const O_WRONLY: usize = 1;
pub const O_RDWR: usize = 2;
pub const O_DIRECTORY: usize = 0o40000;
pub const O_CLOEXEC: usize = 0o2000000;

pub fn openat(dirfd: isize, path: &CStr, flags: usize, mode: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel reads the NUL-terminated path.
    unsafe { syscall!(nr::OPENAT, dirfd, path.as_ptr(), flags, mode) }
}

pub fn read(fd: usize, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    unsafe { syscall!(nr::READ, fd, buf.as_mut_ptr(), buf.len()) }
}

/// pread64: read at byte offset `off` without moving the file position.
pub fn pread(fd: usize, buf: &mut [u8], off: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    unsafe { syscall!(nr::PREAD64, fd, buf.as_mut_ptr(), buf.len(), off) }
}

/// lseek whence: from the start of the file.
pub const SEEK_SET: usize = 0;

/// lseek: the new position.
pub fn lseek(fd: usize, off: usize, whence: usize) -> Result<usize, Errno> {
    // SAFETY: no memory arguments.
    unsafe { syscall!(nr::LSEEK, fd, off, whence) }
}

/// pwrite64: write at byte offset `off` without moving the file position.
pub fn pwrite(fd: usize, buf: &[u8], off: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most buf.len() bytes from buf.
    unsafe { syscall!(nr::PWRITE64, fd, buf.as_ptr(), buf.len(), off) }
}

pub fn write(fd: usize, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most buf.len() bytes from buf.
    unsafe { syscall!(nr::WRITE, fd, buf.as_ptr(), buf.len()) }
}

pub fn close(fd: usize) -> Result<usize, Errno> {
    // SAFETY: no memory arguments.
    unsafe { syscall!(nr::CLOSE, fd) }
}

/// memfd_create flag: close on exec.
pub const MFD_CLOEXEC: usize = 1;

/// memfd_create: a new empty file of the RAM file system.
pub fn memfd_create(name: &CStr, flags: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel reads the NUL-terminated name.
    unsafe { syscall!(nr::MEMFD_CREATE, name.as_ptr(), flags) }
}

pub fn ftruncate(fd: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: no memory arguments.
    unsafe { syscall!(nr::FTRUNCATE, fd, len) }
}

pub fn fallocate(fd: usize, mode: usize, off: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: no memory arguments.
    unsafe { syscall!(nr::FALLOCATE, fd, mode, off, len) }
}

/// unlinkat flag: remove a directory.
pub const AT_REMOVEDIR: usize = 0x200;

/// mkdirat(AT_FDCWD, path, mode).
pub fn mkdir(path: &CStr, mode: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel reads the NUL-terminated path.
    unsafe { syscall!(nr::MKDIRAT, AT_FDCWD, path.as_ptr(), mode) }
}

/// unlinkat(AT_FDCWD, path, AT_REMOVEDIR): removes an empty directory.
pub fn rmdir(path: &CStr) -> Result<usize, Errno> {
    // SAFETY: the kernel reads the NUL-terminated path.
    unsafe { syscall!(nr::UNLINKAT, AT_FDCWD, path.as_ptr(), AT_REMOVEDIR) }
}

/// mount(source, target, fstype, flags, NULL).
pub fn mount(source: &CStr, target: &CStr, fstype: &CStr, flags: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel reads three NUL-terminated strings.
    unsafe {
        syscall!(
            nr::MOUNT,
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            0
        )
    }
}

/// Reads the start of file `path` into `buf`; returns the bytes read.
pub fn read_file(path: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0)?;
    let n = read(fd, buf);
    let _ = close(fd);
    n
}

/// Reads file `path` from its start until end of file or until `buf` is full (a
/// generated file may come in several reads); returns the bytes read.
pub fn read_all(path: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0)?;
    let mut n = 0;
    let r = loop {
        match read(fd, &mut buf[n..]) {
            Ok(0) => break Ok(n),
            Ok(k) => {
                n += k;
                if n == buf.len() {
                    break Ok(n);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let _ = close(fd);
    r
}

/// The unsigned decimal number a file starts with (sysfs counters: `123\n`);
/// EINVAL when it does not start with a digit.
pub fn read_u64(path: &CStr) -> Result<u64, Errno> {
    let mut buf = [0u8; 32];
    let n = read_file(path, &mut buf)?;
    parse_u64(&buf[..n]).ok_or(Errno::EINVAL)
}

/// The unsigned decimal number at the start of `text` after blanks (None if none).
pub fn parse_u64(text: &[u8]) -> Option<u64> {
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits = text[start..].iter().take_while(|b| b.is_ascii_digit());
    let mut v: u64 = 0;
    let mut any = false;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
        any = true;
    }
    any.then_some(v)
}

/// Writes `bytes` to the existing file `path` (sysfs style: one write).
pub fn write_file(path: &CStr, bytes: &[u8]) -> Result<usize, Errno> {
    let fd = openat(AT_FDCWD, path, O_WRONLY | O_CLOEXEC, 0)?;
    let n = write(fd, bytes);
    let _ = close(fd);
    n
}

/// Whether `path` exists and is a directory.
pub fn is_dir(path: &CStr) -> bool {
    match openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) {
        Ok(fd) => {
            let _ = close(fd);
            true
        }
        Err(_) => false,
    }
}
