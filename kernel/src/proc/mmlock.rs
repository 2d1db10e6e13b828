//! The lock of a process's address space (lock table row L2, `mm/mod.rs`): a spin
//! lock whose waiters sleep. Its holder never sleeps and most sections are short (one
//! fault, one batch of a system call), so a waiter spins a little first; but a thread
//! that finds it held while another thread of its process zeroes a 2 MiB folio or
//! forks a large VMA under it would burn its CPU for all of that, and under a
//! hypervisor (or QEMU's round-robin vCPUs) also the turns of the holder's vCPU. So
//! after `SPINS` tries it sleeps on the lock's wait queue until the holder's unlock
//! wakes it, as Linux's mmap_lock (a sleeping lock) makes its waiters do.
//!
//! # Protocol
//!
//! `waiting` counts the tasks between deciding to sleep and having the lock. A waiter
//! increments it, then sleeps until the lock is free (`WaitQueue::wait_until` joins the
//! list before it tests); an unlocker releases the lock, then (after a full fence)
//! reads `waiting` and wakes the list only if it is not 0. Either the unlocker's read
//! comes after the waiter's increment (it wakes it), or the waiter's test comes after
//! the release (it sees the lock free): no wake-up is lost, and an uncontended unlock
//! costs one load. Contexts with no task (the idle loop running in-kernel tests) only
//! spin.

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{fence, AtomicUsize, Ordering};

use super::sched::{self, WaitQueue};
use crate::arch::aarch64::mm::machine::Mm;
use crate::sync::SpinLock;

/// Tries before a waiter sleeps: a short section ends within them.
const SPINS: usize = 256;

pub struct MmLock {
    inner: SpinLock<Option<Mm>>,
    waiting: AtomicUsize,
    waiters: WaitQueue,
}

/// The address space, locked; the unlock on drop wakes sleeping waiters.
pub struct MmGuard<'a> {
    lock: &'a MmLock,
    guard: Option<spin::MutexGuard<'a, Option<Mm>>>,
}

impl MmLock {
    pub fn new(mm: Option<Mm>) -> Self {
        MmLock {
            inner: SpinLock::new(mm),
            waiting: AtomicUsize::new(0),
            waiters: WaitQueue::new(),
        }
    }

    pub fn lock(&self) -> MmGuard<'_> {
        loop {
            for _ in 0..SPINS {
                if let Some(g) = self.try_lock() {
                    return g;
                }
                core::hint::spin_loop();
            }
            if sched::current().is_none() {
                continue;
            }
            self.waiting.fetch_add(1, Ordering::SeqCst);
            self.waiters.wait_until(|| !self.inner.is_locked());
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub fn try_lock(&self) -> Option<MmGuard<'_>> {
        self.inner.try_lock().map(|g| MmGuard {
            lock: self,
            guard: Some(g),
        })
    }
}

impl Deref for MmGuard<'_> {
    type Target = Option<Mm>;

    fn deref(&self) -> &Option<Mm> {
        self.guard.as_ref().expect("held until drop")
    }
}

impl DerefMut for MmGuard<'_> {
    fn deref_mut(&mut self) -> &mut Option<Mm> {
        self.guard.as_mut().expect("held until drop")
    }
}

impl Drop for MmGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        fence(Ordering::SeqCst);
        if self.lock.waiting.load(Ordering::SeqCst) != 0 {
            self.lock.waiters.wake_all();
        }
    }
}
