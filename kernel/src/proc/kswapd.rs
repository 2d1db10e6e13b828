//! The reclaim thread (Linux's kswapd): it sleeps on a wait queue until a fault finds
//! free memory under the low watermark with something reclaimable, then runs reclaim
//! passes over every address space until free memory is above the high watermark or a
//! round of the lazyfree list gives nothing back (`mm::reclaim::kswapd_balance`), and
//! sleeps again. The
//! faulting process allocates on meanwhile; only an allocation that fails reclaims
//! itself (`mm::reclaim::direct`).
//!
//! mm cannot import proc, so `start` installs the wake hook (`WAIT.wake_all`) in mm
//! (`mm::reclaim::set_kswapd_hook`); the request is mm's `WANTED` flag (protocol in
//! `mm::reclaim`'s module doc). A hook rather than polling: no wake-ups while memory is
//! plentiful, no polling delay when it is not. The passes reach each address space
//! with a trylock of its `Mm` (the owner hook), holding no `Mm` of their own, and
//! the thread gives the CPU away (`sched::schedule`) after each bounded step of them.
//!
//! Started with /init (`start`), stopped at shutdown (`stop`), so that the frame
//! check at power-off still sees every frame back.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use super::kthread::{join_kthread, kthread_exit, spawn_kthread};
use super::sched::{self, WaitQueue};
use super::task::Task;
use crate::arch::aarch64::mm::machine::KernelMachine;
use crate::mm::reclaim;
use crate::sync::SpinLock;

static STOP: AtomicBool = AtomicBool::new(false);
static THREAD: SpinLock<Option<Arc<Task>>> = SpinLock::new(None);
/// The thread sleeps here; `wake` (mm's hook) and `stop` wake it.
static WAIT: WaitQueue = WaitQueue::new();

/// Start the thread (once) and give mm the way to wake it.
pub fn start() {
    let mut t = THREAD.lock();
    if t.is_none() {
        STOP.store(false, Ordering::Release);
        *t = spawn_kthread("kswapd", run, 0);
        if t.is_some() {
            reclaim::set_kswapd_hook(Some(wake));
        }
    }
}

/// Stop the thread and reap it (shutdown): faults reclaim inline again, and its stack
/// is free on return, before the frame check at power-off.
pub fn stop() {
    let t = THREAD.lock().take();
    if let Some(t) = t {
        reclaim::set_kswapd_hook(None);
        STOP.store(true, Ordering::Release);
        WAIT.wake_all();
        join_kthread(t);
    }
}

/// Whether the thread exists (it is one of the tasks `task::count` counts).
pub fn running() -> bool {
    THREAD.lock().is_some()
}

/// mm's wake hook: `WANTED` is already set.
fn wake() {
    WAIT.wake_all();
}

extern "C" fn run(_: u64) -> ! {
    loop {
        WAIT.wait_until(|| STOP.load(Ordering::Acquire) || reclaim::requested());
        if STOP.load(Ordering::Acquire) {
            break;
        }
        if reclaim::take_request() {
            reclaim::kswapd_balance::<KernelMachine>(sched::schedule);
        }
    }
    kthread_exit()
}
