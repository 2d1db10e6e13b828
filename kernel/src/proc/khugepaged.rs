//! The collapse thread (Linux's khugepaged, for every order): it wakes every
//! `scan_sleep_millisecs` (`alloc_sleep_millisecs` after a failed allocation), takes
//! the queued hints first, then goes on round-robin over every process's address
//! space (unlike Linux, which visits only those registered while a PMD size was
//! allowed, so switching a size to `always` later is enough), one 2 MiB window of one
//! VMA at a time, until it has covered `pages_to_scan` entries. Each window is
//! scanned under the process's `Mm` lock, dropped between windows. Going round every
//! process once counts `full_scans`.
//!
//! The thread only ever *tries* an address space's `Mm` lock: that lock is a spin
//! lock a process holds for a whole fork or fault, and a thread waiting on it would
//! spin away its CPU (measured: a sixth of all samples of a fork-heavy run). A busy
//! process is passed over; the round-robin comes back to it.
//!
//! The kernel is not preempted, so the thread yields by itself whatever its settings:
//! after every window (`sched::cond_resched`, when the tick asked: a huge
//! `pages_to_scan` costs other tasks one tick at a time), and at every nap, even of 0
//! ms (a nap that returned at once left `-smp 1` to the thread for good).
//!
//! Started with /init (`start`), stopped at shutdown (`stop`), so that the frame
//! check at power-off still sees every frame back.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use super::kthread::{join_kthread, kthread_exit, spawn_kthread};
use super::sched;
use super::task::{self, Pid, Task};
use crate::mm::addr::PMD_SIZE;
use crate::mm::collapse::{
    take_hint, Limits, Tunable, ALLOC_SLEEP_MILLISECS, FULL_SCANS, PAGES_TO_SCAN,
    SCAN_SLEEP_MILLISECS,
};
use crate::mm::{mthp, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::sync::SpinLock;

static STOP: AtomicBool = AtomicBool::new(false);
static THREAD: SpinLock<Option<Arc<Task>>> = SpinLock::new(None);

/// Start the thread (once).
pub fn start() {
    let mut t = THREAD.lock();
    if t.is_none() {
        STOP.store(false, Ordering::Release);
        *t = spawn_kthread("khugepaged", run, 0);
    }
}

/// Stop the thread and reap it (shutdown): its stack is free on return, before the
/// frame check at power-off.
pub fn stop() {
    let t = THREAD.lock().take();
    if let Some(t) = t {
        STOP.store(true, Ordering::Release);
        join_kthread(t);
    }
}

/// Whether the thread exists (it is one of the tasks `task::count` counts).
pub fn running() -> bool {
    THREAD.lock().is_some()
}

/// Where the round-robin scan stands.
struct Cursor {
    pid: Pid,
    va: VirtAddr,
}

extern "C" fn run(_: u64) -> ! {
    let mut cursor = Cursor {
        pid: 0,
        va: VirtAddr(0),
    };
    while !STOP.load(Ordering::Acquire) {
        let alloc_failed = scan_round(&mut cursor, PAGES_TO_SCAN.get() as usize);
        nap(if alloc_failed {
            &ALLOC_SLEEP_MILLISECS
        } else {
            &SCAN_SLEEP_MILLISECS
        });
    }
    kthread_exit()
}

/// Sleep as long as `sleep` says, in slices so that `stop` and a new value written to
/// sysfs take effect within one slice. A shorter new value of either sleep shortens
/// the nap, as Linux's stores of `scan_sleep_millisecs` and `alloc_sleep_millisecs`
/// wake khugepaged: a nap after a failed allocation (`alloc_sleep_millisecs`, 60 s by
/// default) kept a new `scan_sleep_millisecs` of 0 waiting for it (khugepaged_knobs
/// after thp_lazyfree's memory pressure, `-smp 1`). A nap of 0 ms still lets every
/// runnable task have its turn first.
fn nap(sleep: &Tunable) {
    const SLICE_NS: u64 = 10_000_000;
    sched::schedule();
    let start = crate::time::uptime_ns();
    let both = || [SCAN_SLEEP_MILLISECS.get(), ALLOC_SLEEP_MILLISECS.get()];
    let set = both();
    loop {
        let now = crate::time::uptime_ns();
        // This nap's own sleep, or a shorter one newly written to either tunable (a
        // longer one changes nothing: a test that sets an hour to keep the thread
        // out of its measurement must not get a scan round at that moment).
        let changed = both()
            .into_iter()
            .zip(set)
            .filter(|(v, was)| v != was)
            .map(|(v, _)| v);
        let want = u64::from(changed.fold(sleep.get(), u32::min)) * 1_000_000;
        if STOP.load(Ordering::Acquire) || now - start >= want {
            return;
        }
        sched::sleep_until(now + SLICE_NS.min(want - (now - start)));
    }
}

/// One wake-up's work: hints, then the round-robin, `budget` entries in all. Returns
/// whether an allocation failed.
fn scan_round(cursor: &mut Cursor, budget: usize) -> bool {
    let mut left = budget;
    let mut alloc_failed = false;
    while left > 0 {
        let Some((root, window)) = take_hint() else {
            break;
        };
        if let Some(t) = task_with_root(root) {
            alloc_failed |= scan_window(&t, window, window.add(PMD_SIZE));
        }
        left = left.saturating_sub(PMD_SIZE / PAGE_SIZE);
        sched::cond_resched();
    }
    let mut wrapped = false;
    while left > 0 && !STOP.load(Ordering::Acquire) {
        // Every path through the loop is one window's work at most, no lock held.
        sched::cond_resched();
        let Some(t) = task::get(cursor.pid)
            .filter(|t| t.is_user())
            .or_else(|| next_user_task(cursor))
        else {
            if wrapped {
                break;
            }
            // Past the last process: a full scan ends, the next starts from the first.
            FULL_SCANS.fetch_add(1, Ordering::Relaxed);
            wrapped = true;
            *cursor = Cursor {
                pid: 0,
                va: VirtAddr(0),
            };
            continue;
        };
        let Some(guard) = t.mm.try_lock() else {
            // Busy: the next process now, this one on the next round.
            *cursor = Cursor {
                pid: t.pid() + 1,
                va: VirtAddr(0),
            };
            left = left.saturating_sub(PMD_SIZE / PAGE_SIZE);
            continue;
        };
        let next = guard
            .as_ref()
            .and_then(|mm| mm.vmas.next_from(cursor.va).cloned());
        drop(guard);
        let Some(vma) = next else {
            *cursor = Cursor {
                pid: t.pid() + 1,
                va: VirtAddr(0),
            };
            continue;
        };
        let window = cursor.va.max(vma.start).align_down(PMD_SIZE);
        let end = window.add(PMD_SIZE).min(vma.end);
        alloc_failed |= scan_window(&t, window, end);
        cursor.va = end;
        left = left.saturating_sub(PMD_SIZE / PAGE_SIZE);
    }
    alloc_failed
}

/// The next process after the cursor's, from its start.
fn next_user_task(cursor: &mut Cursor) -> Option<Arc<Task>> {
    let mut pid = cursor.pid;
    loop {
        let t = task::next_after(pid)?;
        if t.is_user() {
            *cursor = Cursor {
                pid: t.pid(),
                va: VirtAddr(0),
            };
            return Some(t);
        }
        pid = t.pid();
    }
}

/// The process whose address space has the root table `root` (a hint's); a busy
/// one is passed over (its hint is dropped, the round-robin covers the window).
fn task_with_root(root: PhysAddr) -> Option<Arc<Task>> {
    let mut pid = 0;
    while let Some(t) = task::next_after(pid) {
        pid = t.pid();
        let ours =
            t.mm.try_lock()
                .is_some_and(|mm| mm.as_ref().is_some_and(|mm| mm.tables.root() == root));
        if ours {
            return Some(t);
        }
    }
    None
}

/// Scan the VMAs of `t` that meet `[window, end)` (inside one 2 MiB window) under its
/// `Mm` lock, if it is free; returns whether an allocation failed.
fn scan_window(t: &Task, window: VirtAddr, end: VirtAddr) -> bool {
    let Some(mut guard) = t.mm.try_lock() else {
        return false;
    };
    let Some(mm) = guard.as_mut() else {
        return false;
    };
    let base = window.align_down(PMD_SIZE);
    let limits = Limits::thread();
    let mut at = window;
    let mut failed = false;
    while at < end {
        let Some(vma) = mm.vmas.next_from(at).cloned().filter(|v| v.start < end) else {
            break;
        };
        let allowed = mthp::POLICY.allowed_orders(vma.huge);
        failed |= mm
            .collapse_window(base, &vma, allowed, &limits)
            .alloc_failed;
        at = vma.end;
    }
    failed
}
