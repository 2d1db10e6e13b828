//! Reclaim without swap: what can be given back is clean lazyfree folios (discarded
//! whole, `lazyfree`) and the unmapped pages of partially mapped folios (the
//! deferred-split shrinker, `folio::shrink_deferred`); dirty anonymous memory is never
//! dropped. One pass does both, oldest lazyfree folio first, each entry visited at most
//! once: a young folio has its AF cleared and goes to the young end (a second round),
//! a dirty one goes back to ordinary memory, a clean old one is freed.
//!
//! Who runs a pass:
//! - the reclaim thread (`proc::kswapd`, Linux's kswapd), woken by an allocation in a
//!   fault that finds free memory under the low watermark (`if_low`); it runs passes
//!   until free memory is above the high watermark or a pass frees nothing
//!   (`kswapd_balance`). Before the thread exists (and in host tests) the fault runs
//!   that pass itself;
//! - an allocation that failed (`direct`), before the fault falls back to a smaller
//!   order, and before the last order-0 failure becomes ENOMEM (MAP_POPULATE,
//!   MADV_POPULATE_*) or the out-of-memory kill of the faulting process;
//! - MADV_PAGEOUT on a range, for that range only (`Mm::reclaim_lazyfree`, no aging);
//! - on demand, `1` written to /proc/lazyfree (`pass_all`, no address space locked).
//!
//! The pass runs with the caller's own `Mm` locked, if any (handed in as `local`) and
//! reaches other address spaces through the owner hook the process layer installs
//! (`set_owner_hook`), which must only *try* to lock the owner's `Mm` (lazyfree's
//! protocol: never wait for a second `Mm` lock). Lock order: `Mm` -> `SHRINKER` (inside
//! `shrink_deferred`) -> folio -> queue or list -> frames; the lazyfree part holds no
//! folio lock when it takes the next `Mm`.
//!
//! **Waking the thread.** The process layer installs a wake hook (`set_kswapd_hook`);
//! mm cannot import proc. `WANTED` is the request: `if_low` sets it and calls the hook
//! only on its false -> true edge, so a fault under the watermark costs one atomic
//! swap while a request is pending; the thread clears it (`take_request`) *before* its
//! passes, so a fault that finds memory low during them sets it again and the thread
//! goes round once more instead of missing it. A hook rather than a polled atomic: the
//! thread sleeps until there is work (no periodic wake-ups while memory is plentiful)
//! and starts at once when there is (no polling delay, which under pressure would
//! leave the fault to direct reclaim). The check sits in the fault, where user memory
//! is allocated, not in the frame allocator, so that no allocation (the scheduler's,
//! the heap's) ever calls into the scheduler; an allocation that fails still reclaims
//! directly (`direct`), as in Linux.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::aspace::{Mm, MmEnv};
use super::folio;
use super::frame::frames;
use super::lazyfree::{self, Entry, Visit, STATS};
use crate::sync::IrqSpinLock;

/// What the owner hook says of an entry of another address space: `None` if its owner
/// is busy (the entry goes back), else what `Mm::reclaim_entry` returned (`Stale` if
/// no address space has that root any more).
pub type OwnerHook = fn(Entry) -> Option<Visit>;

static OWNER_HOOK: IrqSpinLock<Option<OwnerHook>> = IrqSpinLock::new(None);

/// Install how a pass reaches the address space owning an entry (the process layer).
pub fn set_owner_hook(h: OwnerHook) {
    *OWNER_HOOK.lock() = Some(h);
}

/// Wakes the reclaim thread (it then finds `WANTED` set).
pub type WakeHook = fn();

static KSWAPD_HOOK: IrqSpinLock<Option<WakeHook>> = IrqSpinLock::new(None);
/// A fault found free memory under the low watermark and something to reclaim.
static WANTED: AtomicBool = AtomicBool::new(false);

/// Install (the thread started) or remove (stopped) how `if_low` wakes the thread.
pub fn set_kswapd_hook(h: Option<WakeHook>) {
    *KSWAPD_HOOK.lock() = h;
}

/// The thread: whether a wake-up was asked for, clearing the request (module doc).
pub fn take_request() -> bool {
    WANTED.swap(false, Ordering::AcqRel)
}

/// Whether a request is pending (the thread's wait condition).
pub fn requested() -> bool {
    WANTED.load(Ordering::Acquire)
}

/// Who ran a pass, for Linux's `pgscan_*`/`pgsteal_*` split.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reclaimer {
    /// The reclaim thread.
    Kswapd,
    /// An allocating fault (`direct`, or `if_low` without the thread).
    Direct,
    /// On demand (/proc/lazyfree): counted in neither.
    Demand,
}

