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
//! are the only per-fault memory: one per faulting thread.
//!
//! A fork with UFFD_FEATURE_EVENT_FORK (`fork`, `fork_events`) queues a waiter of
//! its own, the UFFD_EVENT_FORK message, and sleeps until a read has taken it in.
//!
//! Locks: the registry (`CTXS`) and a context's `state` are leaves: nothing is taken
//! under them; `CTXS` may be taken under the `Mm` lock (L2: fork's `lookup`), a
//! context's `state` never is, and a release takes the `Mm` lock with neither held.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::mmlock::MmLock;
use super::pipe::POLLERS;
use super::sched::{self, WaitQueue};
use super::task::Task;
use crate::arch::aarch64::mm::machine::Mm;
use crate::mm::vma::UffdId;
use crate::mm::VirtAddr;
use crate::sync::SpinLock;
use crate::uapi::{UFFD_FEATURE_EVENT_FORK, UFFD_FEATURE_EXACT_ADDRESS};

/// One waiting thread (Linux's `userfaultfd_wait_queue`): a fault, or a fork whose
/// event must be read before the fork returns.
struct Waiter {
    token: u64,
    what: Event,
    /// Its message was read: no longer pending (a fault still waits for a wake).
    read: bool,
    /// A wake covered it (a fault), or its message was taken in (a fork).
    woken: bool,
}

/// What a waiter's message says.
#[derive(Clone)]
pub enum Event {
    /// UFFD_EVENT_PAGEFAULT: the address (page-aligned unless
    /// UFFD_FEATURE_EXACT_ADDRESS), whether a write, the thread.
    Fault { addr: u64, write: bool, tid: u32 },
    /// UFFD_EVENT_FORK: the child's context, for which the reader gets a descriptor.
    Fork(Arc<Ctx>),
}

struct State {
    waiters: Vec<Waiter>,
    /// The last descriptor is closed: every waiter goes.
    released: bool,
}

/// A message taken by read(2).
pub struct Message {
    pub token: u64,
    pub what: Event,
}

