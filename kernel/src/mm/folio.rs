//! Folios: a naturally aligned block of 2^order frames that user memory is allocated,
//! mapped, shared and freed as, described by its head frame's metadata (`frame`): the
//! order, one reference per page-table entry mapping a page of it (plus short-lived
//! references such as the allocation's own, and the deferred-split queue's), a map
//! count per page and their total, and flags (anonymous, anon-exclusive per page,
//! queued for deferred split, locked).
//!
//! ## Folio-level counts (no per-page walk for a whole folio)
//!
//! A page's map count is its own count plus the folio's **entire map count**:
//! mappings of the whole folio accounted in one step (a fault, fork or collapse
//! mapping every page, whatever the page tables use: one 2 MiB block, contiguous
//! blocks, or single entries). Likewise its anon-exclusive state is the folio's
//! override (`ALL_EXCLUSIVE` / `ALL_SHARED` on the head) if one is set, else the page's
//! own flag. So a fork of a 2 MiB folio, the reuse after the child exited, the unmap
//! of a whole folio and the exclusivity tests of mprotect and MADV_FREE touch the head,
//! not 512 pages (Linux made the same move to `_entire_mapcount` and folio-wide
//! `PageAnonExclusive` for PMD mappings). Per-page state is written only where pages
//! differ: a partial unmap or a partial exclusivity change first *spreads* the
//! folio-level state into the pages ([`Locked::spread`]), and so do a split and a merge,
//! which then see plain per-page counts.
//!
//! A large folio whose pages are partly unmapped ("partially mapped": some page has map
//! count 0 while others are mapped) keeps its unmapped pages until it is split. It goes
//! on the deferred-split queue; the shrinker (`shrink_deferred`) splits it into 64 KiB
//! folios, and those that are themselves partially mapped into 4 KiB ones, freeing every
//! part no one maps. Since a page with map count 0 is mapped by nobody, no contiguous
//! block or 2 MiB block anywhere covers it, so a split never leaves a contiguous block
//! spanning two folios, and needs no reverse map to stay correct.
//!
//! ## Protocol (SMP)
//!
//! Address spaces map, unmap and share the same folio under their own `Mm` locks, on
//! any CPU, while the shrinker, lazyfree's discard and collapse change a folio's shape
//! or free it. The rules below are the lock table's row L5 (`mm/mod.rs`); the code
//! cites them by number:
//!
//! 1. **The folio lock** (`flags::LOCKED` on the head frame, taken with [`Folio::lock`])
//!    protects the folio's shape (its head and order, on every frame), its reference
//!    count, its map counts (pages' and entire), its pages' pin counts and the head's
//!    `PINNED`, its `ANON`, `DEFERRED` and anon-exclusive flags (pages' and the head's
//!    overrides). Every change of those is made through a [`Locked`] guard. Reads
//!    without the lock are snapshots (reports, statistics). A spread writes the pages
//!    first and clears the folio-level state last (release), so a lock-free reader of
//!    exclusivity (mprotect, the checker) that sees the override gone also sees the
//!    pages' flags; exclusivity of pages an address space maps is stable under its `Mm`
//!    lock anyway (only that address space's fault, fork or reuse changes it). The one
//!    exception: a folio just allocated is reachable by nobody else until it is mapped,
//!    and then only through the `Mm` lock its mapper holds, so `alloc_anon` and
//!    [`Folio::account_new_mapping`] set it up unlocked.
//! 2. **Finding the folio of a page** needs a pin: the caller maps the page (it holds
//!    the `Mm` lock of an address space whose entry maps it) or holds a reference.
//!    A pinned page's folio may still be split under it, so [`Folio::lock`] locks the
//!    head it computed and then re-reads the head of the page; if the folio changed
//!    shape meanwhile it unlocks and tries again. The lock bit is only taken on the
//!    head of an allocated block (compare-and-swap on the whole flags word), so a free
//!    frame is never marked.
//! 3. **A split or free happens with the lock held.** A split hands out every
//!    resulting folio locked (`FrameAllocator::split_block`), completes their metadata,
//!    then unlocks or frees each. A waiter therefore never sees a half-written folio.
//!    A folio freed through a guard is never unlocked (its frames went back whole).
//! 4. **The deferred-split queue** holds one reference on every folio on it, so a
//!    queued folio cannot be freed under the shrinker. A folio is on the queue iff its
//!    `DEFERRED` flag is set; both change together under the queue lock (`DEFERRED`),
//!    and queueing happens under the folio lock. Whoever takes a folio off the queue
//!    (the shrinker, or the unmap that removed its last mapping) takes over that
//!    reference and drops it when done. The shrinker runs one at a time (`SHRINKER`).
//!    When it has taken a folio off and then locks it, the folio may already be back
//!    on the queue (an unmap re-queued it in between): it then only drops its
//!    reference and leaves the folio to the queue.
//!
//! 5. **A merge** (collapse in place, [`merge`]) makes one folio of several that tile
//!    an aligned run: it takes their locks with try-lock only, in address order, and
//!    gives up (dropping what it took) if any is held, so it never waits holding a
//!    folio lock; the merged folio is born locked (`FrameAllocator::merge_blocks`).
//!    It merges only folios that no one else holds a reference to and that are not on
//!    the deferred-split queue, so no reference can point at a head that disappears.
//!
//! The order these locks nest in is the lock table's (`mm/mod.rs`: L2 `Mm`, L4
//! `SHRINKER`, L5 one folio, L6 the queue, L9 frames). No one holds two folio locks
//! except a split, over the folios it makes, and a merge, which only try-locks the
//! second and later ones (rule 5).
//! No folio lock is ever taken from an interrupt handler.

