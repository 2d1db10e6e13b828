//! The context of one page-table operation: the single store function, counted and
//! checked TLB maintenance, and the end-of-operation work.
//!
//! Every descriptor the layer writes goes through [`Ctx::store`] (or [`Ctx::store_block`],
//! the same stores for the 16 entries of a block); every TLBI and DSB
//! through [`Ctx::tlbi_page`], [`Ctx::invalidate_now`] and [`Ctx::dsb`]. Those are the
//! two places where counters are bumped and where the checker observes the page
//! tables. (The folio-accounting hook, mapcount against entries, belongs next to the
//! checker call in [`Ctx::store`], which sees every entry that maps or stops mapping a
//! frame, and in the checker-off loop of [`Ctx::store_block`].)
//!
//! An operation is bracketed by [`Ctx::begin`] and [`Ctx::finish`]: `finish` issues the
//! deferred TLB invalidation of the range (one range TLBI, or per-page TLBIs, or a
//! whole-ASID TLBI for large ranges), waits for it with a DSB, frees the tables the
//! operation emptied, adds the operation's descriptor stores to the counters, and runs
//! the checker's end-of-operation rules.
//!
//! With the checker off, the only trace of it is one branch per hook, tested inline.

use core::panic::Location;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::addr::{PhysAddr, VirtAddr, CONT_PTES, PAGE_SIZE, PMD_SIZE, PTRS_PER_TABLE};

use super::check::{Checker, OpKind, TlbiScope};
use super::counters::{self, Counters, CpuCounters};
use super::cursor::{Cursor, Found, Slot, Table};
use super::desc::{entry_size, Kind, Level, LAST_LEVEL};
use super::desc::{Change, Pte};
use super::machine::{Asid, Features, PtMachine, Tlb};
use super::{ContMode, MapError};

/// How [`Ctx::store`] changes a descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Write {
    /// Atomically replace (AtomicU64::swap), returning what was there, including AF and
    /// dirty state set by the hardware up to that instant.
    Swap(Pte),
    /// Atomically apply a change to a valid entry (compare-and-swap loop, so a
    /// concurrent hardware AF/dirty update is never overwritten). Invalid entries are
    /// left alone: a change never creates a mapping.
    Update(Change),
}

/// From this many pages on, per-page TLBIs give way to one TLBI by ASID on a CPU
/// without range TLBI (Linux's cut-off too, MAX_DVM_OPS: one table's worth).
const MAX_TLBI_PAGES: usize = PTRS_PER_TABLE;
/// The most pages a range invalidation can cover (`arch::aarch64::tlb::range_steps`):
/// one page for an odd count plus one TLBI RVALE1IS per SCALE 0..=3, each of up to 31
/// units of 2^(5 * SCALE + 1) pages, i.e. 2^21 - 1 pages in at most 5 instructions.
/// 2^21 itself is not: its only set bit is beyond SCALE 3, and covering it page by page
/// would be two million TLBIs under the address-space lock.
pub const MAX_TLBI_RANGE_PAGES: usize = (1 << 21) - 1;

/// How [`Ctx::invalidate_now`] covers a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlbiPlan {
    /// One TLBI VALE1IS per page.
    Pages,
    /// TLBI RVALE1IS (FEAT_TLBIRANGE), at most 5 instructions.
    Range,
    /// One TLBI ASIDE1IS: the range is too large for either.
    Asid,
}

/// The invalidation of `pages` pages, on a CPU with or without range TLBI.
pub(crate) const fn tlbi_plan(range_tlbi: bool, pages: usize) -> TlbiPlan {
    if range_tlbi {
        if pages > MAX_TLBI_RANGE_PAGES {
            TlbiPlan::Asid
        } else if pages > 1 {
            TlbiPlan::Range
        } else {
            TlbiPlan::Pages
        }
    } else if pages >= MAX_TLBI_PAGES {
        TlbiPlan::Asid
    } else {
        TlbiPlan::Pages
    }
}

pub(crate) struct Ctx<'a, E: PtMachine> {
    pub env: &'a E,
    pub root: PhysAddr,
    pub asid: Asid,
    pub mode: ContMode,
    pub features: Features,
    check: &'a mut Checker,
    /// Hull of the entries changed in a way that needs a TLBI (see `Pte::needs_tlbi`).
    pending: Option<(VirtAddr, VirtAddr)>,
    /// Hull of the 2 MiB regions whose tables may have become empty or were allocated
    /// by this operation (inside the operation's range, which it has walked already,
    /// so walking the hull again at the end costs no more than the operation did).
    maybe_empty: Option<(VirtAddr, VirtAddr)>,
    /// The 2 MiB regions whose tables stay even if emptied (a move's source, which
    /// must take its entries back without allocating if a later batch fails): not
    /// noted in `maybe_empty`.
    keep: Option<(VirtAddr, VirtAddr)>,
    /// Descriptor stores so far, added to the counter once, in `finish`.
    written: u64,
    /// This CPU's counters (`counters`' module doc).
    counters: &'a CpuCounters,
}

