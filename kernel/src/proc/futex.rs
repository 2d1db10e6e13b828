//! Futexes: the kernel half of every glibc lock, condition variable and
//! pthread_join. A waiter sleeps on a 32-bit user word while it holds the value it
//! expects; a waker changes the word in user space, then wakes up to `n` waiters of
//! it. A futex is named by the address space, the word's address and whether the
//! operation was PRIVATE: every word a futex can live on here is private anonymous
//! memory, where Linux too keys a process-shared futex by the address space and the
//! address, but marks it apart from a private one, so a private wait is never woken
//! by a shared wake (what glibc's pthread_join relies on being consistent: the
//! kernel's wake of the CLONE_CHILD_CLEARTID word is a shared one).
//!
//! # Protocol
//!
//! One list, `WAITERS` (an IRQ-safe lock: the scheduler's sleep protocol needs one),
//! holds every sleeping waiter with its key, bitset and a `woken` mark. The wait
//! joins the list *before* it reads the user word, with no lock held for the read
//! (which may fault), and sleeps only if the word still holds the expected value; a
//! waker changes the word *before* it takes the list. So either the waker's list
//! lock comes after the waiter joined (it finds and wakes it), or before, and then
//! the waiter's read comes after the waker's store and sees the new value (Linux
//! gets the same from reading the word under the hash-bucket lock). A waker marks a
//! waiter `woken` and wakes its task under the list lock; only the waiter removes
//! its own entry, so a wake-up counts once and `woken` survives spurious wake-ups.
//! Requeue moves waiters to another word by changing their key under the lock.
//! Lock order: `WAITERS`, then the run queue (`sched`).
//!
//! At exit and exec a thread's robust list is walked here (`exit_robust_list`, the
//! walk itself in `proc::robust`), in its own context with no lock held: its reads
//! and swaps of user words may fault like any user access.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;

use super::robust::{self, UserWords};
use super::sched;
use super::task::Task;
use crate::arch::aarch64::uaccess::{cmpxchg_user_u32, read_user};
use crate::sync::IrqSpinLock;
use crate::uapi::*;

/// A futex's name: the address space (its shared cell), the word's address, and
/// whether it is process-shared (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    mm: usize,
    addr: u64,
    shared: bool,
}

fn key(t: &Task, addr: u64, shared: bool) -> Key {
    Key {
        mm: Arc::as_ptr(&t.mm) as usize,
        addr,
        shared,
    }
}

struct Waiter {
    key: Key,
    bitset: u32,
    task: Arc<Task>,
    woken: bool,
}

/// At most one entry per task: a task waits on one futex at a time.
static WAITERS: IrqSpinLock<Vec<Waiter>> = IrqSpinLock::new(Vec::new());

/// FUTEX_WAIT(_BITSET): sleep while the word at `addr` holds `val`, until a wake
/// whose bitset meets `bitset`, a signal (ERESTARTSYS), or the uptime `deadline`
/// (ETIMEDOUT; u64::MAX: none). EAGAIN if the word held another value.
pub fn wait(
    t: &Arc<Task>,
    addr: u64,
    shared: bool,
    val: u32,
    bitset: u32,
    deadline: u64,
) -> Result<u64, Errno> {
    let key = key(t, addr, shared);
    let entry = |task: &Arc<Task>| Waiter {
        key,
        bitset,
        task: task.clone(),
        woken: false,
    };
    WAITERS.lock().push(entry(t));
    let leave = || WAITERS.lock().retain(|w| !Arc::ptr_eq(&w.task, t));
    match read_user::<u32>(addr as usize) {
        Err(_) => {
            leave();
            return Err(EFAULT);
        }
        Ok(v) if v != val => {
            leave();
            return Err(EAGAIN);
        }
        Ok(_) => {}
    }
    let woken = Cell::new(false);
    let mine = |w: &Waiter| Arc::ptr_eq(&w.task, t);
    sched::sleep_on_until(
        &WAITERS,
        entry,
        |w| &w.task,
        deadline,
        || {
            if WAITERS.lock().iter().any(|w| mine(w) && w.woken) {
                woken.set(true);
            }
            woken.get() || t.signals.interrupted()
        },
    );
    if woken.get() {
        Ok(0)
    } else if t.signals.interrupted() {
        Err(ERESTARTSYS)
    } else {
        Err(ETIMEDOUT)
    }
}

/// FUTEX_WAKE(_BITSET): wake up to `n` waiters of the word at `addr` whose bitset
/// meets `bitset`; how many were woken.
pub fn wake(t: &Task, addr: u64, shared: bool, n: u32, bitset: u32) -> u64 {
    let key = key(t, addr, shared);
    let mut list = WAITERS.lock();
    let mut woken = 0;
    for w in list
        .iter_mut()
        .filter(|w| w.key == key && !w.woken && w.bitset & bitset != 0)
        .take(n as usize)
    {
        w.woken = true;
        sched::wake(&w.task);
        woken += 1;
    }
    woken
}

/// FUTEX_(CMP_)REQUEUE: wake up to `n_wake` waiters of `addr`, move up to
/// `n_move` of the others to `addr2`; how many were woken and moved. `expect` (CMP)
/// was checked against the word by the caller.
pub fn requeue(t: &Task, addr: u64, shared: bool, n_wake: u32, addr2: u64, n_move: u32) -> u64 {
    let (from, to) = (key(t, addr, shared), key(t, addr2, shared));
    let mut list = WAITERS.lock();
    let (mut woken, mut moved) = (0u32, 0u32);
    for w in list.iter_mut().filter(|w| w.key == from && !w.woken) {
        if woken < n_wake {
            w.woken = true;
            sched::wake(&w.task);
            woken += 1;
        } else if moved < n_move {
            w.key = to;
            moved += 1;
        } else {
            break;
        }
    }
    u64::from(woken + moved)
}

/// The calling thread `t` exits or execs: walk the robust list it registered
/// (`proc::robust`), marking the futexes it holds FUTEX_OWNER_DIED and waking one
/// waiter of each, and forget the list (Linux's `futex_cleanup`).
pub fn exit_robust_list(t: &Task) {
    let head = t.robust_list.swap(0, core::sync::atomic::Ordering::AcqRel);
    if head != 0 {
        robust::exit_robust_list(head, t.pid(), &mut Dying(t));
    }
}

/// The memory of a dying thread, through the user-access routines.
struct Dying<'a>(&'a Task);

impl UserWords for Dying<'_> {
    fn read_u64(&mut self, addr: u64) -> Option<u64> {
        read_user(addr as usize).ok()
    }
    fn read_u32(&mut self, addr: u64) -> Option<u32> {
        read_user(addr as usize).ok()
    }
    fn cmpxchg_u32(&mut self, addr: u64, old: u32, new: u32) -> Option<u32> {
        cmpxchg_user_u32(addr as usize, old, new).ok()
    }
    fn wake_one(&mut self, addr: u64) {
        wake(self.0, addr, true, 1, FUTEX_BITSET_MATCH_ANY);
    }
}