use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicI32, AtomicI64, Ordering};

use super::frame::{flags, frames, FrameMeta};
use super::machine::MmMachine;
use super::mthp;
use super::pgtable::FolioSpan;
use super::{PhysAddr, PAGE_SIZE};
use crate::sync::IrqSpinLock;

/// The order of a contiguous block of level-3 entries (64 KiB).
const CONT_ORDER: usize = 4;

/// Pins one page may hold at once (its count is 16 bits wide).
pub const MAX_PAGE_PINS: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folio {
    head: PhysAddr,
}

impl Folio {
    /// The folio containing `pa` (an allocated frame), unlocked: a snapshot that a
    /// concurrent split may outdate (see the protocol; lock it to act on it).
    pub fn of(pa: PhysAddr) -> Folio {
        let (head, _) = frames()
            .block_of(pa)
            .unwrap_or_else(|| panic!("folio of free frame {pa}"));
        Folio { head }
    }

    /// Lock the folio containing the pinned page `pa` (protocol, rules 1 and 2).
    pub fn lock(pa: PhysAddr) -> Locked {
        loop {
            let f = Folio::of(pa);
            if f.meta(0).try_lock_head() {
                if Folio::of(pa) == f {
                    return Locked { f };
                }
                f.meta(0).unlock_head();
            }
            core::hint::spin_loop();
        }
    }

    /// Lock the folio containing the pinned page `pa` if no one holds its lock now.
    pub fn try_lock(pa: PhysAddr) -> Option<Locked> {
        let f = Folio::of(pa);
        if !f.meta(0).try_lock_head() {
            return None;
        }
        if Folio::of(pa) == f {
            return Some(Locked { f });
        }
        f.meta(0).unlock_head();
        None
    }

    pub fn head(self) -> PhysAddr {
        self.head
    }

    pub fn order(self) -> usize {
        self.meta(0).order()
    }

    pub fn nr_pages(self) -> usize {
        1 << self.order()
    }

    /// Page `i` of the folio.
    pub fn page(self, i: usize) -> PhysAddr {
        self.head.add(i * PAGE_SIZE)
    }

    /// The index of `pa` in the folio.
    pub fn index(self, pa: PhysAddr) -> usize {
        (pa.as_u64() - self.head.as_u64()) as usize / PAGE_SIZE
    }