impl<'a, E: PtMachine> Ctx<'a, E> {
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn begin(
        env: &'a E,
        root: PhysAddr,
        asid: Asid,
        mode: ContMode,
        check: &'a mut Checker,
        kind: OpKind,
        range: (VirtAddr, VirtAddr),
        caller: &'static Location<'static>,
    ) -> Self {
        let features = env.features();
        check.begin_op(kind, range, features, caller);
        Ctx {
            env,
            root,
            asid,
            mode,
            features,
            check,
            pending: None,
            maybe_empty: None,
            keep: None,
            written: 0,
            counters: counters::here(env),
        }
    }

    /// Completes the operation: deferred TLBI + DSB, empty tables freed, checks run.
    pub fn finish(mut self) {
        self.flush_pending();
        if let Some((start, end)) = self.maybe_empty.take() {
            let mut va = start;
            while va < end {
                // The tables above level 3 once per level-2 table: at the hull's last
                // step inside it (what the steps before freed is known by then).
                let l2_span = entry_size(1);
                let last_below = |next: VirtAddr| {
                    next >= end || next.align_down(l2_span) != va.align_down(l2_span)
                };
                let next = |skip: usize| va.align_down(skip).add(skip);
                let upper = last_below(next(PMD_SIZE));
                let skip = free_empty_tables(&mut self, va, upper);
                va = next(skip);
            }
        }
        Counters::bump(&self.counters().entries_written, self.written);
        if self.check.is_enabled() {
            self.check.end_op(self.env, self.root);
        }
    }

    /// Issues the TLBI the operation has deferred so far, and waits for it (DSB): a
    /// move, before the frames it cleared become reachable at their new address.
    pub fn flush_pending(&mut self) {
        if let Some((start, end)) = self.pending.take() {
            self.invalidate_now(start, end.offset_from(start) / PAGE_SIZE);
        }
    }

    /// Writes one descriptor (see [`write_entry`]). Returns the old and the new value.
    ///
    /// With the checker off, its hooks cost one branch (tested inline, no call).
    /// Always inlined, so that where the kind of write is known the call and the
    /// dispatch on `Write` disappear.
    #[track_caller]
    #[inline(always)]
    pub fn store(&mut self, slot: Slot<'_>, write: Write) -> (Pte, Pte) {
        let site = Location::caller();
        let checking = self.check.is_enabled();
        if checking {
            self.check.before_store(&slot);
        }
        let (old, new) = match write_entry(&slot.table.entries[slot.index], write) {
            Ok(changed) => changed,
            Err(cur) => return (cur, cur),
        };
        self.written += 1;
        if checking {
            self.check.after_store(&slot, old, new, site);
        }
        (old, new)
    }

    /// The stores of up to one contiguous block's entries, `table[first..first + n]`
    /// (`n <= 16`), entry `i` written with `write(i)`, in order: exactly what `n`
    /// calls of [`Ctx::store`] do (with the checker on, it makes them); the first `n`
    /// results are theirs. With the checker off the loop runs on the entries
    /// themselves, without building a slot per entry: the batched operations, folds,
    /// unfolds and fork's copies are mostly this loop.
    #[track_caller]
    #[inline(always)]
    pub fn store_block(
        &mut self,
        table: Table<'_>,
        first: usize,
        n: usize,
        write: impl FnMut(usize) -> Write,
    ) -> [(Pte, Pte); CONT_PTES] {
        let mut out = [(Pte::INVALID, Pte::INVALID); CONT_PTES];
        self.store_each(table, first, n, write, |i, old, new| out[i] = (old, new));
        out
    }