/// Reclaim counters: Linux's (/proc/vmstat) and the thread's own (/proc/lazyfree).
pub struct ReclaimStats {
    /// Lazyfree pages scanned and freed by the thread (Linux's `pgscan_kswapd`,
    /// `pgsteal_kswapd`) and by allocating faults (`pgscan_direct`, `pgsteal_direct`).
    pub pgscan_kswapd: AtomicU64,
    pub pgsteal_kswapd: AtomicU64,
    pub pgscan_direct: AtomicU64,
    pub pgsteal_direct: AtomicU64,
    /// Times the thread woke with a request, and the passes it ran.
    pub kswapd_wakeups: AtomicU64,
    pub kswapd_passes: AtomicU64,
}

pub static RECLAIM: ReclaimStats = ReclaimStats {
    pgscan_kswapd: AtomicU64::new(0),
    pgsteal_kswapd: AtomicU64::new(0),
    pgscan_direct: AtomicU64::new(0),
    pgsteal_direct: AtomicU64::new(0),
    kswapd_wakeups: AtomicU64::new(0),
    kswapd_passes: AtomicU64::new(0),
};

/// Free memory under 1/64 of RAM: reclaim (Linux's low watermark).
const LOW_WATERMARK_DIVISOR: usize = 64;
/// A watermark pass goes on until free memory is back above 1/32 of RAM.
const HIGH_WATERMARK_DIVISOR: usize = 32;

/// The marking generation (`lazyfree::mark_gen`) at which the last lazyfree pass was
/// futile: it freed nothing and left nothing that a later pass could free (no young
/// folio, no busy owner). Until something new is marked, allocations skip that part
/// (under a persistent low watermark every fault would otherwise walk the list).
static FUTILE_AT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Whether a lazyfree pass may free anything.
fn worth_a_pass() -> bool {
    lazyfree::list_len() > 0 && FUTILE_AT.load(Ordering::Relaxed) != lazyfree::mark_gen()
}

/// One pass: lazyfree folios (if `worth_a_pass`, or always with `force`) until `want`
/// pages are freed or every entry was seen once, then the deferred-split shrinker.
/// Returns the pages the lazyfree part freed plus the folios the shrinker split.
pub fn pass<E: MmEnv>(
    local: Option<&mut Mm<E>>,
    want: usize,
    force: bool,
    who: Reclaimer,
) -> usize {
    pass_again(local, want, force, who).0
}

/// [`pass`], and whether a later pass may free what this one could not (an owner was
/// busy, or a young folio got another round).
fn pass_again<E: MmEnv>(
    local: Option<&mut Mm<E>>,
    want: usize,
    force: bool,
    who: Reclaimer,
) -> (usize, bool) {
    let (scanned, freed, again) = if force || worth_a_pass() {
        lazyfree_pass(local, want)
    } else {
        (0, 0, false)
    };
    let counters = match who {
        Reclaimer::Kswapd => Some((&RECLAIM.pgscan_kswapd, &RECLAIM.pgsteal_kswapd)),
        Reclaimer::Direct => Some((&RECLAIM.pgscan_direct, &RECLAIM.pgsteal_direct)),
        Reclaimer::Demand => None,
    };
    if let Some((scan, steal)) = counters {
        scan.fetch_add(scanned as u64, Ordering::Relaxed);
        steal.fetch_add(freed as u64, Ordering::Relaxed);
    }
    (freed + folio::shrink_deferred(), again)
}

/// The lazyfree part of a pass: (pages scanned, pages freed, whether a later pass may
/// free more).
fn lazyfree_pass<E: MmEnv>(mut local: Option<&mut Mm<E>>, want: usize) -> (usize, usize, bool) {
    let gen = lazyfree::mark_gen();
    let hook = *OWNER_HOOK.lock();
    let mut freed = 0;
    let mut scanned = 0;
    let mut again = false;
    let mut budget = lazyfree::list_len();
    while budget > 0 && freed < want {
        budget -= 1;
        let Some(e) = lazyfree::pop() else { break };
        let verdict = match local.as_deref_mut() {
            Some(mm) if e.owner == mm.tables.root() => Some(mm.reclaim_entry(e)),
            _ => hook.and_then(|h| h(e)),
        };
        match verdict {
            // Owner busy or unreachable: try again in a later pass.
            None => {
                again = true;
                lazyfree::push(e);
            }
            Some(Visit::Stale) => {
                STATS.stale.fetch_add(1, Ordering::Relaxed);
            }
            // Still this owner's mapping of a marked folio: it stays (a young folio
            // gets another round; a VMA edge or another holder may let go later).
            Some(Visit::Kept(r)) => {
                scanned += r.scanned;
                again |= r.young > 0;
                lazyfree::push(e);
            }
            Some(Visit::Done(r)) => {
                freed += r.freed;
                scanned += r.scanned;
            }
        }
    }
    let futile = freed == 0 && !again;
    FUTILE_AT.store(if futile { gen } else { u64::MAX }, Ordering::Relaxed);
    (scanned, freed, again)
}