pub struct Ctx {
    pub id: UffdId,
    /// The address space the context serves (its creator's).
    pub mm: Weak<MmLock>,
    /// The features the UFFDIO_API handshake enabled, with `INITIALIZED` set; 0 before.
    pub features: AtomicU64,
    /// userfaultfd's O_CLOEXEC and O_NONBLOCK, for a fork event's descriptor.
    pub flags: u64,
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

/// A new context for the address space `mm`, with userfaultfd's `flags`.
pub fn new(mm: &Arc<MmLock>, flags: u64) -> Arc<Ctx> {
    with_id(UffdId(NEXT.fetch_add(1, Ordering::Relaxed)), mm, flags, 0)
}

fn with_id(id: UffdId, mm: &Arc<MmLock>, flags: u64, features: u64) -> Arc<Ctx> {
    let ctx = Arc::new(Ctx {
        id,
        mm: Arc::downgrade(mm),
        features: AtomicU64::new(features),
        flags,
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
    /// Messages not yet read, the faults first then the events (as Linux), at most
    /// `max`, and at most one fork event; they become read.
    pub fn take_messages(&self, max: usize) -> Vec<Message> {
        let mut s = self.state.lock();
        let mut out: Vec<Message> = Vec::new();
        for faults in [true, false] {
            for w in s.waiters.iter_mut() {
                let is_fault = matches!(w.what, Event::Fault { .. });
                if out.len() == max || w.read || w.woken || is_fault != faults {
                    continue;
                }
                if out.iter().any(|m| matches!(m.what, Event::Fork(_))) {
                    break;
                }
                w.read = true;
                out.push(Message {
                    token: w.token,
                    what: w.what.clone(),
                });
            }
        }
        out
    }

    /// A fork event was taken in (its descriptor installed, or the attempt failed and
    /// released the child's context): the fork goes on.
    pub fn complete(&self, token: u64) {
        self.wake_where(|w| w.token == token);
    }

    /// Whether a message waits to be read.
    pub fn pending(&self) -> bool {
        self.state
            .lock()
            .waiters
            .iter()
            .any(|w| !w.read && !w.woken)
    }

    /// Wake the faults at addresses in `[start, start + len)` (Linux's `wake_userfault`).
    pub fn wake(&self, start: u64, len: u64) {
        self.wake_where(
            |w| matches!(w.what, Event::Fault { addr, .. } if addr.wrapping_sub(start) < len),
        );
    }

    fn wake_where(&self, hit: impl Fn(&Waiter) -> bool) {
        let mut any = false;
        for w in self.state.lock().waiters.iter_mut().filter(|w| hit(w)) {
            w.woken = true;
            any = true;
        }
        if any {
            self.faults.wake_all();
        }
    }

    /// The last descriptor is closed: the address space forgets the context (Linux's
    /// `userfaultfd_release_all`), then every waiting thread goes back to retry,
    /// readers and pollers wake.
    pub fn release(&self) {
        if let Some(mm) = self.mm.upgrade() {
            if let Some(mm) = mm.lock().as_mut() {
                mm.uffd_release(self.id);
            }
        }
        self.state.lock().released = true;
        self.faults.wake_all();
        self.readable.wake_all();
        POLLERS.wake_all();
    }

    /// Queue a waiter for `what`; its token (none once released).
    fn queue(&self, what: Event) -> Option<u64> {
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        let mut s = self.state.lock();
        if s.released {
            return None;
        }
        s.waiters.push(Waiter {
            token,
            what,
            read: false,
            woken: false,
        });
        drop(s);
        self.readable.wake_all();
        POLLERS.wake_all();
        Some(token)
    }

    fn dequeue(&self, token: u64) {
        self.state.lock().waiters.retain(|w| w.token != token);
    }

    fn woken(&self, token: u64) -> bool {
        let s = self.state.lock();
        s.waiters.iter().any(|w| w.token == token && w.woken)
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
    let exact = ctx.features.load(Ordering::Relaxed) & UFFD_FEATURE_EXACT_ADDRESS != 0;
    let addr = if exact {
        va.as_u64()
    } else {
        match t.mm.lock().as_ref() {
            Some(mm) => mm.uffd_fault_page(va).as_u64(),
            None => return,
        }
    };
    let tid = t.pid();
    let Some(token) = ctx.queue(Event::Fault { addr, write, tid }) else {
        return;
    };
    let still =
        t.mm.lock()
            .as_ref()
            .is_some_and(|mm| mm.uffd_must_wait(id, va));
    if still {
        ctx.faults
            .wait_until(|| t.signals.interrupted() || ctx.done(token));
    }
    ctx.dequeue(token);
}

/// The child's contexts of a fork (Linux's `dup_userfaultfd`), decided with the
/// parent's `Mm` lock held: each context registered in `parent` with
/// UFFD_FEATURE_EVENT_FORK gets a number for the child's, and `child`'s VMAs are
/// registered with it; the others' VMAs stay unregistered in the child.
pub fn fork(parent: &Mm, child: &mut Mm) -> Vec<(Arc<Ctx>, UffdId)> {
    let mut pairs: Vec<(Arc<Ctx>, UffdId)> = Vec::new();
    parent.uffd_fork(child, |old| {
        if let Some((_, new)) = pairs.iter().find(|(c, _)| c.id == old) {
            return Some(*new);
        }
        let ctx = lookup(old)?;
        if ctx.features.load(Ordering::Relaxed) & UFFD_FEATURE_EVENT_FORK == 0 {
            return None;
        }
        let new = UffdId(NEXT.fetch_add(1, Ordering::Relaxed));
        pairs.push((ctx, new));
        Some(new)
    });
    pairs
}

/// After the child's address space `child` is in its lock, before the child runs:
/// its contexts made, and for each a UFFD_EVENT_FORK message queued on the parent's
/// context; the forking thread `t` waits until the reader has taken each in (its
/// descriptor installed), the parent's context is released, or `t` is killed. A
/// child's context whose event was not taken in is released: the child's VMAs forget
/// it (Linux's `userfaultfd_event_wait_completion`).
pub fn fork_events(t: &Task, child: &Arc<MmLock>, pairs: Vec<(Arc<Ctx>, UffdId)>) {
    for (ctx, id) in pairs {
        let features = ctx.features.load(Ordering::Relaxed);
        let new = with_id(id, child, ctx.flags, features);
        let mut taken = false;
        if let Some(token) = ctx.queue(Event::Fork(new.clone())) {
            ctx.faults
                .wait_until(|| t.doomed.load(Ordering::Acquire) || ctx.done(token));
            taken = ctx.woken(token);
            ctx.dequeue(token);
        }
        if !taken {
            new.release();
        }
    }
}
