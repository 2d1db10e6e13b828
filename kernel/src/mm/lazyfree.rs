//! Lazy free (MADV_FREE) of whole folios, and discarding them whole (seed 002).
//!
//! **Marking.** Only the folios of the range's first and last page can stick out of
//! it (one mapped in part elsewhere is queued for deferred split, hence not mapped
//! once). Such a folio, if mapped only here (the test below), is split before
//! anything else changes (`split_if_cut`; `lazyfree_split` and Linux's per-size
//! `split`): the page tables first (`unfold_edges` splits the 2 MiB block and unfolds
//! the contiguous blocks that the covered part cuts, so that no block maps two of the
//! new folios), then the folio (`folio::split_cut`): a 2 MiB one into 64 KiB folios
//! and those the range cuts into 4 KiB ones, a 16 to 64 KiB one into 4 KiB ones. The
//! covered pages are now whole folios; the pages outside keep theirs, with their
//! contiguous blocks. (Splitting before the clearing below matters with
//! `contpte=naive`, where each entry's change refolds the block and gathers its dirty
//! state back into every entry.) Then, per 2 MiB batch, young and dirty are cleared
//! in one batched call (`clear_young_dirty`: a contiguous block is cleared in place,
//! never unfolded; one TLBI for the batch), and every folio that lies whole in the
//! range and is mapped only here is marked lazyfree (`flags::LAZYFREE`): every page
//! mapped exactly once, no other reference, not queued for deferred split
//! (`folio::Locked::mapped_exactly_once`: Linux's `folio_mapcount() == 1`, from the
//! counts; whether the pages are still flagged anon-exclusive does not matter, so a
//! folio shared by a fork whose other side has gone qualifies). A partly covered folio that could not be split (shared,
//! or no table for splitting a 2 MiB block), or a whole one that is shared, keeps its
//! data and is not marked (counted as `lazyfree_partial_skipped` /
//! `lazyfree_shared_skipped`); the call never fails because of one folio.
//!
//! **Discarding** (`reclaim_lazyfree`) is decided at that moment from the counts and
//! the mapping's own entries, as Linux's `try_to_unmap_one` does for each mapping of a
//! lazyfree folio: the folio is marked, this mapping maps it whole and nothing but its
//! mappings (and the deferred-split queue) holds a reference. MADV_PAGEOUT
//! (`Reach::Pageout`) further requires that this mapping is the only one (Linux skips
//! shared folios); a reclaim pass (`Reach::Pass`, one list entry) discards this
//! mapping even if other address spaces map the folio too, each through its own
//! entry, the last one freeing it. For runs of such folios, one batched `wrprotect`
//! (one TLBI) first, so that from then on no CPU can write them without a fault,
//! which waits for the `Mm` lock this runs under. Then the dirty state (gathered over
//! each contiguous block) is final: a folio written since it was marked (hardware
//! dirty with FEAT_HAFDBS, the software dirty fault without) loses the mark and is
//! made writable again with its data if it is exclusive here (`lazyfree_redirtied`);
//! clean consecutive folios are unmapped in one batched `unmap` (one TLBI, whole
//! blocks cleared without unfolding) and released whole: no split, nothing queued for
//! deferred split (`release` accounts a folio unmapped whole in one step).
//!
//! **Fork** keeps the mark (as Linux) and gives the child's mapping its own entry
//! (`fork_lazyfree`), unless the parent wrote the folio since it was marked: the
//! parent's entries keep their dirty state but the child's are made clean, so a
//! written folio loses the mark there (Linux would find the folio dirty at reclaim and
//! keep it). With the list at its bound the child's mapping of a clean marked folio
//! is discarded at once (`lazyfree_fork_unlisted`), as a reclaim pass could have done
//! the moment after the fork; the parent keeps its mapping, mark and entry. After fork every mapping is read-only, so no mapping of a shared marked
//! folio can become dirty without a copy-on-write fault: one mapping's clean state
//! speaks for all. A split (`folio::split`), a merge or a free drops the mark.
//!
//! **mlock**: a reclaim pass keeps the entry of a locked mapping (`lazyfree_locked_kept`),
//! and mlock of a writable range drops the marks there (`unmark_written`), as Linux's
//! population dirties those folios; MADV_FREE and MADV_PAGEOUT of a locked VMA are
//! EINVAL before they get here.
//!
//! ## Reverse map and protocol (SMP)
//!
//! The reverse map is the lazyfree list: one `Entry` per mapping of a marked folio:
//! its head, the address space that maps it (the physical address of its root table,
//! unique among live address spaces) and the address of its first page there, oldest
//! first. **Invariant** (checked by `audit`): every address space whose entry maps
//! the first page of a marked folio has an entry naming that head, itself and that
//! address. It holds because an entry is made with every such mapping (a mark from
//! clear to set, when the folio is mapped once; a fork, for the child) and is dropped
//! only once its owner no longer maps the folio there or the mark is gone. (A folio
//! whose first page nobody maps is partially mapped, hence on the deferred-split
//! queue, whose split drops the mark.)
//!
//! - An entry is pushed, under the folio lock, when the mapping is made or the mark
//!   goes from clear to set (folio lock -> list lock, as for the deferred-split
//!   queue). Entries take no reference: an entry may go stale (the folio unmapped,
//!   freed, re-marked elsewhere). An address space going away drops its entries
//!   (`forget_owner`); one that a pass had in hand then may come back, naming a root
//!   that another address space may reuse: revalidation against that one's tables
//!   makes it harmless.
//! - An entry is acted on only under the `Mm` lock of its owner, after revalidation
//!   (`reclaim_entry`): the owner's entry at `va` maps `head`, whose folio is marked.
//!   One that fails this is stale and dropped. One that passes but cannot be acted on
//!   now (cut by a VMA edge, held by someone else, young) stays on the list. Under the
//!   `Mm` lock this mapping cannot be unmapped, forked or remapped; hardware may still
//!   set AF and dirty, which the write-protect above makes final before the dirty
//!   state is read.
//! - Reclaim reaches an address space from an entry with a *trylock* of its `Mm`
//!   (`reclaim`'s owner hook): it may already hold its own `Mm` (direct reclaim in a
//!   fault), so it never waits for a second one; a busy owner's entry goes back on the
//!   list. It nests as the lock table says (`mm/mod.rs`: L2 `Mm` -> L5 folio -> L6 list).
//! - The list is bounded by a constant, not by any user range: its storage is
//!   reserved once (`HARD` entries, 0.8 MiB of kernel heap) and never grows. A folio
//!   is marked, or a fork lists its child's mapping, only while fewer than `CAP`
//!   entries are listed (after dropping the stale ones). Past that, a clean folio the
//!   list has no room for is discarded at once, by the same write-protect-then-check
//!   path as a reclaim pass (`lazyfree_list_full`; a fork discards the child's
//!   mapping): MADV_FREE lets the kernel free the pages at any time, and leaving them
//!   as unmarked memory made them unreachable for reclaim (a soak ran out of memory
//!   with most of it MADV_FREE'd). Re-queued entries were popped first, and at most
//!   one new entry per CPU races the room check, so `HARD - CAP` covers them. (Growing
//!   the list with the range let 1 GiB of 4 KiB folios ask the 8 MiB kernel heap for
//!   8 MiB: a panic.)

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::addr::CONT_PTES;
use super::addr::PMD_SIZE;
use super::aspace::Mm;
use super::batch::{batches, pages};
use super::folio::{self, Folio};
use super::frame::{flags, frames};
use super::install::release;
use super::machine::MmMachine;
use super::pgtable::{Leaf, Pte};
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::{Errno, ENOMEM};

