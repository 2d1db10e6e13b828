//! userfaultfd contexts (Linux's `struct userfaultfd_ctx`): the faults waiting on
//! each, and the wait itself. A context is numbered (`UffdId`, what a registered VMA
//! names); `lookup` finds it from the number. The descriptor side (read, poll, the
//! ioctls) is `syscall::userfaultfd`, the address-space side `mm::userfault`.
//!
//! # The wait protocol (Linux's `handle_userfault` and VM_FAULT_RETRY)
//!
//! A user fault the address space hands out (`FaultError::Userfault`) comes here with
//! the `Mm` lock (L2) already dropped. The thread queues one waiter (its message:
//! address, write flag, thread id), then asks the address space again, under the
//! lock, whether the fault still needs the handler (`Mm::uffd_must_wait`): a fill
//! maps under the lock and wakes after it, so either this check sees the page, or
//! the fill's wake finds the waiter. Then the thread sleeps until a wake covers its
//! address (UFFDIO_COPY, ZEROPAGE, WAKE, UNREGISTER), the context is released (the
//! last descriptor closed: the registration is gone), or a signal is pending; it
//! removes its waiter and returns to EL0, where the access faults again. The waiters
//! are the only per-fault memory: one per faulting thread. The context's `state`
//! lock is a leaf taken under no other (it nests inside nothing of the lock table).

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::mmlock::MmLock;
use super::pipe::POLLERS;
use super::sched::{self, WaitQueue};
use super::task::Task;
use crate::mm::vma::UffdId;
use crate::mm::VirtAddr;
use crate::sync::SpinLock;

/// One waiting fault (Linux's `userfaultfd_wait_queue`).
struct Waiter {
    token: u64,
    /// The faulting address (page-aligned unless UFFD_FEATURE_EXACT_ADDRESS).
    addr: u64,
    write: bool,
    tid: u32,
    /// Its message was read: no longer pending, still waiting.
    read: bool,
    /// A wake covered it.
    woken: bool,
}

struct State {
    waiters: Vec<Waiter>,
    /// The last descriptor is closed: every waiter goes.
    released: bool,
}

/// A userfaultfd message for a fault: the fields of `struct uffd_msg` it sets.
pub struct Message {
    pub addr: u64,
    pub write: bool,
    pub tid: u32,
}

pub struct Ctx {
    pub id: UffdId,
    /// The address space the context serves (its creator's).
    pub mm: Weak<MmLock>,
    /// The features the UFFDIO_API handshake enabled, with `INITIALIZED` set; 0 before.
    pub features: AtomicU64,
    state: SpinLock<State>,
    /// Faulting threads sleep here.
    faults: WaitQueue,
    /// Readers wait here for a message.
    pub readable: WaitQueue,
}

/// Contexts by number (a number is never used again).
static CTXS: SpinLock<BTreeMap<UffdId, Weak<Ctx>>> = SpinLock::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);
static TOKENS: AtomicU64 = AtomicU64::new(1);

/// A new context for the address space `mm`.
pub fn new(mm: &Arc<MmLock>) -> Arc<Ctx> {
    let id = UffdId(NEXT.fetch_add(1, Ordering::Relaxed));
    let ctx = Arc::new(Ctx {
        id,
        mm: Arc::downgrade(mm),
        features: AtomicU64::new(0),
        state: SpinLock::new(State {
            waiters: Vec::new(),
            released: false,
        }),
        faults: WaitQueue::new(),
        readable: WaitQueue::new(),
    });
    CTXS.lock().insert(id, Arc::downgrade(&ctx));
    ctx
}

fn lookup(id: UffdId) -> Option<Arc<Ctx>> {
    CTXS.lock().get(&id).and_then(Weak::upgrade)
}

impl Drop for Ctx {
    fn drop(&mut self) {
        CTXS.lock().remove(&self.id);
    }
}

impl Ctx {
    /// Messages of the faults not yet read, oldest first, at most `max`; they become read.
    pub fn take_messages(&self, max: usize) -> Vec<Message> {
        let mut s = self.state.lock();
        s.waiters
            .iter_mut()
            .filter(|w| !w.read && !w.woken)
            .take(max)
            .map(|w| {
                w.read = true;
                Message {
                    addr: w.addr,
                    write: w.write,
                    tid: w.tid,
                }
            })
            .collect()
    }

    /// Whether a fault's message waits to be read.
    pub fn pending(&self) -> bool {
        self.state
            .lock()
            .waiters
            .iter()
            .any(|w| !w.read && !w.woken)
    }

    /// Wake the faults at addresses in `[start, start + len)` (Linux's `wake_userfault`).
    pub fn wake(&self, start: u64, len: u64) {
        let mut any = false;
        for w in self.state.lock().waiters.iter_mut() {
            if w.addr.wrapping_sub(start) < len {
                w.woken = true;
                any = true;
            }
        }
        if any {
            self.faults.wake_all();
        }
    }

    /// The last descriptor is closed (after the address space forgot the context):
    /// every fault waiting goes back to retry, readers and pollers wake.
    pub fn release(&self) {
        self.state.lock().released = true;
        self.faults.wake_all();
        self.readable.wake_all();
        POLLERS.wake_all();
    }

    fn done(&self, token: u64) -> bool {
        let s = self.state.lock();
        s.released || s.waiters.iter().any(|w| w.token == token && w.woken)
    }
}

/// A user fault of `t` at `va` on a page of a VMA registered with context `id`, the
/// `Mm` lock not held: wait as the module doc says, then return for the access to be
/// retried.
pub fn wait(t: &Task, id: UffdId, va: VirtAddr, write: bool) {
    let Some(ctx) = lookup(id) else {
        // Its last descriptor is closing: the registration goes in a moment.
        sched::cond_resched();
        return;
    };
    let features = ctx.features.load(Ordering::Relaxed);
    let token = TOKENS.fetch_add(1, Ordering::Relaxed);
    {
        let mut s = ctx.state.lock();
        if s.released {
            return;
        }
        s.waiters.push(Waiter {
            token,
            addr: if features & crate::uapi::UFFD_FEATURE_EXACT_ADDRESS != 0 {
                va.as_u64()
            } else {
                va.align_down(crate::mm::PAGE_SIZE).as_u64()
            },
            write,
            tid: t.pid(),
            read: false,
            woken: false,
        });
    }
    ctx.readable.wake_all();
    POLLERS.wake_all();
    let still =
        t.mm.lock()
            .as_ref()
            .is_some_and(|mm| mm.uffd_must_wait(id, va));
    if still {
        ctx.faults
            .wait_until(|| t.signals.interrupted() || ctx.done(token));
    }
    ctx.state.lock().waiters.retain(|w| w.token != token);
}