    fn meta(self, i: usize) -> &'static FrameMeta {
        frames().meta(self.page(i))
    }

    /// The metadata of pages `first..first + n`, finding the allocator once (the
    /// per-page loops of a 2 MiB folio run 512 times).
    fn metas(self, first: usize, n: usize) -> impl Iterator<Item = &'static FrameMeta> {
        let all = frames();
        (first..first + n).map(move |i| all.meta(self.page(i)))
    }

    pub fn refcount(self) -> u32 {
        self.meta(0).refcount.load(Ordering::Acquire)
    }

    /// Page-table entries mapping page `i`: its own count plus the entire map count.
    pub fn mapcount(self, i: usize) -> i32 {
        self.meta(i).mapcount.load(Ordering::Acquire) + self.entire_mapcount()
    }

    /// Mappings of every page of a large folio accounted at once (module doc).
    pub fn entire_mapcount(self) -> i32 {
        self.entire().map_or(0, |e| e.load(Ordering::Acquire))
    }

    /// Where a large folio keeps its entire map count: the second frame's head-only
    /// field (`FrameMeta::total_mapcount`).
    fn entire(self) -> Option<&'static AtomicI32> {
        self.is_large().then(|| &self.meta(1).total_mapcount)
    }

    pub fn total_mapcount(self) -> i32 {
        self.meta(0).total_mapcount.load(Ordering::Acquire)
    }

    pub fn is_large(self) -> bool {
        self.order() > 0
    }

    /// Whether page `i` is anon-exclusive: the folio's override, else the page's flag.
    pub fn is_exclusive(self, i: usize) -> bool {
        self.exclusive_override()
            .unwrap_or_else(|| self.meta(i).test(flags::ANON_EXCLUSIVE))
    }

    /// Whether pages `first..first + n` are all anon-exclusive (one read of the head
    /// when the folio has an override).
    pub fn range_exclusive(self, first: usize, n: usize) -> bool {
        self.exclusive_override()
            .unwrap_or_else(|| self.metas(first, n).all(|m| m.test(flags::ANON_EXCLUSIVE)))
    }

    /// Whether every page is anon-exclusive.
    pub fn all_exclusive(self) -> bool {
        self.range_exclusive(0, self.nr_pages())
    }

    /// The anon-exclusive state all pages share by the head's override, if any.
    fn exclusive_override(self) -> Option<bool> {
        let head = self.meta(0).flags();
        if head & flags::ALL_EXCLUSIVE != 0 {
            Some(true)
        } else if head & flags::ALL_SHARED != 0 {
            Some(false)
        } else {
            None
        }
    }

    /// Mark a folio just allocated (only the caller can reach it: rule 1's exception)
    /// exclusive, before any entry maps it (who may write a page): for a large folio
    /// the head's override, for a page its flag. One atomic on the head.
    pub fn mark_new_exclusive(self) {
        let head = self.meta(0);
        if head.order() > 0 {
            head.set(flags::ALL_EXCLUSIVE, true);
        } else {
            head.set(flags::ANON_EXCLUSIVE, true);
        }
    }

    /// Account the one mapping of every page of a folio just allocated and mapped
    /// whole by the caller, whose `Mm` lock is the only way to it (rule 1's
    /// exception): the allocation's reference becomes the mapping's, counted as an
    /// entire mapping for a large folio. Plain stores on a folio nobody else sees.
    pub fn account_new_mapping(self) {
        let head = self.meta(0);
        let n = 1usize << head.order();
        debug_assert_eq!(head.refcount.load(Ordering::Relaxed), 1, "not a new folio");
        match self.entire() {
            Some(entire) => entire.store(1, Ordering::Relaxed),
            None => head.mapcount.store(1, Ordering::Relaxed),
        }
        head.total_mapcount.store(n as i32, Ordering::Relaxed);
        // Release: what the page tables now show is accounted before the count says so.
        head.refcount.store(n as u32, Ordering::Release);
    }

    /// Pins of page `i` (`pin`).
    pub fn pins(self, i: usize) -> u16 {
        self.meta(i).pins.load(Ordering::Acquire)
    }

    /// Whether some page of the folio is pinned (Linux's `folio_maybe_dma_pinned`,
    /// exact here: the head's `PINNED` is set exactly while a page has a pin).
    pub fn is_pinned(self) -> bool {
        self.meta(0).test(flags::PINNED)
    }

    /// Whether the folio belongs to a file's page cache (`shmem`), or did.
    pub fn is_file(self) -> bool {
        self.meta(0).test(flags::FILE)
    }

    /// Whether the folio is waiting for a deferred split.
    pub fn is_deferred(self) -> bool {
        self.meta(0).test(flags::DEFERRED)
    }

    /// Whether the folio is lazyfree (MADV_FREE; `lazyfree`'s protocol).
    pub fn is_lazyfree(self) -> bool {
        self.meta(0).test(flags::LAZYFREE)
    }

    /// References beyond the entries mapping it: the queue's while queued, the page
    /// cache's while cached.
    pub fn expected_refs(self) -> u32 {
        let head = self.meta(0);
        self.total_mapcount() as u32
            + head.test(flags::DEFERRED) as u32
            + head.test(flags::CACHED) as u32
    }
}

/// What fork's [`Locked::share`] met.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    Plain,
    /// Lazyfree: the new mapping needs its list entry (`lazyfree`'s fork).
    Lazyfree,
    /// Pinned: shared only in the counts until fork copies its exclusive pages.
    Pinned,
}

/// A locked folio: the only way to change its counts and flags (protocol, rule 1).
/// Dropping it unlocks, unless the folio was freed through it.
pub struct Locked {
    f: Folio,
}

impl core::ops::Deref for Locked {
    type Target = Folio;
    fn deref(&self) -> &Folio {
        &self.f
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        self.f.meta(0).unlock_head();
    }
}