    /// [`Ctx::store_block`] that hands each entry's old and new value to `seen(i, old,
    /// new)` instead of returning them (no array to fill and copy: the batched changes
    /// only fold them into a flag or two).
    #[track_caller]
    #[inline(always)]
    pub fn store_each(
        &mut self,
        table: Table<'_>,
        first: usize,
        n: usize,
        mut write: impl FnMut(usize) -> Write,
        mut seen: impl FnMut(usize, Pte, Pte),
    ) {
        if self.check.is_enabled() {
            for i in 0..n {
                let (old, new) = self.store(table.slot(first + i), write(i));
                seen(i, old, new);
            }
            return;
        }
        let entries = &table.entries[first..first + n];
        // Counted once for the loop: `seen` may not touch `self`, but a count kept
        // in `self` would be reloaded and stored again for every entry.
        let mut written = 0;
        for (i, entry) in entries.iter().enumerate() {
            let (old, new) = match write_entry(entry, write(i)) {
                Ok(changed) => {
                    written += 1;
                    changed
                }
                Err(cur) => (cur, cur),
            };
            seen(i, old, new);
        }
        self.written += written;
    }

    /// This CPU's counters.
    pub fn counters(&self) -> &'a CpuCounters {
        self.counters
    }

    /// Records that `[va, va + bytes)` needs a TLBI before the operation completes.
    pub fn flush_later(&mut self, va: VirtAddr, bytes: usize) {
        let end = va.add(bytes);
        self.pending = Some(match self.pending {
            None => (va, end),
            Some((s, e)) => (s.min(va), e.max(end)),
        });
    }

    /// Invalidates the last-level entries of `pages` pages from `va` and waits (DSB):
    /// a range TLBI where the CPU has one, one TLBI per page otherwise, or one TLBI by
    /// ASID for ranges too large for either. TLBIs are broadcast (inner shareable) and
    /// ASID-tagged because every user entry is nG.
    pub fn invalidate_now(&mut self, va: VirtAddr, pages: usize) {
        let counters = self.counters();
        match tlbi_plan(self.features.range_tlbi, pages) {
            TlbiPlan::Asid => {
                self.env.tlb().asid(self.asid);
                Counters::bump(&counters.tlbi_asid, 1);
                if self.check.is_enabled() {
                    self.check.on_tlbi(TlbiScope::Asid);
                }
            }
            TlbiPlan::Range => {
                self.env.tlb().range(self.asid, va, pages);
                Counters::bump(&counters.tlbi_range, 1);
                if self.check.is_enabled() {
                    self.check.on_tlbi(TlbiScope::Range { va, pages });
                }
            }
            TlbiPlan::Pages => {
                let tlb = self.env.tlb();
                for i in 0..pages {
                    tlb.page(self.asid, va.add(i * PAGE_SIZE), true);
                }
                // One count for the run (the same total as `tlbi_page` per page).
                Counters::bump(&counters.tlbi_page, pages as u64);
                if self.check.is_enabled() {
                    for i in 0..pages {
                        let va = va.add(i * PAGE_SIZE);
                        self.check.on_tlbi(TlbiScope::Page {
                            va,
                            last_level: true,
                        });
                    }
                }
            }
        }
        self.dsb();
    }

    /// One TLBI by VA: last-level entries only, or (`last_level == false`) also the
    /// walk-cache entries of the tables on the way to `va`.
    pub fn tlbi_page(&mut self, va: VirtAddr, last_level: bool) {
        self.env.tlb().page(self.asid, va, last_level);
        Counters::bump(&self.counters().tlbi_page, 1);
        if self.check.is_enabled() {
            self.check.on_tlbi(TlbiScope::Page { va, last_level });
        }
    }

    /// Orders the contents of a new table (zeroed by the allocator, maybe filled by
    /// the layer) before the descriptor that links it, for every CPU's walker (Linux
    /// uses a DMB ISHST there; the TLB interface's DSB ISH is at least as strong).
    pub fn publish_barrier(&mut self) {
        self.dsb();
    }

    /// DSB: the TLBIs before it have completed on every CPU.
    pub fn dsb(&mut self) {
        self.env.tlb().dsb();
        Counters::bump(&self.counters().dsb, 1);
        if self.check.is_enabled() {
            self.check.on_dsb();
        }
    }

    /// A zeroed table for the walk to `va`; the region is remembered so that the
    /// table is freed again if the operation leaves it empty.
    pub fn alloc_table(&mut self, va: VirtAddr) -> Result<PhysAddr, MapError> {
        let pa = self.env.alloc_table().ok_or(MapError::NoMemory)?;
        Counters::bump(&self.counters().tables_allocated, 1);
        self.note_maybe_empty(va);
        Ok(pa)
    }

    pub fn free_table(&mut self, pa: PhysAddr) {
        if self.check.is_enabled() {
            self.check.on_free_table(pa);
        }
        Counters::bump(&self.counters().tables_freed, 1);
        self.env.free_table(pa);
    }

    /// The tables on the way to `va` may be empty at the end of the operation.
    pub fn note_maybe_empty(&mut self, va: VirtAddr) {
        let lo = va.align_down(PMD_SIZE);
        let hi = lo.add(PMD_SIZE);
        if self.keep.is_some_and(|(s, e)| s <= lo && hi <= e) {
            return;
        }
        self.maybe_empty = Some(match self.maybe_empty {
            None => (lo, hi),
            Some((s, e)) => (s.min(lo), e.max(hi)),
        });
    }

    /// The tables of the 2 MiB regions `[start, end)` touches stay even if the
    /// operation empties them (a move's source; `free_empty_tables` later). Without
    /// this, the hull of a move's noted regions, from its destination to its source,
    /// freed the source's emptied tables, this batch's and the earlier ones' between.
    pub fn keep_tables(&mut self, start: VirtAddr, end: VirtAddr) {
        self.keep = Some((start.align_down(PMD_SIZE), end.align_up(PMD_SIZE)));
    }

    /// Tells the checker that the operation legitimately writes `[start, end)`
    /// beyond its own range (splitting a level-2 block rewrites all of it).
    pub fn widen(&mut self, start: VirtAddr, end: VirtAddr) {
        self.check.widen(start, end);
    }

    /// Tells the checker that the level-2 block `old` at `va` is being replaced by the
    /// level-3 table at `table`, so the new entries are compared against the block.
    pub fn note_split(&mut self, va: VirtAddr, old: Pte, table: PhysAddr) {
        self.check.on_split_l2(va, old, table);
    }
}