/// Whether free memory is under the low watermark and a pass may give some back.
fn low_and_reclaimable() -> bool {
    let f = frames();
    f.free_frames() < f.managed_frames() / LOW_WATERMARK_DIVISOR
        && (worth_a_pass() || folio::deferred_count() > 0)
}

/// Pages short of the high watermark.
fn under_high() -> usize {
    let f = frames();
    (f.managed_frames() / HIGH_WATERMARK_DIVISOR).saturating_sub(f.free_frames())
}

/// The low watermark check of an allocation in a fault: under it, wake the reclaim
/// thread (module doc), or without one run a pass up to the high watermark here.
pub fn if_low<E: MmEnv>(local: &mut Mm<E>) {
    if !low_and_reclaimable() {
        return;
    }
    let hook = *KSWAPD_HOOK.lock();
    match hook {
        Some(wake) => {
            if !WANTED.swap(true, Ordering::AcqRel) {
                wake();
            }
        }
        None => {
            STATS.passes_watermark.fetch_add(1, Ordering::Relaxed);
            pass(Some(local), under_high(), false, Reclaimer::Direct);
        }
    }
}

/// The reclaim thread's work after a wake-up: passes over every address space (each
/// owner only tried) until free memory is above the high watermark, or a pass gives
/// nothing back (no busy loop: the next wake-up waits for a fault that finds memory
/// low and something reclaimable, which a futile lazyfree pass rules out until
/// something new is marked). Returns the passes run.
#[cfg(target_os = "none")]
pub fn kswapd_balance() -> usize {
    RECLAIM.kswapd_wakeups.fetch_add(1, Ordering::Relaxed);
    let mut passes = 0;
    loop {
        let want = under_high();
        if want == 0 || !(worth_a_pass() || folio::deferred_count() > 0) {
            break;
        }
        passes += 1;
        RECLAIM.kswapd_passes.fetch_add(1, Ordering::Relaxed);
        STATS.passes_watermark.fetch_add(1, Ordering::Relaxed);
        if pass::<super::ptenv::KernelPt>(None, want, false, Reclaimer::Kswapd) == 0 {
            break;
        }
    }
    passes
}

/// An allocation of `pages` pages failed: a pass for them; whether it gave anything
/// back (worth retrying the allocation).
pub fn direct<E: MmEnv>(local: &mut Mm<E>, pages: usize) -> bool {
    for _ in 0..DIRECT_PASSES {
        if !worth_a_pass() && folio::deferred_count() == 0 {
            return false;
        }
        STATS.passes_direct.fetch_add(1, Ordering::Relaxed);
        let free0 = frames().free_frames();
        let (got, again) = pass_again(Some(local), pages, false, Reclaimer::Direct);
        // Something came back, here or by another reclaimer meanwhile: retry the
        // allocation.
        if got > 0 || frames().free_frames() > free0 {
            return true;
        }
        if !again {
            return false;
        }
        // An owner was busy, most likely the reclaim thread freeing its folios on
        // another CPU (it holds that `Mm` while it does): give it a moment rather than
        // call memory exhausted while memory is being freed (Linux too retries reclaim
        // before its OOM killer, `should_reclaim_retry`).
        for _ in 0..DIRECT_BACKOFF_SPINS {
            core::hint::spin_loop();
        }
    }
    false
}

/// Passes a failed allocation runs at most while owners are busy and nothing comes
/// back (Linux's `MAX_RECLAIM_RETRIES` is 16 too).
const DIRECT_PASSES: usize = 16;
/// The pause between two of them.
const DIRECT_BACKOFF_SPINS: usize = 10_000;

/// A pass over every lazyfree folio from no address space of the caller's (`1`
/// written to /proc/lazyfree): every owner only tried. Returns what `pass` does.
#[cfg(target_os = "none")]
pub fn pass_all() -> usize {
    STATS.passes_demand.fetch_add(1, Ordering::Relaxed);
    pass::<super::ptenv::KernelPt>(None, usize::MAX, true, Reclaimer::Demand)
}