use crate::sync::IrqSpinLock;

/// One marked folio on the lazyfree list: the reverse map (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub head: PhysAddr,
    /// Root table of the address space whose mapping this is.
    pub owner: PhysAddr,
    /// Address of the folio's first page there.
    pub va: VirtAddr,
}

impl Entry {
    /// Whether the frame at `head` still heads a marked folio (a snapshot, to drop
    /// stale entries early; acting on one needs the revalidation of the protocol).
    pub fn may_be_live(&self) -> bool {
        let m = frames().meta(self.head);
        m.test(flags::HEAD) && m.test(flags::ALLOCATED) && m.test(flags::LAZYFREE)
    }
}

/// The lazyfree list, oldest first.
static LIST: IrqSpinLock<VecDeque<Entry>> = IrqSpinLock::new(VecDeque::new());
/// Length at which the list is next compacted (doubles with the live entries).
static COMPACT_AT: AtomicUsize = AtomicUsize::new(MIN_COMPACT);
const MIN_COMPACT: usize = 1024;
/// Most entries a new mark may find listed (128 MiB of 4 KiB folios, 2 GiB of 64 KiB).
pub const CAP: usize = 32 * 1024;
/// The list's reserved storage: `CAP` plus one in-flight entry per CPU, twice (for
/// up to 64 CPUs; the kernel runs at most 16).
const HARD: usize = CAP + 2 * 64;