/// One descriptor write, the part of [`Ctx::store`] that touches memory: the old and
/// the new value, or `Err` with the entry for an update of an invalid one (left alone).
///
/// Memory orderings are relaxed: the address-space lock orders the CPUs running this
/// layer, and the hardware walkers are ordered by the DSBs of the TLB interface
/// (`Ctx::dsb`, `Ctx::publish_barrier`), not by the language's model.
///
/// A `Swap` over an invalid entry is a plain store: nobody else writes an invalid
/// entry (the hardware updates AF and dirty state only in the valid descriptors it
/// translates with, Arm ARM D8.4.2 "Hardware management of the Access flag and dirty
/// state"; other CPUs hold the address-space lock), so the atomic swap is needed only
/// where a concurrent update must not be lost.
#[inline(always)]
fn write_entry(entry: &AtomicU64, write: Write) -> Result<(Pte, Pte), Pte> {
    match write {
        Write::Swap(new) => {
            let cur = Pte::from_raw(entry.load(Ordering::Relaxed));
            if cur.is_valid() {
                Ok((Pte::from_raw(entry.swap(new.raw(), Ordering::Relaxed)), new))
            } else {
                entry.store(new.raw(), Ordering::Relaxed);
                Ok((cur, new))
            }
        }
        Write::Update(change) => {
            let mut new = Pte::INVALID;
            let apply = |raw| {
                let pte = Pte::from_raw(raw);
                new = change.apply(pte);
                pte.is_valid().then_some(new.raw())
            };
            match entry.fetch_update(Ordering::Relaxed, Ordering::Relaxed, apply) {
                Ok(old) => Ok((Pte::from_raw(old), new)),
                Err(cur) => Err(Pte::from_raw(cur)),
            }
        }
    }
}

/// TLBI VMALLE1IS + DSB, for the ASID allocator's rollover: counted with the rest.
pub fn flush_all_asids<E: PtMachine>(env: &E) {
    env.tlb().all();
    env.tlb().dsb();
    Counters::bump(&counters::here(env).tlbi_all, 1);
    Counters::bump(&counters::here(env).dsb, 1);
}

/// TLBI ASIDE1IS + DSB outside any operation, when an address space goes away.
pub(crate) fn flush_asid<E: PtMachine>(env: &E, asid: Asid) {
    env.tlb().asid(asid);
    env.tlb().dsb();
    Counters::bump(&counters::here(env).tlbi_asid, 1);
    Counters::bump(&counters::here(env).dsb, 1);
}