impl Locked {
    /// The entire map count, if `first..first + n` is the whole of this folio of
    /// `order` and the folio is large: what whole-folio accounting changes instead of
    /// the pages (module doc). The order is read once per call by the caller.
    fn entire_if_whole(&self, order: usize, first: usize, n: usize) -> Option<&'static AtomicI32> {
        (order > 0 && first == 0 && n == 1 << order).then(|| &self.meta(1).total_mapcount)
    }

    /// Account `n` new page-table entries mapping pages `first..first + n` (the whole
    /// of a large folio: one more entire mapping).
    pub fn map(&self, first: usize, n: usize) {
        let head = self.meta(0);
        match self.entire_if_whole(head.order(), first, n) {
            Some(entire) => {
                if entire.fetch_add(1, Ordering::Relaxed) == 0 {
                    count_file_pmd(head, 1);
                }
            }
            None => {
                for m in self.metas(first, n) {
                    m.mapcount.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        add_mapped(head, n);
    }

    /// Account `n` more entries mapping pages `first..first + n`, which are now shared
    /// (fork): `map` and clearing their exclusive marks, in one pass (the whole of a
    /// large folio: one more entire mapping and the `ALL_SHARED` override); a pinned
    /// folio's pages are only counted, their exclusive marks kept (`pin`'s rule 2:
    /// fork then gives the child copies). What the head's flags, read once, said.
    pub fn share(&self, first: usize, n: usize) -> Shared {
        let head = self.meta(0);
        let order = head.order();
        let was = head.flags();
        if was & flags::ANON == 0 {
            // A file's folio is never exclusive: only the mapping is counted.
            self.map(first, n);
            return Shared::Plain;
        }
        if was & flags::PINNED != 0 {
            self.map(first, n);
            return Shared::Pinned;
        }
        match self.entire_if_whole(order, first, n) {
            Some(entire) => {
                entire.fetch_add(1, Ordering::Relaxed);
                set_override(head, false);
            }
            None => {
                if order > 0 {
                    self.spread();
                }
                for m in self.metas(first, n) {
                    m.mapcount.fetch_add(1, Ordering::Relaxed);
                    m.set(flags::ANON_EXCLUSIVE, false);
                }
            }
        }
        add_mapped(head, n);
        if was & flags::LAZYFREE != 0 {
            Shared::Lazyfree
        } else {
            Shared::Plain
        }
    }

    /// Account `n` page-table entries gone from pages `first..first + n`: the last
    /// reference frees the folio; a large folio left partially mapped is queued for
    /// deferred split, and one left unmapped entirely leaves the queue.
    pub fn unmap(self, first: usize, n: usize) {
        let head = self.meta(0);
        let order = head.order();
        let total = head.total_mapcount.fetch_sub(n as i32, Ordering::Relaxed) - n as i32;
        let entire = self
            .entire_if_whole(order, first, n)
            .filter(|e| e.load(Ordering::Relaxed) > 0);
        let emptied = match entire {
            Some(entire) => {
                // One entire mapping less. A page's count reached zero only if no
                // entire mapping is left and the page has none of its own.
                let left = entire.fetch_sub(1, Ordering::Relaxed) - 1;
                if left == 0 {
                    count_file_pmd(head, -1);
                }
                left == 0
                    && total > 0
                    && self
                        .metas(0, n)
                        .any(|m| m.mapcount.load(Ordering::Relaxed) == 0)
            }
            None => {
                if order > 0 {
                    self.spread();
                }
                let mut emptied = false;
                for m in self.metas(first, n) {
                    emptied |= m.mapcount.fetch_sub(1, Ordering::Relaxed) == 1;
                }
                emptied
            }
        };
        let f = self.f;
        let Some(this) = self.put(n as u32) else {
            return;
        };
        if total == 0 {
            // The queue's reference is the last one: no one maps the folio any more.
            if dequeue(f) {
                this.put(1);
            }
        } else if emptied
            && order > 0
            && this.meta(0).test(flags::ANON)
            && !this.meta(0).test(flags::HUGETLB)
        {
            // A hugetlb page is never split: it waits whole for its last mapping.
            // A file's folio keeps its unmapped pages: they hold the file's data.
            this.queue_deferred();
        }
    }

    /// Pin page `i` (`pin`): one more pin of the page and one more reference to the
    /// folio, which keeps it (and so the page) until [`Locked::unpin`]. False, and
    /// nothing taken, if the page has [`MAX_PAGE_PINS`] already (Linux fails a pin
    /// whose count would overflow with ENOMEM).
    pub fn pin(&self, i: usize) -> bool {
        let m = self.meta(i);
        if m.pins.load(Ordering::Relaxed) == MAX_PAGE_PINS {
            return false;
        }
        m.pins.fetch_add(1, Ordering::Relaxed);
        let head = self.meta(0);
        head.set(flags::PINNED, true);
        head.refcount.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Drop one pin of page `i` and its reference, which may be the folio's last
    /// (consuming the guard). `PINNED` goes with the folio's last pin: the pages are
    /// looked at only when this page's last pin goes.
    pub fn unpin(self, i: usize) -> Option<Locked> {
        let old = self.meta(i).pins.fetch_sub(1, Ordering::Relaxed);
        assert!(
            old > 0,
            "unpin of page {i} of folio {} with no pin",
            self.head
        );
        if old == 1
            && self
                .metas(0, self.nr_pages())
                .all(|m| m.pins.load(Ordering::Relaxed) == 0)
        {
            self.meta(0).set(flags::PINNED, false);
        }
        self.put(1)
    }

    /// Take one more reference (a page cache lookup's, `shmem`).
    pub fn get(&self) {
        self.meta(0).refcount.fetch_add(1, Ordering::Relaxed);
    }

    /// Mark the folio as held by its file's cache, or no longer (`shmem`'s protocol).
    pub fn set_cached(&self, on: bool) {
        self.meta(0).set(flags::CACHED, on);
    }

    /// Drop `n` references; the last one frees the folio (and consumes the guard).
    pub fn put(self, n: u32) -> Option<Locked> {
        let old = self.meta(0).refcount.fetch_sub(n, Ordering::AcqRel);
        assert!(old >= n, "folio {} put {n} with refcount {old}", self.head);
        if old > n {
            return Some(self);
        }
        let f = self.f;
        core::mem::forget(self);
        f.free();
        None
    }

    /// Every page is mapped exactly once, nothing else holds a reference and the folio
    /// is not queued for deferred split: the one mapping may take the whole folio over
    /// (copy-on-write reuse), mark it lazyfree or discard it (Linux's
    /// `folio_mapcount() == 1`), whatever the pages' anon-exclusive flags say. The head
    /// is read once; the pages only when no folio-level count answers for them (MADV_FREE
    /// and MADV_PAGEOUT ask this of every folio of their range).
    pub fn mapped_exactly_once(&self) -> bool {
        let head = self.meta(0);
        let order = head.order();
        let total = head.total_mapcount.load(Ordering::Acquire);
        let held_once = !head.test(flags::DEFERRED)
            && head.refcount.load(Ordering::Acquire) == total as u32
            && total as usize == 1 << order;
        // With an entire mapping and as many entries as pages, the pages' own counts
        // (never negative) sum to zero: each page is mapped once, by that mapping.
        held_once
            && (order == 0
                || self.meta(1).total_mapcount.load(Ordering::Acquire) > 0
                || self
                    .metas(0, 1 << order)
                    .all(|m| m.mapcount.load(Ordering::Acquire) == 1))
    }

    /// As many entries map the folio as it has pages, and nothing else holds a
    /// reference: the folio-level half of [`Locked::mapped_exactly_once`], without
    /// walking the pages. It is the whole test when the caller has seen one address
    /// space map every page (each page's count is then at least 1, and they sum to the
    /// number of pages, so each is 1): copy-on-write reuse of a 2 MiB folio checks two
    /// counts, not 512.
    pub fn held_by_one_entry_per_page(&self) -> bool {
        self.refcount() == self.expected_refs() && self.total_mapcount() as usize == self.nr_pages()
    }

    /// Set or clear the lazyfree mark; returns whether it was set before.
    pub fn set_lazyfree(&self, on: bool) -> bool {
        self.meta(0).set(flags::LAZYFREE, on)
    }

    /// Mark pages `first..first + n` exclusive to one address space, or shared (the
    /// whole of a large folio: the head's override, one write).
    pub fn set_exclusive(&self, first: usize, n: usize, exclusive: bool) {
        let head = self.meta(0);
        let order = head.order();
        if self.entire_if_whole(order, first, n).is_some() {
            set_override(head, exclusive);
            return;
        }
        if order > 0 {
            self.spread();
        }
        for m in self.metas(first, n) {
            m.set(flags::ANON_EXCLUSIVE, exclusive);
        }
    }

    /// Write the folio-level state into the pages (module doc): the entire map count
    /// into each page's count, the exclusivity override into each page's flag. Pages
    /// first, the folio-level state cleared last (protocol, rule 1).
    pub fn spread(&self) {
        let Some(e) = self.entire() else {
            return;
        };
        let entire = e.load(Ordering::Relaxed);
        let over = self.exclusive_override();
        if entire == 0 && over.is_none() {
            return;
        }
        for m in self.metas(0, self.nr_pages()) {
            if entire != 0 {
                m.mapcount.fetch_add(entire, Ordering::Relaxed);
            }
            if let Some(x) = over {
                m.set(flags::ANON_EXCLUSIVE, x);
            }
        }
        e.store(0, Ordering::Relaxed);
        self.meta(0)
            .set(flags::ALL_EXCLUSIVE | flags::ALL_SHARED, false);
        mthp::stats(self.order())
            .spread_to_pages
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Put the (locked, partially mapped) folio on the deferred-split queue, which
    /// takes a reference (protocol, rule 4).
    fn queue_deferred(&self) {
        let mut q = DEFERRED.lock();
        if !self.meta(0).set(flags::DEFERRED, true) {
            self.meta(0).refcount.fetch_add(1, Ordering::Relaxed);
            q.push_back(self.head);
            let s = mthp::stats(self.order());
            s.split_deferred.fetch_add(1, Ordering::Relaxed);
            s.nr_anon_partially_mapped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Pages of 2 MiB file folios mapped whole somewhere (/proc/meminfo `ShmemPmdMapped`;
/// Linux counts a folio when its entire map count goes from 0 to 1 and back, as here).
pub static FILE_PMD_MAPPED: AtomicI64 = AtomicI64::new(0);

/// A whole mapping of the folio at `head` came (`delta` 1) or went (-1) as its first
/// or last: counted for a 2 MiB file folio.
fn count_file_pmd(head: &FrameMeta, delta: i64) {
    if head.order() == mthp::PMD_ORDER && head.test(flags::FILE) {
        FILE_PMD_MAPPED.fetch_add(delta << mthp::PMD_ORDER, Ordering::Relaxed);
    }
}

/// The folio-level half of mapping `n` entries: total map count and references.
fn add_mapped(head: &FrameMeta, n: usize) {
    head.total_mapcount.fetch_add(n as i32, Ordering::Relaxed);
    head.refcount.fetch_add(n as u32, Ordering::Relaxed);
}

/// Make every page of the (large, locked) folio whose head is `head` exclusive or
/// shared by its override: one flag set, the other cleared.
fn set_override(head: &FrameMeta, exclusive: bool) {
    let (on, off) = if exclusive {
        (flags::ALL_EXCLUSIVE, flags::ALL_SHARED)
    } else {
        (flags::ALL_SHARED, flags::ALL_EXCLUSIVE)
    };
    head.set(off, false);
    head.set(on, true);
}

impl Folio {
    /// Return the frames (the last reference is gone; the folio is locked or new).
    fn free(self) {
        let order = self.order();
        let head = self.meta(0);
        debug_assert!(!head.test(flags::DEFERRED), "queued folio freed");
        if head.test(flags::HUGETLB) {
            for m in self.metas(0, 1 << order) {
                m.set(flags::ANON_EXCLUSIVE, false);
            }
            // Back to a bare allocated block, unlocked last: the pool hands it out again
            // and `adopt_hugetlb` makes a new folio of it.
            for flag in [
                flags::HUGETLB,
                flags::ANON,
                flags::FILE,
                flags::CACHED,
                flags::ALL_EXCLUSIVE,
                flags::ALL_SHARED,
                flags::LOCKED,
            ] {
                head.set(flag, false);
            }
            return super::hugetlb::give_back(self.head, order);
        }
        if head.test(flags::ANON) {
            mthp::stats(order).nr_anon.fetch_sub(1, Ordering::Relaxed);
        }
        frames().free(self.head, order);
    }
}

/// Take `f` off the deferred-split queue if it is on it; true if this call did (the
/// caller now owns the queue's reference).
fn dequeue(f: Folio) -> bool {
    let mut q = DEFERRED.lock();
    if !f.meta(0).set(flags::DEFERRED, false) {
        return false;
    }
    if let Some(i) = q.iter().position(|&h| h == f.head) {
        q.remove(i);
    }
    mthp::stats(f.order())
        .nr_anon_partially_mapped
        .fetch_sub(1, Ordering::Relaxed);
    true
}

/// The folio span of the frame at `pa` as the page-table layer sees it (a single page
/// if the frame is not allocated): what both machines' `PtMachine::folio_of` answer.
pub fn span_of(pa: PhysAddr) -> FolioSpan {
    match frames().block_of(pa) {
        Some((head, order)) => FolioSpan {
            head,
            nr_pages: 1 << order,
        },
        None => FolioSpan {
            head: pa,
            nr_pages: 1,
        },
    }
}

/// Whether the page at `pa` is anon-exclusive, for pages of anonymous folios (`None`
/// for any other frame): what both machines' `PtMachine::anon_exclusive` answer.
pub fn anon_exclusive(pa: PhysAddr) -> Option<bool> {
    if super::zero::is_zero(pa) {
        // Shared by every address space: never writable (the checker's rule).
        return Some(false);
    }
    let (head, _) = frames().block_of(pa)?;
    let f = Folio { head };
    f.meta(0)
        .test(flags::ANON)
        .then(|| f.is_exclusive(f.index(pa)))
}

/// The first of the `n` pages from `pa` (one entry's, in one folio) that is pinned but
/// not anon-exclusive, for an anonymous folio with a pin (`None` otherwise): what both
/// machines' `PtMachine::pinned_shared` answer.
pub fn pinned_shared(pa: PhysAddr, n: usize) -> Option<PhysAddr> {
    let (head, _) = frames().block_of(pa)?;
    let f = Folio { head };
    if !f.meta(0).test(flags::ANON) || !f.is_pinned() {
        return None;
    }
    let first = f.index(pa);
    (first..first + n)
        .find(|&i| f.pins(i) > 0 && !f.is_exclusive(i))
        .map(|i| f.page(i))
}

/// Whether the `n` pages from `pa` (pinned; in one folio) are all anon-exclusive.
pub fn pages_exclusive(pa: PhysAddr, n: usize) -> bool {
    let page = frames().meta(pa);
    if page.order() == 0 {
        // A single page has no override: its flag is the answer.
        return page.test(flags::ANON_EXCLUSIVE);
    }
    let f = Folio::of(pa);
    f.range_exclusive(f.index(pa), n)
}

/// Split the consecutive pages `[pa, pa + n pages)` at folio boundaries: calls
/// `f(locked folio, first page index, count)` for each folio the range touches, in
/// order. The pages must be pinned (protocol, rule 2).
pub fn for_each_folio(pa: PhysAddr, n: usize, mut f: impl FnMut(Locked, usize, usize)) {
    let mut k = 0;
    while k < n {
        let p = pa.add(k * PAGE_SIZE);
        let folio = Folio::lock(p);
        let first = folio.index(p);
        let count = (folio.nr_pages() - first).min(n - k);
        f(folio, first, count);
        k += count;
    }
}

/// Why [`merge`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeError {
    /// A folio of the run is locked by someone else: try again later.
    Busy,
    /// A folio of the run is held beyond its mappings, queued for deferred split, not
    /// anonymous, or sticks out of the run: these folios cannot become one.
    Unfit,
}

/// Make one anonymous folio of `order` at `head` out of the folios that tile the
/// naturally aligned run `[head, head + 2^order pages)`, without moving a byte
/// (protocol, rule 5). The pages must be pinned (the caller maps all of them). Returns
/// the merged folio, locked.
pub fn merge(head: PhysAddr, order: usize) -> Result<Locked, MergeError> {
    let n = 1usize << order;
    let mut parts: alloc::vec::Vec<Locked> = alloc::vec::Vec::new();
    let mut i = 0;
    while i < n {
        let f = Folio::try_lock(head.add(i * PAGE_SIZE)).ok_or(MergeError::Busy)?;
        let fits = f.head == head.add(i * PAGE_SIZE) && i + f.nr_pages() <= n;
        let anon = f.meta(0).test(flags::ANON);
        let free_of_others = !f.is_deferred() && f.refcount() == f.total_mapcount() as u32;
        if !(fits && anon && free_of_others) {
            return Err(MergeError::Unfit);
        }
        i += f.nr_pages();
        f.spread();
        parts.push(f);
    }
    let refs: u32 = parts.iter().map(|f| f.refcount()).sum();
    for f in &parts {
        mthp::stats(f.order())
            .nr_anon
            .fetch_sub(1, Ordering::Relaxed);
    }
    // The merged folio keeps the first part's lock bit; the others' go with their heads.
    for f in parts {
        core::mem::forget(f);
    }
    frames().merge_blocks(head, order, refs);
    mthp::stats(order).nr_anon.fetch_add(1, Ordering::Relaxed);
    Ok(Locked { f: Folio { head } })
}

/// A zeroed anonymous folio of `order`, holding the allocation's reference (drop it
/// with `put(1)` once the pages are mapped); `env` zeroes its pages.
pub fn alloc_anon<E: MmMachine>(env: &E, order: usize) -> Option<Folio> {
    let f = alloc_anon_frames(order)?;
    env.zero_pages(f.head, 1 << order);
    Some(f)
}

/// An anonymous folio of `order` holding a copy of the pages from `from` (copy-on-write:
/// not zeroed first, every byte is overwritten), with the allocation's reference.
pub fn alloc_anon_copy<E: MmMachine>(env: &E, order: usize, from: PhysAddr) -> Option<Folio> {
    let f = alloc_anon_frames(order)?;
    env.copy_pages(from, f.head, 1 << order);
    Some(f)
}

/// The pool page at `head` (`hugetlb`, its contents set by the caller) as a folio
/// holding the allocation's reference: anonymous (a private mapping's page, not
/// counted among the mTHP folios) or a file's (a shared mapping's).
pub fn adopt_hugetlb(head: PhysAddr, file: bool) -> Folio {
    let f = Folio { head };
    let m = f.meta(0);
    m.set(flags::HUGETLB, true);
    m.set(if file { flags::FILE } else { flags::ANON }, true);
    m.refcount.store(1, Ordering::Release);
    f
}

/// A zeroed folio of `order` for a file's page cache (`shmem`), holding the
/// allocation's reference.
pub fn alloc_file<E: MmMachine>(env: &E, order: usize) -> Option<Folio> {
    let head = frames().alloc(order)?;
    let f = Folio { head };
    f.meta(0).set(flags::FILE, true);
    env.zero_pages(head, 1 << order);
    Some(f)
}

fn alloc_anon_frames(order: usize) -> Option<Folio> {
    let head = frames().alloc(order)?;
    let f = Folio { head };
    f.meta(0).set(flags::ANON, true);
    mthp::stats(order).nr_anon.fetch_add(1, Ordering::Relaxed);
    Some(f)
}

/// The deferred-split queue, oldest first (protocol, rule 4).
static DEFERRED: IrqSpinLock<VecDeque<PhysAddr>> = IrqSpinLock::new(VecDeque::new());

/// One shrinker at a time (protocol, rule 4).
static SHRINKER: IrqSpinLock<()> = IrqSpinLock::new(());

/// Folios waiting on the deferred-split queue.
pub fn deferred_count() -> usize {
    DEFERRED.lock().len()
}

/// Host tests: empty the queue without touching its folios (a failed test leaked them).
#[cfg(test)]
pub fn forget_deferred() {
    DEFERRED.lock().clear();
}

/// Free memory below 1/64 of RAM: time to give back what partially mapped folios hold.
const LOW_WATERMARK_DIVISOR: usize = 64;

/// Run the shrinker if free memory is under the low watermark and folios are waiting.
pub fn shrink_if_low() {
    let f = frames();
    if f.free_frames() < f.managed_frames() / LOW_WATERMARK_DIVISOR && deferred_count() > 0 {
        shrink_deferred();
    }
}

/// The shrinker: split every queued folio that can be split; returns how many were.
/// A folio someone holds an extra reference to (beyond its mappings) cannot be split
/// now and goes back on the queue. One folio at a time leaves the queue, so the
/// shrinker needs no memory of its own; it visits each folio queued when it started
/// at most once.
pub fn shrink_deferred() -> usize {
    shrink_deferred_upto(usize::MAX)
}

/// [`shrink_deferred`], visiting at most `limit` folios (the reclaim thread's bounded
/// step).
pub fn shrink_deferred_upto(limit: usize) -> usize {
    let _one = SHRINKER.lock();
    let mut budget = deferred_count().min(limit);
    let mut done = 0;
    while budget > 0 {
        budget -= 1;
        let head = {
            let mut q = DEFERRED.lock();
            let Some(head) = q.pop_front() else { break };
            let f = Folio { head };
            f.meta(0).set(flags::DEFERRED, false);
            mthp::stats(f.order())
                .nr_anon_partially_mapped
                .fetch_sub(1, Ordering::Relaxed);
            head
        };
        // We own the queue's reference: the folio (still of this shape, since only a
        // shrinker splits and we are the only one) cannot be freed under us.
        let f = Folio::lock(head);
        if f.is_deferred() || f.total_mapcount() == 0 {
            // Re-queued meanwhile (the queue holds another reference), or no longer
            // mapped at all: only our reference to drop, which may free it.
            f.put(1);
            continue;
        }
        let s = mthp::stats(f.order());
        if f.refcount() != f.total_mapcount() as u32 + 1 {
            s.split_failed.fetch_add(1, Ordering::Relaxed);
            requeue(f);
            continue;
        }
        split(f, 1, |part| {
            let mapped = (0..part.nr_pages())
                .filter(|&i| part.mapcount(i) > 0)
                .count();
            mapped > 0 && mapped < part.nr_pages()
        });
        s.split.fetch_add(1, Ordering::Relaxed);
        done += 1;
    }
    done
}

/// Back on the queue, with the reference the shrinker took off it.
fn requeue(f: Locked) {
    let mut q = DEFERRED.lock();
    f.meta(0).set(flags::DEFERRED, true);
    q.push_back(f.head);
    mthp::stats(f.order())
        .nr_anon_partially_mapped
        .fetch_add(1, Ordering::Relaxed);
}

/// Split the locked, exclusive `f` that an operation covers only in part, its pages
/// `covered` (MADV_FREE of part of a folio, `lazyfree`), so that the covered pages
/// become whole folios: a folio above 64 KiB into 64 KiB folios and those the range
/// cuts into 4 KiB ones, a smaller one into 4 KiB folios. The caller's mapping holds
/// every reference (refcount == total map count: no extra one is taken, none is
/// dropped), and it has already made sure that no contiguous block or 2 MiB block
/// maps pages of two of the resulting folios (`PageTable::unfold_edges`). Counts
/// Linux's `split` for the order.
pub fn split_cut(f: Locked, covered: core::ops::Range<usize>) {
    assert!(
        f.is_large()
            && !f.is_deferred()
            && f.refcount() == f.total_mapcount() as u32
            && covered.start < covered.end
            && covered.end <= f.nr_pages(),
        "split_cut of folio {} (order {}, refcount {}, mapped {}) at pages {covered:?}",
        f.head,
        f.order(),
        f.refcount(),
        f.total_mapcount()
    );
    let order = f.order();
    let (lo, hi) = (f.page(covered.start), f.page(covered.end));
    split(f, 0, |part| {
        let end = part.page(part.nr_pages());
        let inside = lo <= part.head && end <= hi;
        let outside = end <= lo || hi <= part.head;
        !inside && !outside
    });
    mthp::stats(order).split.fetch_add(1, Ordering::Relaxed);
}

/// Split the locked `f`, whose references are one per entry mapping it plus `extra`
/// that the caller holds and gives up with it (the shrinker's, taken off the queue):
/// into 64 KiB folios, then those `to_pages` picks into 4 KiB folios; every new folio
/// holds one reference per entry mapping it. Each resulting folio no one maps is
/// freed, the others are unlocked; none keeps the lazyfree mark.
fn split(f: Locked, extra: u32, to_pages: impl Fn(Folio) -> bool) {
    // From here on the pages' own counts and flags say everything.
    f.spread();
    assert_eq!(
        f.refcount(),
        f.total_mapcount() as u32 + extra,
        "split of folio {}: references beyond its mappings",
        f.head
    );
    let f = {
        let folio = f.f;
        core::mem::forget(f);
        folio
    };
    let order = f.order();
    let anon = f.meta(0).test(flags::ANON);
    if anon {
        mthp::stats(order).nr_anon.fetch_sub(1, Ordering::Relaxed);
    }
    let mapped = |sub: PhysAddr, n: usize| {
        (0..n)
            .map(|i| {
                frames()
                    .meta(sub.add(i * PAGE_SIZE))
                    .mapcount
                    .load(Ordering::Relaxed) as u32
            })
            .sum::<u32>()
    };
    let mid = if order > CONT_ORDER { CONT_ORDER } else { 0 };
    frames().split_block(f.head, order, mid, |sub| mapped(sub, 1 << mid));
    // f's own metadata now says order `mid`: the loop covers the old extent.
    for sub in (0..1usize << order)
        .step_by(1 << mid)
        .map(|i| Folio { head: f.page(i) })
    {
        let n = 1usize << mid;
        if mid > 0 && to_pages(sub) {
            frames().split_block(sub.head, mid, 0, |p| mapped(p, 1));
            for page in (0..n).map(|i| Folio { head: sub.page(i) }) {
                settle(page, anon);
            }
        } else {
            settle(sub, anon);
        }
    }
}

/// A folio just made (locked) by a split: freed if nothing maps it, else counted as
/// anonymous and unlocked.
fn settle(f: Folio, anon: bool) {
    if f.refcount() == 0 {
        frames().free(f.head, f.order());
        return;
    }
    if anon {
        f.meta(0).set(flags::ANON, true);
        mthp::stats(f.order())
            .nr_anon
            .fetch_add(1, Ordering::Relaxed);
    }
    f.meta(0).unlock_head();
}