/// Counters: Linux's (`/proc/vmstat`) and this kernel's own (`/proc/lazyfree`).
pub struct Stats {
    /// Pages marked lazyfree (Linux's `pglazyfree`).
    pub pglazyfree: AtomicU64,
    /// Lazyfree pages discarded (Linux's `pglazyfreed`).
    pub pglazyfreed: AtomicU64,
    /// Pages of marked folios reclaim looked at (Linux's `pgscan_anon`).
    pub pgscan: AtomicU64,
    /// Pages reclaim freed (Linux's `pgsteal_anon`).
    pub pgsteal: AtomicU64,
    /// Folios marked whole.
    pub marked: AtomicU64,
    /// Folios the range covered only in part and left whole (shared, or no table to
    /// split a 2 MiB block): not marked.
    pub partial_skipped: AtomicU64,
    /// Exclusive folios the range covered only in part, split so that the covered
    /// pages are whole folios, which are then marked.
    pub split: AtomicU64,
    /// Folios the lazyfree list had no room for: discarded at once (clean) or kept
    /// (written meanwhile), never left as unmarked clean memory.
    pub list_full: AtomicU64,
    /// Folios shared with another address space: not marked.
    pub shared_skipped: AtomicU64,
    /// ... because a page of it is pinned (`pin`).
    pub pinned_skipped: AtomicU64,
    /// Folios discarded whole (never split on the way).
    pub discarded_whole: AtomicU64,
    /// Folios found written after they were marked: kept with their data.
    pub redirtied: AtomicU64,
    /// Pages of one mapping of a folio that others still map, discarded (the folio
    /// goes with its last mapping, counted then in `pglazyfreed`).
    pub unmapped_shared: AtomicU64,
    /// Folios found young by the reclaim pass: another round.
    pub rotated: AtomicU64,
    /// Stale list entries dropped.
    pub stale: AtomicU64,
    /// Mappings of marked folios a fork gave the child, each with its entry.
    pub fork_listed: AtomicU64,
    /// Marks a fork dropped: the parent had written the folio (or mapped it in part).
    pub fork_unmarked: AtomicU64,
    /// Mappings of marked folios a fork gave the child with the list full: discarded in
    /// the child at once (the parent keeps its mapping, mark and entry).
    pub fork_unlisted: AtomicU64,
    /// Blocks the collapse thread left alone for their clean lazyfree pages.
    pub collapse_skipped: AtomicU64,
    /// Marks mlock of a writable range dropped (Linux's population dirties the folio).
    pub mlock_unmarked: AtomicU64,
    /// List entries a reclaim pass kept because their mapping is locked (mlock).
    pub locked_kept: AtomicU64,
    /// Reclaim passes run, by who ran them.
    pub passes_watermark: AtomicU64,
    pub passes_direct: AtomicU64,
    pub passes_demand: AtomicU64,
    /// Passes of faults that ran out of memory, run with their `Mm` lock dropped.
    pub passes_unlocked: AtomicU64,
}

pub static STATS: Stats = Stats {
    pglazyfree: AtomicU64::new(0),
    pglazyfreed: AtomicU64::new(0),
    pgscan: AtomicU64::new(0),
    pgsteal: AtomicU64::new(0),
    marked: AtomicU64::new(0),
    partial_skipped: AtomicU64::new(0),
    split: AtomicU64::new(0),
    list_full: AtomicU64::new(0),
    shared_skipped: AtomicU64::new(0),
    pinned_skipped: AtomicU64::new(0),
    discarded_whole: AtomicU64::new(0),
    redirtied: AtomicU64::new(0),
    unmapped_shared: AtomicU64::new(0),
    rotated: AtomicU64::new(0),
    stale: AtomicU64::new(0),
    fork_listed: AtomicU64::new(0),
    fork_unmarked: AtomicU64::new(0),
    fork_unlisted: AtomicU64::new(0),
    collapse_skipped: AtomicU64::new(0),
    mlock_unmarked: AtomicU64::new(0),
    locked_kept: AtomicU64::new(0),
    passes_watermark: AtomicU64::new(0),
    passes_direct: AtomicU64::new(0),
    passes_demand: AtomicU64::new(0),
    passes_unlocked: AtomicU64::new(0),
};