/// Walks to the entry of `va` at `target` (2 or 3), allocating missing tables on
/// the way. Fails if a block maps `va` above `target`, or on allocation failure.
pub(crate) fn slot_alloc<'a, E: PtMachine>(
    ctx: &mut Ctx<'a, E>,
    cursor: &mut Cursor,
    va: VirtAddr,
    target: Level,
) -> Result<Slot<'a>, MapError> {
    loop {
        match cursor.find(ctx.env, va) {
            Found::Ptes(table) if target == LAST_LEVEL => return Ok(table.slot_of(va)),
            Found::Block(slot) if slot.level() == target => return Ok(slot),
            Found::Ptes(_) | Found::Block(_) => return Err(MapError::AlreadyMapped),
            Found::Hole { level } => {
                let table = cursor.table_at(ctx.env, level);
                if level == target {
                    return Ok(table.slot_of(va));
                }
                let new = ctx.alloc_table(va)?;
                ctx.publish_barrier();
                ctx.store(table.slot_of(va), Write::Swap(Pte::table(new)));
            }
        }
    }
}

/// Frees the tables on the path to `va` that have become empty, deepest first; the
/// root is never freed; the level-2 and level-1 tables only if `upper` (a caller
/// walking a range asks once per level-2 table: testing one costs up to 512 loads).
/// Returns the span, aligned around `va`, in which no other table can be on the path
/// (what the walk found below `va` covers that much), for the caller walking a range.
///
/// Each one is unlinked; then one TLBI by VA that includes walk-cache entries (not
/// last-level only), which covers the entries of every level on the path to `va`, and
/// a DSB remove them from the walk caches, and only then are they freed: a table must
/// not be reused while a walker may still read it (break-before-make applies to table
/// descriptors too; the checker verifies it).
pub(crate) fn free_empty_tables<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    va: VirtAddr,
    upper: bool,
) -> usize {
    let mut path = [ctx.root; LAST_LEVEL + 1];
    let mut depth = 0;
    while depth < LAST_LEVEL {
        let table = Table::new(ctx.env, path[depth], depth, va);
        match table.slot_of(va).load().kind(depth) {
            Kind::Table(next) => {
                depth += 1;
                path[depth] = next;
            }
            _ => break,
        }
    }
    let skip = entry_size(depth.min(LAST_LEVEL - 1));
    let mut freed = [ctx.root; LAST_LEVEL];
    let mut nr_freed = 0;
    for level in (1..=depth).rev() {
        let table = Table::new(ctx.env, path[level], level, va);
        // Without a level-2 table on the path the walk skips 1 GiB or more: `upper`
        // speaks for 2 MiB steps only.
        if (level < LAST_LEVEL && !upper && depth >= 2) || !table.is_empty() {
            break;
        }
        let parent = Table::new(ctx.env, path[level - 1], level - 1, va);
        ctx.store(parent.slot_of(va), Write::Swap(Pte::INVALID));
        freed[nr_freed] = table.pa;
        nr_freed += 1;
    }
    if nr_freed > 0 {
        ctx.tlbi_page(va, false);
        ctx.dsb();
        for &pa in &freed[..nr_freed] {
            ctx.free_table(pa);
        }
    }
    skip
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boundary of range TLBI: 2^21 - 1 pages is the largest count the encoding
    /// covers; 2^21 and more take one TLBI by ASID (2^21 used to pass the limit test and
    /// become 2^21 single-page TLBIs). Without range TLBI, 512 pages and more do.
    #[test]
    fn tlbi_plan_boundaries() {
        use TlbiPlan::*;
        for (pages, with_range, without) in [
            (1, Pages, Pages),
            (2, Range, Pages),
            (16, Range, Pages),
            (MAX_TLBI_PAGES - 1, Range, Pages),
            (MAX_TLBI_PAGES, Range, Asid),
            ((1 << 21) - 1, Range, Asid),
            (1 << 21, Asid, Asid),
            ((1 << 21) + 1, Asid, Asid),
        ] {
            assert_eq!(
                tlbi_plan(true, pages),
                with_range,
                "{pages} pages, FEAT_TLBIRANGE"
            );
            assert_eq!(
                tlbi_plan(false, pages),
                without,
                "{pages} pages, no range TLBI"
            );
        }
    }

    /// The layer's limit is what the instruction encoder can do.
    #[test]
    fn range_limit_matches_the_encoder() {
        use crate::arch::aarch64::tlb::{range_steps, Step, MAX_RANGE_PAGES};
        assert_eq!(MAX_TLBI_RANGE_PAGES as u64, MAX_RANGE_PAGES);
        let mut steps = 0;
        range_steps(0x40000, MAX_TLBI_RANGE_PAGES as u64, |s| {
            assert!(matches!(s, Step::Range { .. }) || steps == 0, "{s:?}");
            steps += 1;
        });
        assert_eq!(steps, 5);
    }
}
