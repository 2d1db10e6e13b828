//! Pipes: a bounded queue (`PIPE_SIZE` bytes in at most `SLOTS` pieces, Linux's default
//! 16 pages) with a read end and a write end, each an `fs::Stream` that descriptors
//! share. What write(2) puts in is copied (runs of bytes); what vmsplice(2) puts in is
//! the user's pages themselves, pinned (`mm::pin`), one slot each, read in place: a
//! reader sees what the writer's process stored in the page after the vmsplice, as on
//! Linux, and the page outlives the writer's munmap or exit until it is read. Reads block
//! until data or end of file; writes of up to PIPE_BUF bytes are atomic (they wait
//! for room for all of it), longer ones go in as room appears; a write with no
//! reader left raises SIGPIPE and fails with EPIPE; O_NONBLOCK turns every wait into
//! EAGAIN; a signal turns a wait into ERESTARTSYS (or a short count if some bytes
//! moved), as Linux's `fs/pipe.c`.
//!
//! # Protocol
//!
//! `Pipe::state` (a spin lock that leaves IRQs on: no interrupt handler takes it)
//! holds the contents and the counts of open ends. Pages are pinned before the lock
//! is taken (the pin takes the writer's `Mm` lock) and unpinned after it is released
//! (the unpin takes a folio lock): the lock nests inside neither. Every change that could let a waiter
//! go on (bytes in, bytes out, an end closed) is made under it and followed, with the
//! lock released, by a wake-up of the other side's queue and of pollers (`POLLERS`).
//! User memory is copied with no lock held, through a kernel chunk of at most
//! `CHUNK` bytes: the kernel memory a pipe holds is bounded by `PIPE_SIZE` plus one
//! chunk per task inside a call.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::deliver;
use super::sched::{me, WaitQueue};
use super::signal::{Cause, SigInfo};
use crate::arch::aarch64::mm::machine::KernelMachine;
use crate::arch::aarch64::uaccess::{copy_from_user, copy_to_user, is_user_range};
use crate::fs::{self, Stream, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::mm::{pin, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::sync::SpinLock;
use crate::uapi::*;

/// Pin the page of the caller's memory at `at` for reading (vmsplice's pin: the
/// page is unshared first if another process maps it, `mm::pin`); its frame, at the
/// offset of `at`.
fn pin_user_page(at: usize) -> Result<PhysAddr, Errno> {
    let t = me();
    let mut mm = t.mm.lock();
    let mm = mm.as_mut().ok_or(EFAULT)?;
    let mut pa = [PhysAddr::new(0)];
    let page = VirtAddr(at as u64).align_down(PAGE_SIZE);
    mm.pin_pages(page, &mut pa, false)?;
    Ok(pa[0].add(at % PAGE_SIZE))
}

/// Bytes a pipe holds (Linux: 16 pages).
pub const PIPE_SIZE: usize = 65536;
/// Writes up to this size are atomic (POSIX PIPE_BUF, Linux's page).
pub const PIPE_BUF: usize = 4096;
/// Bytes copied to or from user memory per step.
const CHUNK: usize = 4096;

/// Pieces a pipe holds at most (Linux's default of 16 slots).
const SLOTS: usize = PIPE_SIZE / PAGE_SIZE;

/// One piece of a pipe's contents.
enum Piece {
    /// Bytes written, one run while they follow each other.
    Bytes(VecDeque<u8>),
    /// `len` bytes at `pa` (inside one page) of a page vmsplice pinned.
    Page { pa: PhysAddr, len: usize },
}

/// What a pipe holds, in order.
#[derive(Default)]
struct Contents {
    pieces: VecDeque<Piece>,
    len: usize,
}

impl Contents {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes a write may add now: a new run needs a slot.
    fn room(&self) -> usize {
        let run_open = matches!(self.pieces.back(), Some(Piece::Bytes(_)));
        if run_open || self.pieces.len() < SLOTS {
            PIPE_SIZE - self.len
        } else {
            0
        }
    }

    /// Append `b` (at most `room()` bytes).
    fn push_bytes(&mut self, b: &[u8]) {
        match self.pieces.back_mut() {
            Some(Piece::Bytes(q)) => q.extend(b),
            _ => self
                .pieces
                .push_back(Piece::Bytes(b.iter().copied().collect())),
        }
        self.len += b.len();
    }

    /// Whether a pinned page of `len` bytes fits.
    fn has_slot(&self, len: usize) -> bool {
        self.pieces.len() < SLOTS && self.len + len <= PIPE_SIZE
    }

    fn push_page(&mut self, pa: PhysAddr, len: usize) {
        self.pieces.push_back(Piece::Page { pa, len });
        self.len += len;
    }

    /// Move the first bytes into `out` (as many as fit); the pages read to their end
    /// go to `done`, for the caller to unpin once the lock is released.
    fn take(&mut self, out: &mut [u8], done: &mut Vec<PhysAddr>) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let m = match front {
                Piece::Bytes(q) => {
                    let m = q.len().min(out.len() - n);
                    for (d, b) in out[n..n + m].iter_mut().zip(q.drain(..m)) {
                        *d = b;
                    }
                    if q.is_empty() {
                        self.pieces.pop_front();
                    }
                    m
                }
                Piece::Page { pa, len } => {
                    let m = (*len).min(out.len() - n);
                    pin::read_pinned(&KernelMachine, *pa, &mut out[n..n + m]);
                    *pa = pa.add(m);
                    *len -= m;
                    if *len == 0 {
                        // `pa` is one past the page's last byte read: step back into it.
                        done.push(PhysAddr::new(pa.as_u64() - 1).align_down(PAGE_SIZE));
                        self.pieces.pop_front();
                    }
                    m
                }
            };
            n += m;
            self.len -= m;
        }
        n
    }
}