fn bump(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

impl Stats {
    /// `(name, value)` of every counter, for `/proc/lazyfree`.
    pub fn all(&self) -> [(&'static str, u64); 25] {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("pglazyfree", l(&self.pglazyfree)),
            ("pglazyfreed", l(&self.pglazyfreed)),
            ("pgscan", l(&self.pgscan)),
            ("pgsteal", l(&self.pgsteal)),
            ("lazyfree_marked", l(&self.marked)),
            ("lazyfree_partial_skipped", l(&self.partial_skipped)),
            ("lazyfree_split", l(&self.split)),
            ("lazyfree_list_full", l(&self.list_full)),
            ("lazyfree_shared_skipped", l(&self.shared_skipped)),
            ("lazyfree_pinned_skipped", l(&self.pinned_skipped)),
            ("lazyfree_discarded_whole", l(&self.discarded_whole)),
            ("lazyfree_redirtied", l(&self.redirtied)),
            ("lazyfree_unmapped_shared", l(&self.unmapped_shared)),
            ("lazyfree_rotated", l(&self.rotated)),
            ("lazyfree_stale", l(&self.stale)),
            ("lazyfree_fork_listed", l(&self.fork_listed)),
            ("lazyfree_fork_unmarked", l(&self.fork_unmarked)),
            ("lazyfree_fork_unlisted", l(&self.fork_unlisted)),
            ("lazyfree_collapse_skipped", l(&self.collapse_skipped)),
            ("lazyfree_mlock_unmarked", l(&self.mlock_unmarked)),
            ("lazyfree_locked_kept", l(&self.locked_kept)),
            ("reclaim_passes_watermark", l(&self.passes_watermark)),
            ("reclaim_passes_direct", l(&self.passes_direct)),
            ("reclaim_passes_demand", l(&self.passes_demand)),
            ("reclaim_passes_unlocked", l(&self.passes_unlocked)),
        ]
    }
}

/// Bumped by every MADV_FREE call that marked a folio: reclaim knows when a futile
/// pass is worth repeating.
static MARK_GEN: AtomicU64 = AtomicU64::new(0);

pub fn mark_gen() -> u64 {
    MARK_GEN.load(Ordering::Relaxed)
}

/// Entries on the list (live or stale).
pub fn list_len() -> usize {
    LIST.lock().len()
}

/// The entries on the list, sorted (the audit; allocates in proportion to the list).
pub fn list_entries() -> Vec<Entry> {
    let mut v: Vec<Entry> = LIST.lock().iter().copied().collect();
    v.sort_unstable();
    v
}

/// Entries a reclaim pass has taken off the list and not yet settled (`settle`):
/// changed only under the list lock, so that `follow_range` knows whether one of the
/// entries it moves may be out of its reach.
static IN_HAND: AtomicUsize = AtomicUsize::new(0);

/// Take the oldest entry off the list; the pass settles it (`settle`).
pub(super) fn pop() -> Option<Entry> {
    let mut l = LIST.lock();
    let e = l.pop_front();
    if e.is_some() {
        IN_HAND.store(IN_HAND.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    e
}

/// A popped entry is done with: `back` goes on the young end again (its owner was
/// busy, or it stays for another round), `None` drops it.
pub(super) fn settle(back: Option<Entry>) {
    let mut l = LIST.lock();
    IN_HAND.store(IN_HAND.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    if let Some(e) = back {
        push_locked(&mut l, e);
    }
}

/// Drop the stale entries (the list lock held).
fn compact(l: &mut VecDeque<Entry>) {
    let before = l.len();
    l.retain(Entry::may_be_live);
    bump(&STATS.stale, before - l.len());
    COMPACT_AT.store((2 * l.len()).max(MIN_COMPACT), Ordering::Relaxed);
    MAYBE_STALE.store(0, Ordering::Relaxed);
}

/// Entries that may have gone stale since the last compaction (`unmapped_marked`);
/// changed under the list lock.
static MAYBE_STALE: AtomicUsize = AtomicUsize::new(0);

/// An unmap (munmap, MADV_DONTNEED, a move's overwrite, a copy-on-write's
/// replacement) took `n` mappings of marked folios' first pages: their entries are
/// stale unless the folio is still marked and mapped there. Once such entries may be
/// half the list it is compacted, so that the walks every move (`follow_range`) and
/// every exit (`forget_owner`) take stay in proportion to the live entries: 16384
/// stale ones from an unmapped 64 MiB of lazyfree 4 KiB folios made each later
/// mremap of 64 MiB cost 320 k instructions instead of 25 k. Each counted mapping
/// pays for at most two entries of a compaction.
pub(super) fn unmapped_marked(n: usize) {
    if n == 0 {
        return;
    }
    let mut l = LIST.lock();
    let maybe = MAYBE_STALE.load(Ordering::Relaxed) + n;
    if 2 * maybe >= l.len() {
        compact(&mut l);
    } else {
        MAYBE_STALE.store(maybe, Ordering::Relaxed);
    }
}

/// Whether a new folio may be marked: the list's storage is reserved and fewer than
/// `CAP` live-looking entries are on it (module doc: the bound).
fn has_room() -> bool {
    let mut l = LIST.lock();
    let len = l.len();
    if l.capacity() < HARD && l.try_reserve_exact(HARD - len).is_err() {
        return false;
    }
    if l.len() >= cap()
        && FULL_MISSES
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(COMPACT_EVERY)
    {
        // Stale entries may be what fills it; a compaction per refused mark would be
        // quadratic in the list, one per `COMPACT_EVERY` is not.
        compact(&mut l);
    }
    l.len() < cap()
}

/// The bound `has_room` applies: `CAP`, lowered by host tests that fill the list
/// without 128 MiB of folios.
fn cap() -> usize {
    #[cfg(test)]
    return TEST_CAP.load(Ordering::Relaxed);
    #[cfg(not(test))]
    CAP
}

#[cfg(test)]
static TEST_CAP: AtomicUsize = AtomicUsize::new(CAP);

/// Host tests: the list's bound until `None` restores `CAP`.
#[cfg(test)]
pub fn set_cap(n: Option<usize>) {
    TEST_CAP.store(n.unwrap_or(CAP), Ordering::Relaxed);
}

/// Marks refused since boot with the list at its bound.
static FULL_MISSES: AtomicUsize = AtomicUsize::new(0);
const COMPACT_EVERY: usize = 1024;

/// Put an entry on the young end (a new mark, a busy owner, a young folio). Never
/// allocates once `has_room` has reserved the storage.
pub(super) fn push(e: Entry) {
    push_locked(&mut LIST.lock(), e);
}

fn push_locked(l: &mut VecDeque<Entry>, e: Entry) {
    if l.len() >= COMPACT_AT.load(Ordering::Relaxed) {
        compact(l);
    }
    if l.len() >= HARD.min(l.capacity()) {
        // Full (cannot happen with the room check, see the module doc): the oldest
        // goes rather than the heap growing.
        l.pop_front();
        bump(&STATS.stale, 1);
    }
    l.push_back(e);
}

/// Drop the entries of an address space going away, whose root table may come back as
/// another's (`Mm`'s drop): a fork child that exits at once (`system()`) would otherwise
/// leave one stale entry per marked folio it inherited, which compaction keeps (the
/// folio is still marked) until a pass visits it. One walk of the list, bounded by
/// `HARD`, and none when the list is empty.
pub(super) fn forget_owner(owner: PhysAddr) {
    let mut l = LIST.lock();
    if l.is_empty() {
        return;
    }
    let before = l.len();
    l.retain(|e| e.owner != owner);
    bump(&STATS.stale, before - l.len());
}

/// A move (mremap) took `owner`'s mappings in `[from, end)` to `to` onward: their
/// entries follow in place, so the invariant holds without new entries (for which
/// the list may have no room). One walk of the list per move, none when the list is
/// empty and nothing is in hand; no per-folio work. Returns whether a reclaim pass
/// holds entries (`IN_HAND`, read under the list lock): one of them may be this
/// move's, which the pass would put back at its old address, stale; the caller then
/// lists the marked folios it finds at the destination (`list_missing`).
pub(super) fn follow_range(owner: PhysAddr, from: VirtAddr, end: VirtAddr, to: VirtAddr) -> bool {
    let mut l = LIST.lock();
    for e in l
        .iter_mut()
        .filter(|e| e.owner == owner && from <= e.va && e.va < end)
    {
        e.va = to.add(e.va.offset_from(from));
    }
    IN_HAND.load(Ordering::Relaxed) > 0
}

/// `owner` maps the marked folios `heads` (head, address of its first page): each
/// without its entry gets one, room permitting (`follow_range`'s slow case, at most
/// one 2 MiB batch's folios per call).
pub(super) fn list_missing(owner: PhysAddr, heads: &mut [(PhysAddr, VirtAddr)]) {
    if heads.is_empty() {
        return;
    }
    heads.sort_unstable();
    let mut listed: Vec<bool> = alloc::vec![false; heads.len()];
    for e in LIST.lock().iter().filter(|e| e.owner == owner) {
        if let Ok(i) = heads.binary_search(&(e.head, e.va)) {
            listed[i] = true;
        }
    }
    for (&(head, va), _) in heads.iter().zip(&listed).filter(|(_, &l)| !l) {
        if has_room() {
            push(Entry { head, owner, va });
        }
    }
}

/// Host tests: empty the list (a failed test leaked entries).
#[cfg(test)]
pub fn forget_list() {
    LIST.lock().clear();
}

/// A folio found whole in a range: its address there, head and pages, and whether this
/// is its one mapping (discarding it frees the folio).
#[derive(Clone, Copy, Debug)]
struct Whole {
    va: VirtAddr,
    head: PhysAddr,
    pages: usize,
    alone: bool,
}

/// Which mappings of a marked folio `reclaim_lazyfree` may discard (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// MADV_PAGEOUT: only a folio no other mapping shares; no aging.
    Pageout,
    /// A reclaim pass: this mapping even if others map the folio too; a young folio
    /// only has its AF cleared.
    Pass,
}

/// What a reclaim pass's visit of one list entry found (`Mm::reclaim_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// The owner no longer maps a marked folio there: the entry is dropped.
    Stale,
    /// The mapping is there but was left for later (young, cut by a VMA edge, held by
    /// someone else): the entry stays.
    Kept(Reclaimed),
    /// Discarded, or found written and unmarked: the entry is done.
    Done(Reclaimed),
}

/// What became of the folios `reclaim_lazyfree` looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Pages of marked folios looked at.
    pub scanned: usize,
    /// Pages freed (folios this mapping was the last of).
    pub freed: usize,
    /// Pages of this mapping discarded while other mappings keep the folio.
    pub unmapped: usize,
    /// Folios left marked because they were young (only when aging).
    pub young: usize,
    /// Folios found dirty: the mark is gone, the data kept.
    pub redirtied: usize,
}

/// Pages from `at` to the end of the block of `leaf` that maps it (a 2 MiB block, a
/// contiguous block, or the page).
pub(super) fn span(at: VirtAddr, leaf: &Leaf) -> usize {
    let block = if leaf.level == 2 {
        512
    } else if leaf.pte.is_cont() {
        CONT_PTES
    } else {
        1
    };
    block - (at.as_u64() as usize / PAGE_SIZE) % block
}

/// Whether nothing but its mappings (and the deferred-split queue) holds a reference
/// to the locked folio: what a reclaim pass requires to discard one of its mappings
/// (Linux's `ref_count == 1 + map_count` in `try_to_unmap_one`).
fn held_only_by_mappings(f: &folio::Locked) -> bool {
    f.refcount() == f.expected_refs()
}

impl<E: MmMachine> Mm<E> {
    /// The folios mapped in `[a, b)` (one batch, no 2 MiB block cut), locked one at a
    /// time in address order: `f(va of the folio's first page, folio, whole)` where
    /// `whole` says the range maps every page of it, in order. A contiguous block or a
    /// 2 MiB block maps consecutive pages of one folio (the architecture's rule, which
    /// the checker enforces), so it comes from one walk a block at a time
    /// (`for_each_block`), not a walk per page.
    fn for_each_folio_in(
        &self,
        a: VirtAddr,
        b: VirtAddr,
        mut f: impl FnMut(VirtAddr, folio::Locked, bool),
    ) {
        // The folio being gathered: its first address here, the folio, the index of
        // that page in it, and how many consecutive pages map it so far.
        let mut open: Option<(VirtAddr, folio::Locked, usize, usize)> = None;
        let mut emit = |open: Option<(VirtAddr, folio::Locked, usize, usize)>| {
            if let Some((va, lf, first, k)) = open {
                let whole = first == 0 && k == lf.nr_pages();
                f(va, lf, whole);
            }
        };
        self.tables.for_each_block(a, b, |va, leaf, n| {
            let pa = leaf.pa_of(va);
            if zero::is_zero(pa) {
                // No folio: nothing to mark, discard or list.
                return;
            }
            if let Some((start, lf, first, k)) = &mut open {
                let next = *first + *k;
                if start.add(*k * PAGE_SIZE) == va
                    && next + n <= lf.nr_pages()
                    && lf.page(next) == pa
                {
                    *k += n;
                    return;
                }
            }
            emit(open.take());
            let lf = Folio::lock(pa);
            let first = lf.index(pa);
            open = Some((va, lf, first, n));
        });
        emit(open);
    }

    /// Whether any entry of the `pages` pages from `va` (all mapped) satisfies `pred`
    /// (AF and dirty are gathered over each block: one read per block).
    fn any_entry(&self, va: VirtAddr, pages: usize, pred: impl Fn(Pte) -> bool) -> bool {
        let mut k = 0;
        while k < pages {
            let at = va.add(k * PAGE_SIZE);
            let Some(l) = self.tables.get(at) else {
                k += 1;
                continue;
            };
            if pred(l.pte) {
                return true;
            }
            k += span(at, &l);
        }
        false
    }

    /// MADV_FREE of `[start, end)`, one VMA piece whose protection allows write iff
    /// `writable` (module doc: marking, and the bound).
    pub(super) fn lazyfree(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        writable: bool,
    ) -> Result<(), Errno> {
        let owner = self.tables.root();
        // Only the folios of the range's first and last page can stick out of it (an
        // exclusive folio is mapped in one piece), and not at a 2 MiB boundary: a folio
        // is mapped at an address aligned to its size (faults, copy-on-write and
        // collapse place it so).
        if !start.is_aligned(PMD_SIZE) {
            self.split_if_cut(start, start, end);
        }
        if !end.is_aligned(PMD_SIZE) {
            self.split_if_cut(VirtAddr(end.as_u64() - PAGE_SIZE as u64), start, end);
        }
        for (a, b) in batches(start, end) {
            self.tables
                .clear_young_dirty(a, pages(a, b))
                .map_err(|_| ENOMEM)?;
            // Folios the list has no room for: discarded at once, below.
            let mut unlisted: Vec<Whole> = Vec::new();
            self.for_each_folio_in(a, b, |va, f, whole| {
                if !whole {
                    bump(&STATS.partial_skipped, 1);
                } else if f.is_pinned() {
                    // `pin`'s rule 3: a pinned folio is wanted (Linux marks it and its
                    // reclaim then finds the pin's reference and keeps it).
                    bump(&STATS.pinned_skipped, 1);
                } else if !f.mapped_exactly_once() {
                    bump(&STATS.shared_skipped, 1);
                } else if !f.is_lazyfree() && !has_room() {
                    bump(&STATS.list_full, 1);
                    bump(&STATS.pglazyfree, f.nr_pages());
                    unlisted.push(Whole {
                        va,
                        head: f.head(),
                        pages: f.nr_pages(),
                        alone: true,
                    });
                } else if !f.set_lazyfree(true) {
                    bump(&STATS.pglazyfree, f.nr_pages());
                    MARK_GEN.fetch_add(1, Ordering::Relaxed);
                    bump(&STATS.marked, 1);
                    push(Entry {
                        head: f.head(),
                        owner,
                        va,
                    });
                }
            });
            self.discard(&unlisted, writable, &mut Reclaimed::default());
        }
        Ok(())
    }

    /// If `[a, b)` covers only part of the large folio mapped at `at` (in the range)
    /// and the folio is mapped only here (the test for marking),
    /// split it so that its covered pages are whole folios (module doc: marking): the
    /// blocks cut by the covered range are unfolded first. Anything else (a shared
    /// folio, no table for splitting a 2 MiB block) leaves the folio as it is, for the
    /// marking loop to skip. Out of line: it is the rare path, kept out of the
    /// marking loop's code.
    #[inline(never)]
    fn split_if_cut(&mut self, at: VirtAddr, a: VirtAddr, b: VirtAddr) {
        let Some(leaf) = self.tables.get(at) else {
            return;
        };
        let pa = leaf.pa_of(at);
        if zero::is_zero(pa) {
            return;
        }
        let f = Folio::lock(pa);
        let n = f.nr_pages();
        let i = f.index(pa);
        // Where page 0 would be if the folio is mapped in one piece, as every folio
        // mapped exactly once is (checked at both ends of the cut below).
        let Some(head_va) = at.as_u64().checked_sub((i * PAGE_SIZE) as u64) else {
            return;
        };
        let head_va = VirtAddr(head_va);
        let lo = head_va.max(a);
        let hi = head_va.add(n * PAGE_SIZE).min(b);
        let first = lo.offset_from(head_va) / PAGE_SIZE;
        let last = hi.offset_from(head_va) / PAGE_SIZE;
        if n == 1 || (first == 0 && last == n) || !f.mapped_exactly_once() {
            return;
        }
        let maps = |va: VirtAddr, k: usize| {
            self.tables
                .get(va)
                .is_some_and(|l| l.pa_of(va) == f.page(k))
        };
        if !maps(lo, first) || !maps(VirtAddr(hi.as_u64() - PAGE_SIZE as u64), last - 1) {
            return;
        }
        if self.tables.unfold_edges(lo, last - first).is_err() {
            return;
        }
        folio::split_cut(f, first..last);
        bump(&STATS.split, 1);
    }

    /// Discard this mapping of the clean lazyfree folios lying whole in `[start, end)`,
    /// one VMA piece whose protection allows write iff `writable`, as far as `reach`
    /// allows (module doc: discarding).
    pub(super) fn reclaim_lazyfree(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        writable: bool,
        reach: Reach,
    ) -> Reclaimed {
        let mut out = Reclaimed::default();
        for (a, b) in batches(start, end) {
            let mut found: Vec<Whole> = Vec::new();
            self.for_each_folio_in(a, b, |va, f, whole| {
                if !whole || !f.is_lazyfree() {
                    return;
                }
                let alone = f.mapped_exactly_once();
                let may = match reach {
                    Reach::Pageout => alone,
                    Reach::Pass => alone || held_only_by_mappings(&f),
                };
                if may {
                    found.push(Whole {
                        va,
                        head: f.head(),
                        pages: f.nr_pages(),
                        alone,
                    });
                }
            });
            let scanned = found.iter().map(|w| w.pages).sum();
            out.scanned += scanned;
            bump(&STATS.pgscan, scanned);
            if reach == Reach::Pass {
                found.retain(|w| {
                    let young = self.clear_young(w.va, w.pages);
                    out.young += young as usize;
                    !young
                });
                bump(&STATS.rotated, out.young);
            }
            self.discard(&found, writable, &mut out);
        }
        out
    }

    /// Clear AF over `pages` pages from `va` (a whole folio), one call per block or
    /// page that has it; whether any had it.
    fn clear_young(&mut self, va: VirtAddr, pages: usize) -> bool {
        if !self.any_entry(va, pages, |p| p.is_young()) {
            return false;
        }
        let mut k = 0;
        while k < pages {
            let at = va.add(k * PAGE_SIZE);
            let Some(l) = self.tables.get(at) else {
                k += 1;
                continue;
            };
            if l.pte.is_young() {
                self.tables.test_and_clear_young(at);
            }
            k += span(at, &l);
        }
        true
    }

    /// Write-protect each run of consecutive folios of `found`, then unmap the clean
    /// ones (consecutive ones in one unmap; a folio no one else maps is freed) and give
    /// the dirty ones back their place as ordinary memory, and their write permission
    /// where they are exclusive here (a shared one takes the copy-on-write fault).
    fn discard(&mut self, found: &[Whole], writable: bool, out: &mut Reclaimed) {
        let consecutive = |w: &[Whole]| w[0].va.add(w[0].pages * PAGE_SIZE) == w[1].va;
        for run in found.chunk_by(|x, y| consecutive(&[*x, *y])) {
            let n: usize = run.iter().map(|w| w.pages).sum();
            self.tables
                .wrprotect(run[0].va, n)
                .expect("whole folios in one batch: no block is cut");
            let dirty: Vec<bool> = run
                .iter()
                .map(|w| self.any_entry(w.va, w.pages, |p| p.is_dirty()))
                .collect();
            let mut i = 0;
            while i < run.len() {
                let mut j = i;
                while j < run.len() && dirty[j] == dirty[i] {
                    j += 1;
                }
                let n: usize = run[i..j].iter().map(|w| w.pages).sum();
                if dirty[i] {
                    // Unmarked; exclusive here (asked only now: the rare path), the
                    // folio may be written again without a fault.
                    let unmarked: Vec<(&Whole, bool)> = run[i..j]
                        .iter()
                        .map(|w| {
                            let f = Folio::lock(w.head);
                            f.set_lazyfree(false);
                            (w, f.mapped_exactly_once() && f.all_exclusive())
                        })
                        .collect();
                    for mine in unmarked.chunk_by(|x, y| x.1 == y.1) {
                        if writable && mine[0].1 {
                            let n = mine.iter().map(|(w, _)| w.pages).sum();
                            self.tables
                                .make_writable(mine[0].0.va, n)
                                .expect("whole folios in one batch: no block is cut");
                        }
                    }
                    out.redirtied += j - i;
                    bump(&STATS.redirtied, j - i);
                } else {
                    let records = self
                        .tables
                        .unmap(run[i].va, n)
                        .expect("whole folios in one batch: no block is cut");
                    debug_assert!(
                        records.iter().all(|r| !r.dirty),
                        "a write-protected lazyfree folio became dirty"
                    );
                    release(records);
                    // Freed only where this was the one mapping (Linux counts a folio
                    // when it goes, not each mapping).
                    let alone = || run[i..j].iter().filter(|w| w.alone);
                    let freed: usize = alone().map(|w| w.pages).sum();
                    let unmapped = n - freed;
                    out.freed += freed;
                    out.unmapped += unmapped;
                    bump(&STATS.pglazyfreed, freed);
                    bump(&STATS.pgsteal, freed);
                    bump(&STATS.discarded_whole, alone().count());
                    bump(&STATS.unmapped_shared, unmapped);
                }
                i = j;
            }
        }
    }

    /// Act on one list entry of this address space (the owner's `Mm` lock is held):
    /// revalidate it (module doc), then age and discard this mapping of the folio.
    pub fn reclaim_entry(&mut self, e: Entry) -> Visit {
        let mapped = e.owner == self.tables.root()
            && self
                .tables
                .get(e.va)
                .is_some_and(|l| l.pa_of(e.va) == e.head);
        if !mapped || !e.may_be_live() {
            return Visit::Stale;
        }
        let n = Folio::of(e.head).nr_pages();
        let end = e.va.add(n * PAGE_SIZE);
        let Some(vma) = self.vmas.find(e.va).cloned().filter(|v| end <= v.end) else {
            // Cut by a VMA edge (mprotect of part of it): reachable again once merged.
            return Visit::Kept(Reclaimed::default());
        };
        if vma.flags.locked {
            // mlock: never discarded while locked; reachable again after munlock (a
            // read-only range stays marked: no population wrote it).
            bump(&STATS.locked_kept, 1);
            return Visit::Kept(Reclaimed::default());
        }
        let r = self.reclaim_lazyfree(e.va, end, vma.prot.write, Reach::Pass);
        if r.freed > 0 || r.unmapped > 0 || r.redirtied > 0 {
            Visit::Done(r)
        } else {
            Visit::Kept(r)
        }
    }

    /// mlock of `[start, end)`, a writable VMA piece just populated: Linux's population
    /// writes every present page (FOLL_WRITE | FOLL_TOUCH dirties the folio), so a
    /// MADV_FREE'd folio mapped here is kept by reclaim from then on, even after
    /// munlock. Here its mark goes (its list entries go stale).
    pub(super) fn unmark_written(&self, start: VirtAddr, end: VirtAddr) {
        for (a, b) in batches(start, end) {
            self.for_each_folio_in(a, b, |_, f, _| {
                if f.is_lazyfree() {
                    f.set_lazyfree(false);
                    bump(&STATS.mlock_unmarked, 1);
                }
            });
        }
    }

    /// After fork mapped `[start, end)` in `child` too: each marked folio mapped whole
    /// there gets the child's entry; if the list has no room, the child's mapping of it
    /// is discarded at once instead (the folio stays marked, reachable from the
    /// parent's entry); if this side wrote it since it was marked, or maps it in part,
    /// the mark goes (module doc: fork). Under this `Mm` lock, before the child runs.
    pub(super) fn fork_lazyfree(&self, child: &mut Mm<E>, start: VirtAddr, end: VirtAddr) {
        let owner = child.tables.root();
        for (a, b) in batches(start, end) {
            let mut unlisted: Vec<Whole> = Vec::new();
            self.for_each_folio_in(a, b, |va, f, whole| {
                if !f.is_lazyfree() {
                    return;
                }
                let clean = whole && !self.any_entry(va, f.nr_pages(), |p| p.is_dirty());
                if !clean {
                    f.set_lazyfree(false);
                    bump(&STATS.fork_unmarked, 1);
                } else if has_room() {
                    bump(&STATS.fork_listed, 1);
                    push(Entry {
                        head: f.head(),
                        owner,
                        va,
                    });
                } else {
                    bump(&STATS.fork_unlisted, 1);
                    unlisted.push(Whole {
                        va,
                        head: f.head(),
                        pages: f.nr_pages(),
                        alone: false,
                    });
                }
            });
            // The child's entries are read-only and clean, and it has not run.
            child.discard(&unlisted, false, &mut Reclaimed::default());
        }
    }
}
