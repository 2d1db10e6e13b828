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
//!   until free memory is above the high watermark or a round of the list frees
//!   nothing (`kswapd_balance`), in steps of `KSWAPD_BATCH` entries with a yield after
//!   each. Before the thread exists (and in host tests) the fault runs that pass
//!   itself;
//! - a fault that ran out of memory, with its `Mm` lock dropped, before it goes again
//!   (`unlocked`; the process layer retries the fault a few times);
//! - an allocation that failed (`direct`), before the fault falls back to a smaller
//!   order, and before the last order-0 failure becomes ENOMEM (MAP_POPULATE,
//!   MADV_POPULATE_*) or the out-of-memory kill of the faulting process
//!   (`alloc_or_reclaim`);
//! - MADV_PAGEOUT on a range, for that range only (`Mm::reclaim_lazyfree`, no aging);
//! - on demand, `1` written to /proc/lazyfree (`pass_all`, no address space locked).
//!
//! The pass runs with the caller's own `Mm` locked, if any (handed in as `local`) and
//! reaches other address spaces through the owner hook the process layer installs
//! (`set_owner_hook`), which must only *try* to lock the owner's `Mm` when the caller
//! holds one (lazyfree's protocol: never wait for a second `Mm` lock). A caller that
//! holds none (the reclaim thread, `unlocked`) is `patient`: the hook may spin a
//! bounded while (2 ms) for a busy owner, until the first one that stays busy in the
//! pass; no cycle of waits can form, since such a caller holds nothing another waits
//! for. Locks nest as the lock table says (`mm/mod.rs`: L2 `Mm` -> L4 `SHRINKER`
//! inside `shrink_deferred` -> L5 folio -> L6 queue or list -> L9 frames); the
//! lazyfree part holds no folio lock when it takes the next `Mm`.
//!
//! **When memory is exhausted.** Only when reclaim truly has nothing to give: a direct
//! pass that frees nothing goes again while it found an owner busy or a folio young;
//! an owner is busy mostly because another reclaimer (the thread) holds it while it
//! frees that owner's folios, so the direct reclaimer first waits until the calls of
//! the owner hook under way have ended (each is bounded and waits for no `Mm`), and
//! it counts what anyone freed meanwhile (`PROGRESS`, free frames) as its own
//! progress. An allocation is retried after each direct reclaim that made progress,
//! since another CPU may take the frames first. Both are bounded (`DIRECT_PASSES`):
//! two faulting processes that each hold what the other could free end in OOM, not in
//! a livelock.
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

use super::aspace::Mm;
use super::folio;
use super::frame::frames;
use super::lazyfree::{self, Entry, Visit, STATS};
use super::machine::MmMachine;
use crate::sync::IrqSpinLock;

/// What the owner hook says of an entry of another address space: `None` if its owner
/// is busy (the entry goes back), else what `Mm::reclaim_entry` returned (`Stale` if
/// no address space has that root any more).
/// `patient`: the caller holds no `Mm` lock, so the hook may wait a bounded while for
/// a busy owner (with one held, two reclaimers could each wait for the other's).
pub type OwnerHook = fn(Entry, bool) -> Option<Visit>;

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
    /// Times the thread woke with a request, and the passes it ran (each a bounded
    /// step of at most `KSWAPD_BATCH` entries).
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
pub fn pass<E: MmMachine>(
    local: Option<&mut Mm<E>>,
    want: usize,
    force: bool,
    who: Reclaimer,
) -> usize {
    pass_within(local, want, force, who, usize::MAX, false).freed
}

/// What one pass did and left.
#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    /// Lazyfree pages freed plus folios the shrinker split.
    freed: usize,
    /// An owner was busy: its entries went back untried.
    busy: bool,
    /// A young folio got another round.
    young: bool,
    /// Every entry and every queued folio was visited (not cut short by the limit).
    complete: bool,
}

/// [`pass`] visiting at most `limit` list entries and `limit` queued folios; `patient`
/// if the caller holds no `Mm` lock (the owner hook may then wait a bounded while for
/// a busy owner, until the first owner that stays busy).
fn pass_within<E: MmMachine>(
    local: Option<&mut Mm<E>>,
    want: usize,
    force: bool,
    who: Reclaimer,
    limit: usize,
    patient: bool,
) -> Outcome {
    let (scanned, mut out) = if force || worth_a_pass() {
        lazyfree_pass(local, want, limit, patient)
    } else {
        (
            0,
            Outcome {
                complete: true,
                ..Outcome::default()
            },
        )
    };
    let counters = match who {
        Reclaimer::Kswapd => Some((&RECLAIM.pgscan_kswapd, &RECLAIM.pgsteal_kswapd)),
        Reclaimer::Direct => Some((&RECLAIM.pgscan_direct, &RECLAIM.pgsteal_direct)),
        Reclaimer::Demand => None,
    };
    if let Some((scan, steal)) = counters {
        scan.fetch_add(scanned as u64, Ordering::Relaxed);
        steal.fetch_add(out.freed as u64, Ordering::Relaxed);
    }
    let queued = folio::deferred_count();
    let split = folio::shrink_deferred_upto(limit);
    // The huge zero page once nothing maps it (Linux's huge zero page shrinker).
    let zero = if super::zero::shrink() { 512 } else { 0 };
    PROGRESS.fetch_add((split + zero) as u64, Ordering::Release);
    out.freed += split + zero;
    out.complete &= queued <= limit;
    out
}

