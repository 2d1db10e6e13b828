//! Reclaim without swap: what can be given back is clean lazyfree folios (discarded
//! whole, `lazyfree`) and the unmapped pages of partially mapped folios (the
//! deferred-split shrinker, `folio::shrink_deferred`); dirty anonymous memory is never
//! dropped. One pass does both, oldest lazyfree folio first, each entry visited at most
//! once: a young folio has its AF cleared and goes to the young end (a second round),
//! a dirty one goes back to ordinary memory, a clean old one is freed.
//!
//! Who runs a pass:
//! - an allocation in a fault when free memory is under the low watermark
//!   (`if_low`: reclaims up to the high watermark), before it allocates;
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

use core::sync::atomic::{AtomicU64, Ordering};

use super::aspace::{Mm, MmEnv};
use super::folio;
use super::frame::frames;
use super::lazyfree::{self, Entry, Reclaimed, STATS};
use crate::sync::IrqSpinLock;

/// What the owner hook says of an entry of another address space: `None` if its owner
/// is busy (the entry goes back) , else what `Mm::reclaim_entry` returned.
pub type OwnerHook = fn(Entry) -> Option<Option<Reclaimed>>;

static OWNER_HOOK: IrqSpinLock<Option<OwnerHook>> = IrqSpinLock::new(None);

/// Install how a pass reaches the address space owning an entry (the process layer).
pub fn set_owner_hook(h: OwnerHook) {
    *OWNER_HOOK.lock() = Some(h);
}

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
pub fn pass<E: MmEnv>(local: Option<&mut Mm<E>>, want: usize, force: bool) -> usize {
    let freed = if force || worth_a_pass() {
        lazyfree_pass(local, want)
    } else {
        0
    };
    freed + folio::shrink_deferred()
}

fn lazyfree_pass<E: MmEnv>(mut local: Option<&mut Mm<E>>, want: usize) -> usize {
    let gen = lazyfree::mark_gen();
    let hook = *OWNER_HOOK.lock();
    let mut freed = 0;
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
            // Did not revalidate, but the folio is still marked: it stays (the folio
            // may be back in reach later: a VMA edge cut it, or it is shared for now).
            Some(None) if e.may_be_live() => lazyfree::push(e),
            Some(None) => {
                STATS.stale.fetch_add(1, Ordering::Relaxed);
            }
            Some(Some(r)) => {
                freed += r.freed;
                if r.young > 0 {
                    again = true;
                    lazyfree::push(e);
                }
            }
        }
    }
    let futile = freed == 0 && !again;
    FUTILE_AT.store(if futile { gen } else { u64::MAX }, Ordering::Relaxed);
    freed
}

/// The low watermark check of an allocation: under it, a pass up to the high one.
pub fn if_low<E: MmEnv>(local: &mut Mm<E>) {
    let f = frames();
    let free = f.free_frames();
    let low = f.managed_frames() / LOW_WATERMARK_DIVISOR;
    if free < low && (worth_a_pass() || folio::deferred_count() > 0) {
        STATS.passes_watermark.fetch_add(1, Ordering::Relaxed);
        let want = f.managed_frames() / HIGH_WATERMARK_DIVISOR - free;
        pass(Some(local), want, false);
    }
}

/// An allocation of `pages` pages failed: a pass for them; whether it gave anything
/// back (worth retrying the allocation).
pub fn direct<E: MmEnv>(local: &mut Mm<E>, pages: usize) -> bool {
    if !worth_a_pass() && folio::deferred_count() == 0 {
        return false;
    }
    STATS.passes_direct.fetch_add(1, Ordering::Relaxed);
    pass(Some(local), pages, false) > 0
}

/// A pass over every lazyfree folio from no address space of the caller's (`1`
/// written to /proc/lazyfree): every owner only tried. Returns what `pass` does.
#[cfg(target_os = "none")]
pub fn pass_all() -> usize {
    STATS.passes_demand.fetch_add(1, Ordering::Relaxed);
    pass::<super::ptenv::KernelPt>(None, usize::MAX, true)
}
