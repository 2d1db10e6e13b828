//! pipe2, dup, dup3, fcntl, ppoll, vmsplice: descriptors (`fs::Files`) and the pipe
//! object (`proc::pipe`), with Linux's argument checks and errnos.

use alloc::vec::Vec;

use super::Errno;
use crate::arch::aarch64::uaccess::{copy_from_user, copy_to_user, read_user, write_user};
use crate::fs::{MAX_FDS, O_CLOEXEC, O_NONBLOCK, POLLERR, POLLHUP, POLLIN, POLLNVAL};
use crate::proc::pipe;
use crate::proc::sched::me;
use crate::proc::signal::{SigSet, UNBLOCKABLE};
use crate::uapi::*;

pub fn pipe2(fds: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !(O_CLOEXEC | O_NONBLOCK) != 0 {
        return Err(EINVAL);
    }
    let (r, w) = pipe::new(flags & O_NONBLOCK != 0);
    let t = me();
    let cloexec = flags & O_CLOEXEC != 0;
    let pair = {
        let mut files = t.files.lock();
        let rfd = files.install(r, 0, cloexec)?;
        match files.install(w, 0, cloexec) {
            Ok(wfd) => [rfd as i32, wfd as i32],
            Err(e) => {
                let _ = files.close(rfd);
                return Err(e);
            }
        }
    };
    if write_user(fds as usize, &pair).is_err() {
        let mut files = t.files.lock();
        let _ = files.close(pair[0] as u64);
        let _ = files.close(pair[1] as u64);
        return Err(EFAULT);
    }
    Ok(0)
}

/// vmsplice's flags: SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT.
const SPLICE_F_NONBLOCK: u64 = 2;
const SPLICE_F_ALL: u64 = 0xf;

/// vmsplice: user memory into a pipe's write end (or out of its read end), as Linux's
/// `vmsplice_to_pipe`: wait for a free slot, pin the pages that fit, one slot each,
/// return the count (a long vector may go in part). The pipe holds the pages, not a
/// copy (`mm::pin`): a reader sees later writes of the process to a page it maps
/// exclusively, and never a write of another process (a page shared since fork is
/// unshared before the pin). Out of the pipe it is readv. SPLICE_F_NONBLOCK: EAGAIN
/// instead of waiting.
pub fn vmsplice(fd: u64, iov: u64, nr_segs: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !SPLICE_F_ALL != 0 {
        return Err(EINVAL);
    }
    if nr_segs > 1024 {
        return Err(EINVAL);
    }
    let t = me();
    let stream = t.files.lock().get(fd)?.stream().ok_or(EBADF)?;
    let nonblock = flags & SPLICE_F_NONBLOCK != 0;
    if stream.status() & crate::fs::O_ACCMODE != crate::fs::O_WRONLY {
        if nonblock && stream.poll() & (POLLIN | POLLHUP) == 0 {
            return Err(EAGAIN);
        }
        return super::files::vectored(fd, iov, nr_segs, super::files::read);
    }
    let mut total = 0u64;
    for i in 0..nr_segs {
        let v: super::files::IoVec =
            read_user(iov as usize + i as usize * 16).map_err(|_| EFAULT)?;
        // After the first bytes, never wait again (Linux fills the pipe once).
        let n = match stream.splice_write(v.base, v.len, nonblock || total > 0) {
            Ok(n) => n,
            Err(EAGAIN) if total > 0 => break,
            Err(e) => return crate::uapi::partial(total as usize, e),
        };
        total += n;
        if n < v.len {
            break;
        }
    }
    Ok(total)
}

pub fn dup(fd: u64) -> Result<u64, Errno> {
    let t = me();
    let mut files = t.files.lock();
    let f = files.get(fd)?.clone();
    files.install(f, 0, false)
}

/// dup3, in Linux's order: the flags, the same descriptor twice (EINVAL), the new
/// descriptor's range, then the old one (EBADF).
pub fn dup3(old: u64, new: u64, flags: u64) -> Result<u64, Errno> {
    if flags & !O_CLOEXEC != 0 || old == new {
        return Err(EINVAL);
    }
    let t = me();
    let replaced = {
        let mut files = t.files.lock();
        if new as usize >= files.limit {
            return Err(EBADF);
        }
        let f = files.get(old)?.clone();
        let replaced = files.close(new).ok();
        files.put(new as usize, f, flags & O_CLOEXEC != 0);
        replaced
    };
    drop(replaced);
    Ok(new)
}