/// Pages freed (and folios split) by every pass since boot: a direct reclaimer that
/// freed nothing itself sees whether someone else did meanwhile.
static PROGRESS: AtomicU64 = AtomicU64::new(0);

/// Calls of the owner hook begun and ended (`lazyfree_pass`): a direct reclaimer that
/// found an owner busy waits until as many have ended as had begun, so that a reclaim
/// thread holding that owner finishes with it first (each call is bounded and never
/// waits for an `Mm`: the hook only tries the lock).
static REACHES_BEGUN: AtomicU64 = AtomicU64::new(0);
static REACHES_ENDED: AtomicU64 = AtomicU64::new(0);

/// The lazyfree part of a pass over at most `limit` entries: the pages scanned, and
/// what it freed and left (`complete` if it saw every entry or freed `want`).
fn lazyfree_pass<E: MmMachine>(
    mut local: Option<&mut Mm<E>>,
    want: usize,
    limit: usize,
    patient: bool,
) -> (usize, Outcome) {
    let gen = lazyfree::mark_gen();
    let hook = *OWNER_HOOK.lock();
    let mut out = Outcome::default();
    let mut scanned = 0;
    let len = lazyfree::list_len();
    let mut budget = len.min(limit);
    while budget > 0 && out.freed < want {
        budget -= 1;
        let Some(e) = lazyfree::pop() else { break };
        let verdict = match local.as_deref_mut() {
            Some(mm) if e.owner == mm.tables.root() => Some(mm.reclaim_entry(e)),
            _ => hook.and_then(|h| {
                REACHES_BEGUN.fetch_add(1, Ordering::AcqRel);
                let v = h(e, patient && !out.busy);
                REACHES_ENDED.fetch_add(1, Ordering::AcqRel);
                v
            }),
        };
        match verdict {
            // Owner busy or unreachable: try again in a later pass.
            None => {
                out.busy = true;
                lazyfree::settle(Some(e));
            }
            Some(Visit::Stale) => {
                STATS.stale.fetch_add(1, Ordering::Relaxed);
                lazyfree::settle(None);
            }
            // Still this owner's mapping of a marked folio: it stays (a young folio
            // gets another round; a VMA edge or another holder may let go later).
            Some(Visit::Kept(r)) => {
                scanned += r.scanned;
                out.young |= r.young > 0;
                lazyfree::settle(Some(e));
            }
            Some(Visit::Done(r)) => {
                lazyfree::settle(None);
                out.freed += r.freed;
                scanned += r.scanned;
                PROGRESS.fetch_add(r.freed as u64, Ordering::Release);
            }
        }
    }
    out.complete = len <= limit || out.freed >= want;
    let futile = out.freed == 0 && !out.busy && !out.young && len <= limit;
    FUTILE_AT.store(if futile { gen } else { u64::MAX }, Ordering::Relaxed);
    (scanned, out)
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
pub fn if_low<E: MmMachine>(local: &mut Mm<E>) {
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
/// owner only tried) until free memory is above the high watermark, or a whole round
/// of the list gives nothing back (a second one if the first aged folios; no busy
/// loop: the next wake-up waits for a fault that finds memory low and something
/// reclaimable, which a futile lazyfree pass rules out until something new is
/// marked). A step visits at most `KSWAPD_BATCH` entries and queued folios, and
/// `yield_now` gives the CPU away after each, however long the list (issue 17: every
/// kernel thread yields after bounded work). Returns the steps run.
pub fn kswapd_balance<E: MmMachine>(yield_now: fn()) -> usize {
    RECLAIM.kswapd_wakeups.fetch_add(1, Ordering::Relaxed);
    let mut steps = 0;
    // Entries and queued folios visited since a step last freed something, whether a
    // young folio was among them, and whether a round was already spent aging: a
    // whole round of the list that frees nothing ends the work, unless it aged folios,
    // which one more round may free (folios their owner keeps young are not
    // reclaimable).
    let (mut idle, mut young, mut aged) = (0, false, false);
    loop {
        let want = under_high();
        if want == 0 || !(worth_a_pass() || folio::deferred_count() > 0) {
            break;
        }
        steps += 1;
        RECLAIM.kswapd_passes.fetch_add(1, Ordering::Relaxed);
        STATS.passes_watermark.fetch_add(1, Ordering::Relaxed);
        let round = lazyfree::list_len().max(folio::deferred_count());
        let out = pass_within::<E>(None, want, false, Reclaimer::Kswapd, KSWAPD_BATCH, true);
        if out.freed > 0 {
            (idle, young, aged) = (0, false, false);
        } else {
            idle += KSWAPD_BATCH;
            young |= out.young;
            if out.complete || idle >= round {
                if !young || aged {
                    break;
                }
                (idle, young, aged) = (0, false, true);
            }
        }
        yield_now();
    }
    steps
}

/// Entries (and queued folios) the reclaim thread visits between two yields: at most
/// 256 folios of up to 2 MiB.
const KSWAPD_BATCH: usize = 256;

/// An allocation of `pages` pages failed: passes for them; whether anything came back
/// since (worth retrying the allocation), here or by another reclaimer meanwhile.
/// Memory counts as exhausted only when a pass found nothing a later one could free
/// (no busy owner, no young folio) and no one else freed anything, or after
/// `DIRECT_PASSES` passes without progress (issue 17, defect 5: a direct reclaimer used
/// to give up while the reclaim thread held the owner it was freeing).
pub fn direct<E: MmMachine>(local: &mut Mm<E>, pages: usize) -> bool {
    let progress0 = PROGRESS.load(Ordering::Acquire);
    let free0 = frames().free_frames();
    let progressed =
        || PROGRESS.load(Ordering::Acquire) > progress0 || frames().free_frames() > free0;
    for _ in 0..DIRECT_PASSES {
        if !worth_a_pass() && folio::deferred_count() == 0 {
            break;
        }
        STATS.passes_direct.fetch_add(1, Ordering::Relaxed);
        let out = pass_within(
            Some(&mut *local),
            pages,
            false,
            Reclaimer::Direct,
            usize::MAX,
            false,
        );
        if out.freed > 0 || progressed() {
            return true;
        }
        if !out.busy && !out.young {
            break;
        }
        if out.busy {
            // Most likely another reclaimer holds that owner and is freeing its folios
            // (Linux too retries reclaim before its OOM killer, `should_reclaim_retry`):
            // let the calls of the hook under way end, then give the owner a moment.
            let begun = REACHES_BEGUN.load(Ordering::Acquire);
            while REACHES_ENDED.load(Ordering::Acquire) < begun {
                core::hint::spin_loop();
            }
            for _ in 0..DIRECT_BACKOFF_SPINS {
                core::hint::spin_loop();
            }
        }
    }
    progressed()
}

/// A fault that ran out of memory, after it dropped its `Mm` lock and before it goes
/// again (Linux's VM_FAULT_RETRY drops mmap_lock the same way): one pass over every
/// entry, patient with busy owners. Two faulting processes that each held what the
/// other could free (their direct reclaim only tries the other's lock) both come
/// here without their locks, so each can reach the other's folios. True if memory
/// came back, by this pass or anyone's.
pub fn unlocked<E: MmMachine>(pages: usize) -> bool {
    let progress0 = PROGRESS.load(Ordering::Acquire);
    let free0 = frames().free_frames();
    STATS.passes_unlocked.fetch_add(1, Ordering::Relaxed);
    let want = pages.max(under_high());
    let out = pass_within::<E>(None, want, true, Reclaimer::Direct, usize::MAX, true);
    out.freed > 0 || PROGRESS.load(Ordering::Acquire) > progress0 || frames().free_frames() > free0
}

/// An allocation in a fault that reclaim may still make possible: `alloc` retried
/// after each direct reclaim that made progress (another CPU may take what was freed
/// before this one allocates), at most `DIRECT_PASSES` times; `None` once reclaim has
/// nothing more to give (the fault's ENOMEM or out-of-memory kill).
pub fn alloc_or_reclaim<E: MmMachine, T>(
    local: &mut Mm<E>,
    pages: usize,
    mut alloc: impl FnMut(&mut Mm<E>) -> Option<T>,
) -> Option<T> {
    for _ in 0..DIRECT_PASSES {
        if let Some(x) = alloc(local) {
            return Some(x);
        }
        if !direct(local, pages) {
            return None;
        }
    }
    alloc(local)
}

/// Passes a failed allocation runs at most while owners are busy and nothing comes
/// back, and times an allocation is retried after progress (Linux's
/// `MAX_RECLAIM_RETRIES` is 16 too).
const DIRECT_PASSES: usize = 16;
/// The pause between two of them.
const DIRECT_BACKOFF_SPINS: usize = 10_000;

/// A pass over every lazyfree folio from no address space of the caller's (`1`
/// written to /proc/lazyfree): every owner only tried. Returns what `pass` does.
pub fn pass_all<E: MmMachine>() -> usize {
    STATS.passes_demand.fetch_add(1, Ordering::Relaxed);
    pass::<E>(None, usize::MAX, true, Reclaimer::Demand)
}
