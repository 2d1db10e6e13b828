//! Pipes: a bounded byte queue (`PIPE_SIZE`, Linux's default 16 pages) with a read
//! end and a write end, each an `fs::Stream` that descriptors share. Reads block
//! until data or end of file; writes of up to PIPE_BUF bytes are atomic (they wait
//! for room for all of it), longer ones go in as room appears; a write with no
//! reader left raises SIGPIPE and fails with EPIPE; O_NONBLOCK turns every wait into
//! EAGAIN; a signal turns a wait into ERESTARTSYS (or a short count if some bytes
//! moved), as Linux's `fs/pipe.c`.
//!
//! # Protocol
//!
//! `Pipe::state` (a spin lock that leaves IRQs on: no interrupt handler takes it)
//! holds the bytes and the counts of open ends. Every change that could let a waiter
//! go on (bytes in, bytes out, an end closed) is made under it and followed, with the
//! lock released, by a wake-up of the other side's queue and of pollers (`POLLERS`).
//! User memory is copied with no lock held, through a kernel chunk of at most
//! `CHUNK` bytes: the kernel memory a pipe holds is bounded by `PIPE_SIZE` plus one
//! chunk per task inside a call.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::deliver;
use super::sched::{me, WaitQueue};
use super::signal::{Cause, SigInfo};
use crate::arch::aarch64::uaccess::{copy_from_user, copy_to_user, is_user_range};
use crate::fs::{self, Stream, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::sync::SpinLock;
use crate::uapi::*;

/// Bytes a pipe holds (Linux: 16 pages).
pub const PIPE_SIZE: usize = 65536;
/// Writes up to this size are atomic (POSIX PIPE_BUF, Linux's page).
pub const PIPE_BUF: usize = 4096;
/// Bytes copied to or from user memory per step.
const CHUNK: usize = 4096;

struct State {
    data: VecDeque<u8>,
    readers: u32,
    writers: u32,
}

struct Pipe {
    state: SpinLock<State>,
    /// Readers wait here for bytes or the last writer's close.
    readable: WaitQueue,
    /// Writers wait here for room or the last reader's close.
    writable: WaitQueue,
}

/// Tasks in ppoll wait here; every pipe event wakes them all.
pub static POLLERS: WaitQueue = WaitQueue::new();

impl Pipe {
    fn wake_readers(&self) {
        self.readable.wake_all();
        POLLERS.wake_all();
    }

    fn wake_writers(&self) {
        self.writable.wake_all();
        POLLERS.wake_all();
    }
}

/// One end of a pipe: an open file description.
struct End {
    pipe: Arc<Pipe>,
    write: bool,
    nonblock: AtomicBool,
}

/// pipe2: the read end and the write end.
pub fn new(nonblock: bool) -> (fs::File, fs::File) {
    let pipe = Arc::new(Pipe {
        state: SpinLock::new(State {
            data: VecDeque::new(),
            readers: 1,
            writers: 1,
        }),
        readable: WaitQueue::new(),
        writable: WaitQueue::new(),
    });
    let end = |write| {
        fs::File::Stream(Arc::new(End {
            pipe: pipe.clone(),
            write,
            nonblock: AtomicBool::new(nonblock),
        }))
    };
    (end(false), end(true))
}

impl Drop for End {
    fn drop(&mut self) {
        {
            let mut s = self.pipe.state.lock();
            if self.write {
                s.writers -= 1;
            } else {
                s.readers -= 1;
                // Nobody can read what is left: give the memory back now.
                if s.readers == 0 {
                    s.data = VecDeque::new();
                }
            }
        }
        if self.write {
            self.pipe.wake_readers();
        } else {
            self.pipe.wake_writers();
        }
    }
}

impl End {
    fn nonblocking(&self) -> bool {
        self.nonblock.load(Ordering::Relaxed)
    }

    /// SIGPIPE to the caller and EPIPE, for a write with no reader.
    fn broken(&self) -> Errno {
        let t = me();
        deliver::send(
            &t,
            SigInfo {
                signo: SIGPIPE,
                code: SI_USER,
                cause: Cause::Sender { pid: t.pid() },
            },
        );
        EPIPE
    }

    /// Wait on `queue` until `ready(state)`; Err(EAGAIN) if non-blocking, Err(errno
    /// of an interrupted call) if a signal came first.
    fn wait(&self, queue: &WaitQueue, ready: impl Fn(&State) -> bool) -> Result<(), Errno> {
        self.wait_or(queue, self.nonblocking(), ready)
    }

    /// `wait`, non-blocking if `nonblock`.
    fn wait_or(
        &self,
        queue: &WaitQueue,
        nonblock: bool,
        ready: impl Fn(&State) -> bool,
    ) -> Result<(), Errno> {
        if ready(&self.pipe.state.lock()) {
            return Ok(());
        }
        if nonblock {
            return Err(EAGAIN);
        }
        let t = me();
        queue.wait_until(|| t.signals.interrupted() || ready(&self.pipe.state.lock()));
        if ready(&self.pipe.state.lock()) {
            Ok(())
        } else {
            Err(ERESTARTSYS)
        }
    }
}

impl Stream for End {
    fn read(&self, buf: u64, count: u64) -> Result<u64, Errno> {
        if self.write {
            return Err(EBADF);
        }
        if !is_user_range(buf as usize, count as usize) {
            return Err(EFAULT);
        }
        if count == 0 {
            return Ok(0);
        }
        self.wait(&self.pipe.readable, |s| {
            !s.data.is_empty() || s.writers == 0
        })?;
        let mut done = 0usize;
        let mut chunk = vec![0u8; (count as usize).min(CHUNK)];
        while done < count as usize {
            let n = {
                let mut s = self.pipe.state.lock();
                let n = s.data.len().min(chunk.len()).min(count as usize - done);
                for (d, b) in chunk.iter_mut().zip(s.data.drain(..n)) {
                    *d = b;
                }
                n
            };
            if n == 0 {
                break;
            }
            self.pipe.wake_writers();
            if copy_to_user(buf as usize + done, &chunk[..n]).is_err() {
                return partial(done, EFAULT);
            }
            done += n;
        }
        Ok(done as u64)
    }

    fn write(&self, buf: u64, count: u64) -> Result<u64, Errno> {
        if !self.write {
            return Err(EBADF);
        }
        if !is_user_range(buf as usize, count as usize) {
            return Err(EFAULT);
        }
        let count = count as usize;
        let atomic = count <= PIPE_BUF;
        let mut chunk = vec![0u8; count.min(CHUNK)];
        let mut done = 0usize;
        while done < count {
            let len = (count - done).min(CHUNK);
            if copy_from_user(&mut chunk[..len], buf as usize + done).is_err() {
                return partial(done, EFAULT);
            }
            let mut off = 0;
            while off < len {
                // An atomic write waits for room for all of it; a long one for any.
                let need = if atomic { len } else { 1 };
                let waited = self.wait(&self.pipe.writable, |s| {
                    s.readers == 0 || PIPE_SIZE - s.data.len() >= need
                });
                if let Err(e) = waited {
                    return partial(done + off, e);
                }
                let n = {
                    let mut s = self.pipe.state.lock();
                    if s.readers == 0 {
                        0
                    } else {
                        let n = (PIPE_SIZE - s.data.len()).min(len - off);
                        s.data.extend(&chunk[off..off + n]);
                        n
                    }
                };
                if n == 0 {
                    let e = self.broken();
                    return partial(done + off, e);
                }
                self.pipe.wake_readers();
                off += n;
            }
            done += len;
        }
        Ok(done as u64)
    }

    /// Linux's `vmsplice_to_pipe`: wait until there is some room (unless `nonblock`
    /// or the end is non-blocking), then move what fits and return: unlike write, it
    /// never waits for room a second time.
    fn splice_write(&self, buf: u64, count: u64, nonblock: bool) -> Result<u64, Errno> {
        if !self.write {
            return Err(EBADF);
        }
        if !is_user_range(buf as usize, count as usize) {
            return Err(EFAULT);
        }
        if count == 0 {
            return Ok(0);
        }
        self.wait_or(&self.pipe.writable, nonblock || self.nonblocking(), |s| {
            s.readers == 0 || s.data.len() < PIPE_SIZE
        })?;
        let count = count as usize;
        let mut chunk = vec![0u8; count.min(CHUNK)];
        let mut done = 0usize;
        while done < count {
            let room = PIPE_SIZE - self.pipe.state.lock().data.len();
            let len = (count - done).min(CHUNK).min(room);
            if len == 0 {
                break;
            }
            if copy_from_user(&mut chunk[..len], buf as usize + done).is_err() {
                return partial(done, EFAULT);
            }
            let n = {
                let mut s = self.pipe.state.lock();
                if s.readers == 0 {
                    None
                } else {
                    let n = (PIPE_SIZE - s.data.len()).min(len);
                    s.data.extend(&chunk[..n]);
                    Some(n)
                }
            };
            let Some(n) = n else {
                let e = self.broken();
                return partial(done, e);
            };
            self.pipe.wake_readers();
            done += n;
            if n < len {
                break;
            }
        }
        Ok(done as u64)
    }

    fn poll(&self) -> u16 {
        let s = self.pipe.state.lock();
        if self.write {
            let mut m = 0;
            if PIPE_SIZE - s.data.len() >= PIPE_BUF {
                m |= POLLOUT | POLLWRNORM;
            }
            if s.readers == 0 {
                m |= POLLERR;
            }
            m
        } else {
            let mut m = 0;
            if !s.data.is_empty() {
                m |= POLLIN | POLLRDNORM;
            }
            if s.writers == 0 {
                m |= POLLHUP;
            }
            m
        }
    }

    fn status(&self) -> u64 {
        let mode = if self.write { fs::O_WRONLY } else { 0 };
        mode | if self.nonblocking() {
            fs::O_NONBLOCK
        } else {
            0
        }
    }

    fn set_nonblock(&self, on: bool) {
        self.nonblock.store(on, Ordering::Relaxed);
    }

    fn mode(&self) -> u32 {
        // S_IFIFO, rw for the owner.
        0o010600
    }
}