const F_DUPFD: u64 = 0;
const F_GETFD: u64 = 1;
const F_SETFD: u64 = 2;
const F_GETFL: u64 = 3;
const F_SETFL: u64 = 4;
const F_DUPFD_CLOEXEC: u64 = 1030;
const FD_CLOEXEC: u64 = 1;

pub fn fcntl(fd: u64, cmd: u64, arg: u64) -> Result<u64, Errno> {
    if let Some(r) = super::memfd::seals(fd, cmd as u32 as u64, arg) {
        return r;
    }
    let t = me();
    let mut files = t.files.lock();
    let f = files.get(fd)?.clone();
    // cmd is an int.
    match cmd as u32 as u64 {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            if arg as usize >= files.limit {
                return Err(EINVAL);
            }
            files.install(f, arg as usize, cmd as u32 as u64 == F_DUPFD_CLOEXEC)
        }
        F_GETFD => Ok(files.cloexec(fd) as u64),
        F_SETFD => {
            files.set_cloexec(fd, arg & FD_CLOEXEC != 0);
            Ok(0)
        }
        F_GETFL => Ok(f.status()),
        F_SETFL => {
            if let Some(s) = f.stream() {
                s.set_nonblock(arg & O_NONBLOCK != 0);
            }
            Ok(0)
        }
        _ => Err(EINVAL),
    }
}

/// struct pollfd.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PollFd {
    fd: i32,
    events: u16,
    revents: u16,
}

/// Fill in every `revents`; the number of descriptors with any.
fn scan(pfds: &mut [PollFd]) -> usize {
    let t = me();
    let mut files = t.files.lock();
    let mut ready = 0;
    for p in pfds.iter_mut() {
        p.revents = if p.fd < 0 {
            0
        } else {
            match files.get(p.fd as u64) {
                Ok(f) => f.poll() & (p.events | POLLERR | POLLHUP),
                Err(_) => POLLNVAL,
            }
        };
        ready += (p.revents != 0) as usize;
    }
    ready
}

/// ppoll: wait until a descriptor is ready, the timeout passes (NULL: never) or a
/// signal arrives (ERESTARTNOHAND: EINTR if a handler runs); `sigmask`, if given,
/// is the mask while waiting (put back after the handler, as rt_sigsuspend). The
/// timeout is not updated with the time left.
pub fn ppoll(fds: u64, nfds: u64, tmo: u64, sigmask: u64, size: u64) -> Result<u64, Errno> {
    if nfds as usize > MAX_FDS {
        return Err(EINVAL);
    }
    let deadline = super::misc::deadline_after(tmo)?;
    let mask = if sigmask != 0 {
        if size != 8 {
            return Err(EINVAL);
        }
        Some(read_user::<SigSet>(sigmask as usize).map_err(|_| EFAULT)? & !UNBLOCKABLE)
    } else {
        None
    };
    let mut pfds = alloc::vec![PollFd::default(); nfds as usize];
    let bytes = nfds as usize * core::mem::size_of::<PollFd>();
    // struct pollfd as bytes: fd (4), events (2), revents (2).
    let mut raw: Vec<u8> = alloc::vec![0; bytes];
    copy_from_user(&mut raw, fds as usize).map_err(|_| EFAULT)?;
    for (p, c) in pfds.iter_mut().zip(raw.chunks_exact(8)) {
        p.fd = i32::from_le_bytes(c[0..4].try_into().unwrap());
        p.events = u16::from_le_bytes(c[4..6].try_into().unwrap());
    }
    let t = me();
    if let Some(m) = mask {
        t.signals.with(|s| {
            s.saved_mask = Some(s.blocked);
            s.blocked = m;
        });
    }
    let mut ready = scan(&mut pfds);
    if ready == 0 && deadline > crate::time::uptime_ns() {
        pipe::POLLERS.wait_until_deadline(deadline, || {
            t.signals.interrupted() || scan(&mut pfds.clone()) != 0
        });
        ready = scan(&mut pfds);
        if ready == 0 && t.signals.interrupted() {
            return Err(ERESTARTNOHAND);
        }
    }
    if mask.is_some() {
        t.signals.with(|s| {
            if let Some(m) = s.saved_mask.take() {
                s.blocked = m;
            }
        });
    }
    for (p, c) in pfds.iter().zip(raw.chunks_exact_mut(8)) {
        c[6..8].copy_from_slice(&p.revents.to_le_bytes());
    }
    copy_to_user(fds as usize, &raw).map_err(|_| EFAULT)?;
    Ok(ready as u64)
}
