//! Pipes and descriptors: pipe2, dup, dup3, fcntl, ppoll.

use crate::sys::{nr, Errno};
use crate::syscall;

pub const O_NONBLOCK: usize = 0o4000;
pub const F_DUPFD: usize = 0;
pub const F_GETFD: usize = 1;
pub const F_SETFD: usize = 2;
pub const F_GETFL: usize = 3;
pub const F_SETFL: usize = 4;
pub const F_DUPFD_CLOEXEC: usize = 1030;
pub const FD_CLOEXEC: usize = 1;

pub const POLLIN: u16 = 0x1;
pub const POLLOUT: u16 = 0x4;
pub const POLLERR: u16 = 0x8;
pub const POLLHUP: u16 = 0x10;
pub const POLLNVAL: u16 = 0x20;

/// pipe2(flags): (read end, write end).
pub fn pipe2(flags: usize) -> Result<(usize, usize), Errno> {
    let mut fds = [0i32; 2];
    // SAFETY: the kernel writes two ints to `fds`.
    unsafe { syscall!(nr::PIPE2, fds.as_mut_ptr(), flags)? };
    Ok((fds[0] as usize, fds[1] as usize))
}

pub fn dup(fd: usize) -> Result<usize, Errno> {
    // SAFETY: no memory arguments.
    unsafe { syscall!(nr::DUP, fd) }
}

pub fn dup3(old: usize, new: usize, flags: usize) -> Result<usize, Errno> {
    // SAFETY: no memory arguments.
    unsafe { syscall!(nr::DUP3, old, new, flags) }
}

/// fcntl with an integer argument (every command used here).
pub fn fcntl(fd: usize, cmd: usize, arg: usize) -> Result<usize, Errno> {
    // SAFETY: these commands take an integer, not a pointer.
    unsafe { syscall!(nr::FCNTL, fd, cmd, arg) }
}

/// struct pollfd.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct PollFd {
    pub fd: i32,
    pub events: u16,
    pub revents: u16,
}

/// ppoll(fds, timeout in ms or None for no timeout, no signal mask).
pub fn ppoll(fds: &mut [PollFd], timeout_ms: Option<u64>) -> Result<usize, Errno> {
    let ts = timeout_ms.map(|ms| [(ms / 1000) as i64, ((ms % 1000) * 1_000_000) as i64]);
    let tp = ts
        .as_ref()
        .map_or(core::ptr::null(), |t| t as *const [i64; 2]);
    // SAFETY: the kernel reads and writes `fds.len()` pollfds and reads one timespec.
    unsafe { syscall!(nr::PPOLL, fds.as_mut_ptr(), fds.len(), tp, 0, 8) }
}