impl Drop for Contents {
    /// Pages no one will read: their pins go.
    fn drop(&mut self) {
        for p in self.pieces.drain(..) {
            if let Piece::Page { pa, .. } = p {
                pin::unpin(pa);
            }
        }
    }
}

struct State {
    contents: Contents,
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
            contents: Contents::default(),
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
        let unread = {
            let mut s = self.pipe.state.lock();
            if self.write {
                s.writers -= 1;
                None
            } else {
                s.readers -= 1;
                // Nobody can read what is left: give the memory (and the pins) back
                // now, once the lock is released.
                (s.readers == 0).then(|| core::mem::take(&mut s.contents))
            }
        };
        drop(unread);
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
            !s.contents.is_empty() || s.writers == 0
        })?;
        let mut done = 0usize;
        let mut chunk = vec![0u8; (count as usize).min(CHUNK)];
        // Pages read to their end: at most every slot.
        let mut read_out = Vec::with_capacity(SLOTS);
        while done < count as usize {
            let want = chunk.len().min(count as usize - done);
            let n = self
                .pipe
                .state
                .lock()
                .contents
                .take(&mut chunk[..want], &mut read_out);
            for pa in read_out.drain(..) {
                pin::unpin(pa);
            }
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
                    s.readers == 0 || s.contents.room() >= need
                });
                if let Err(e) = waited {
                    return partial(done + off, e);
                }
                let n = {
                    let mut s = self.pipe.state.lock();
                    let room = s.contents.room();
                    if s.readers == 0 {
                        None
                    } else if room < need {
                        // Another writer took the room between the wait and the lock:
                        // wait again (an atomic write never goes in part).
                        Some(0)
                    } else {
                        let n = room.min(len - off);
                        s.contents.push_bytes(&chunk[off..off + n]);
                        Some(n)
                    }
                };
                let Some(n) = n else {
                    let e = self.broken();
                    return partial(done + off, e);
                };
                if n > 0 {
                    self.pipe.wake_readers();
                    off += n;
                }
            }
            done += len;
        }
        Ok(done as u64)
    }

    /// Linux's `vmsplice_to_pipe`: wait until there is a free slot (unless `nonblock`
    /// or the end is non-blocking), then pin the pages of `[buf, buf + count)` one by
    /// one, each into a slot of its own, while slots are free: unlike write, it never
    /// waits a second time. A page that cannot be pinned ends the call (EFAULT, or
    /// ENOMEM, if it is the first).
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
            s.readers == 0 || s.contents.has_slot(1)
        })?;
        let count = count as usize;
        let mut done = 0usize;
        while done < count {
            let at = buf as usize + done;
            let len = (PAGE_SIZE - at % PAGE_SIZE).min(count - done);
            if !self.pipe.state.lock().contents.has_slot(len) {
                break;
            }
            let pa = match pin_user_page(at) {
                Ok(pa) => pa,
                Err(e) => return partial(done, e),
            };
            let pushed = {
                let mut s = self.pipe.state.lock();
                if s.readers == 0 {
                    None
                } else if s.contents.has_slot(len) {
                    s.contents.push_page(pa, len);
                    Some(true)
                } else {
                    Some(false)
                }
            };
            match pushed {
                Some(true) => {}
                Some(false) => {
                    // Another writer took the slot meanwhile.
                    pin::unpin(pa);
                    break;
                }
                None => {
                    pin::unpin(pa);
                    let e = self.broken();
                    return partial(done, e);
                }
            }
            self.pipe.wake_readers();
            done += len;
        }
        Ok(done as u64)
    }

    fn poll(&self) -> u16 {
        let s = self.pipe.state.lock();
        if self.write {
            let mut m = 0;
            if s.contents.room() >= PIPE_BUF {
                m |= POLLOUT | POLLWRNORM;
            }
            if s.readers == 0 {
                m |= POLLERR;
            }
            m
        } else {
            let mut m = 0;
            if !s.contents.is_empty() {
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
