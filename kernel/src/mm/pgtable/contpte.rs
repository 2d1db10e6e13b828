//! The contiguous layer: transparent use of the Contiguous bit under the page-table
//! API, for level-3 entries of user address spaces.
//!
//! A *block* here is 16 level-3 entries mapping an aligned 64 KiB range (`_l3c` in
//! function names, FreeBSD's name for it). Its rules (`desc::cont_block_violation`) are
//! enforced by the checker (`check.rs`, via `desc::cont_block_violation`); this file
//! keeps them:
//!
//! * **Fold** ([`try_fold_l3c`]) when the last entry of a block has been written and all
//!   16 are valid pages of one folio, with consecutive frames from a 64 KiB aligned base
//!   and equal attributes apart from AF and dirty.
//! * **Unfold** ([`unfold_l3c`]) before any change to part of a block.
//! * Both are one **convert** ([`convert_l3c`]), a break-before-make sequence: clear the
//!   16 entries atomically while OR-ing their AF and dirty state, TLBI the 64 KiB, DSB,
//!   write the 16 new entries with the gathered AF and dirty state. With BBM level 2
//!   the TLBI (and its DSB) is skipped.
//! * **Batched** operations act on a fully covered contiguous block in place, entry by
//!   entry, without unfolding it: that is allowed because only permissions, AF and
//!   dirty state change, uniformly over the block (no break-before-make is needed for
//!   those). [`set_ptes`] writes the Contiguous bit directly on empty aligned blocks.
//! * A read of one entry ([`get_pte`]) gathers AF and dirty over its block, because
//!   the hardware sets them in whichever entry it used.
//! * Decisions are taken per entry on the entry's own value, never on a gathered one:
//!   deciding "nothing to change" from an OR over the block loops on faults forever
//!   when AF or dirty are managed in software (bug 3 of `docs/notes/contpte.md`, "Bugs the real kernels shipped").
//!
//! [`ContMode`] selects the behaviour: `On` as above; `Off` never sets the bit; `Naive`
//! keeps the bit but runs every range operation as a loop of single-entry operations
//! (unfold, change, refold), the way contpte behaved before batching.

use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::Ordering;

use crate::mm::addr::{PhysAddr, VirtAddr, CONT_PTES, CONT_SIZE, PAGE_SIZE};

use super::counters::Counters;
use super::ctx::{Ctx, Write};
use super::cursor::{Slot, Table};
use super::desc::{cont_block_violation, view, Change, Kind, Prot, Pte, LAST_LEVEL};
use super::machine::{block_in_one_folio, PtMachine};
use super::{ContMode, Unmapped};

/// The 16 level-3 entries of one aligned 64 KiB block.
#[derive(Clone, Copy)]
pub(crate) struct ContBlock<'a> {
    table: Table<'a>,
    first: usize,
}

impl<'a> ContBlock<'a> {
    pub fn containing(table: Table<'a>, va: VirtAddr) -> Self {
        assert_eq!(table.level, LAST_LEVEL);
        ContBlock {
            table,
            first: table.index_of(va) & !(CONT_PTES - 1),
        }
    }

    pub fn va(&self) -> VirtAddr {
        self.table.slot(self.first).va()
    }

    pub fn slot(&self, i: usize) -> Slot<'a> {
        assert!(i < CONT_PTES);
        self.table.slot(self.first + i)
    }

    fn load(&self) -> [Pte; CONT_PTES] {
        core::array::from_fn(|i| self.slot(i).load())
    }

    /// Whether the block is contiguous. Between operations a block's entries agree on
    /// the bit (all 16 valid and contiguous, or none contiguous: the checker's rule),
    /// and inside one the layer converts a block whole, so the first entry answers.
    fn is_cont(&self) -> bool {
        let cont = self.slot(0).load().is_cont();
        debug_assert!(
            (0..CONT_PTES).all(|i| self.slot(i).load().is_cont() == cont),
            "block at {:?} half contiguous",
            self.va()
        );
        cont
    }

    /// Writes the 16 entries, entry `i` with `write(i)` (`Ctx::store_block`).
    #[track_caller]
    #[inline(always)]
    fn store<E: PtMachine>(
        &self,
        ctx: &mut Ctx<'_, E>,
        write: impl FnMut(usize) -> Write,
    ) -> [(Pte, Pte); CONT_PTES] {
        ctx.store_block(self.table, self.first, CONT_PTES, write)
    }

    /// Writes the entries `range` of the block, entry `i` with `write(i)`; the results
    /// are at `range.start - range.start..` (`Ctx::store_block`).
    #[track_caller]
    #[inline(always)]
    fn store_part<E: PtMachine>(
        &self,
        ctx: &mut Ctx<'_, E>,
        range: Range<usize>,
        mut write: impl FnMut(usize) -> Write,
    ) -> [(Pte, Pte); CONT_PTES] {
        let start = range.start;
        ctx.store_block(self.table, self.first + start, range.len(), |k| {
            write(start + k)
        })
    }

    /// Indices of the entries of `[lo, hi)` (inside the block).
    fn indices(&self, lo: VirtAddr, hi: VirtAddr) -> Range<usize> {
        let base = self.va();
        lo.offset_from(base) / PAGE_SIZE..hi.offset_from(base) / PAGE_SIZE
    }
}

/// A run of level-3 entries inside one table, `[start, end)`.
#[derive(Clone, Copy)]
pub(crate) struct PteRun<'a> {
    pub table: Table<'a>,
    pub start: VirtAddr,
    pub end: VirtAddr,
}

impl<'a> PteRun<'a> {
    /// The blocks the run overlaps, each with the part `[lo, hi)` it covers.
    fn blocks(self) -> impl Iterator<Item = (ContBlock<'a>, VirtAddr, VirtAddr)> {
        let first = self.start.align_down(CONT_SIZE);
        let count = self.end.align_up(CONT_SIZE).offset_from(first) / CONT_SIZE;
        (0..count).map(move |k| {
            let base = first.add(k * CONT_SIZE);
            let blk = ContBlock::containing(self.table, base);
            (blk, base.max(self.start), base.add(CONT_SIZE).min(self.end))
        })
    }
}

fn is_whole(blk: &ContBlock<'_>, lo: VirtAddr, hi: VirtAddr) -> bool {
    lo == blk.va() && hi == blk.va().add(CONT_SIZE)
}

/// Rewrites a block with the Contiguous bit set (`cont`) or clear, by break-before-make
/// (the rule is stated and enforced in `check.rs`).
fn convert_l3c<E: PtMachine>(ctx: &mut Ctx<'_, E>, blk: ContBlock<'_>, cont: bool) {
    assert!(blk.va().is_aligned(CONT_SIZE));
    let mut old = [Pte::INVALID; CONT_PTES];
    let (mut young, mut dirty) = (false, false);
    ctx.store_each(
        blk.table,
        blk.first,
        CONT_PTES,
        |_| Write::Swap(Pte::INVALID),
        |i, before, _| {
            old[i] = before;
            young |= before.is_young();
            dirty |= before.is_dirty();
        },
    );
    if !ctx.features.bbml2 {
        ctx.invalidate_now(blk.va(), CONT_PTES);
    }
    // Without the TLBI above (BBM level 2), the gathered dirty state may have made a
    // clean writable entry hardware-writable: that needs its TLBI. Not with hardware
    // dirty state, where DBM already let the hardware write.
    let may_relax = ctx.features.bbml2 && dirty && !ctx.features.hw_dirty;
    let mut relaxed = false;
    ctx.store_each(
        blk.table,
        blk.first,
        CONT_PTES,
        |i| Write::Swap(old[i].with_cont(cont).with_gathered(young, dirty)),
        |i, _, new| relaxed |= may_relax && Pte::relaxes_permission(old[i], new, false),
    );
    if relaxed {
        ctx.flush_later(blk.va(), CONT_SIZE);
    }
    Counters::bump(&ctx.counters().converts, 1);
}

/// Folds a block if it qualifies (see the module docs). Returns whether it did.
pub(crate) fn try_fold_l3c<E: PtMachine>(ctx: &mut Ctx<'_, E>, blk: ContBlock<'_>) -> bool {
    assert!(blk.va().is_aligned(CONT_SIZE));
    if ctx.mode == ContMode::Off {
        return false;
    }
    // The cheap refusals first: a first frame not 64 KiB aligned (a folio mapped at
    // another offset inside 64 KiB, after a move) needs no lookup, a block of a folio
    // smaller than 64 KiB (16 and 32 KiB folios fill blocks without ever folding) one
    // lookup, not 16 loads.
    let first = blk.slot(0).load();
    let aligned = first.output_addr().is_aligned(CONT_SIZE);
    if !first.is_valid() || !aligned || !block_in_one_folio(ctx.env, first.output_addr()) {
        return false;
    }
    if !foldable(ctx.env, &blk.load()) {
        return false;
    }
    convert_l3c(ctx, blk, true);
    Counters::bump(&ctx.counters().folds, 1);
    true
}

fn foldable<E: PtMachine>(env: &E, entries: &[Pte; CONT_PTES]) -> bool {
    let singles = entries
        .iter()
        .all(|e| e.kind(LAST_LEVEL) == Kind::Page && !e.is_cont());
    singles
        && cont_block_violation(&entries.map(|e| e.with_cont(true)), LAST_LEVEL).is_none()
        && block_in_one_folio(env, entries[0].output_addr())
}

/// Unfolds a block if it is contiguous.
pub(crate) fn unfold_l3c<E: PtMachine>(ctx: &mut Ctx<'_, E>, blk: ContBlock<'_>) {
    assert!(blk.va().is_aligned(CONT_SIZE));
    if blk.is_cont() {
        convert_l3c(ctx, blk, false);
        Counters::bump(&ctx.counters().unfolds, 1);
    }
}

/// Writes an empty block as contiguous at once, from the page entry `first`.
fn map_l3c<E: PtMachine>(ctx: &mut Ctx<'_, E>, blk: ContBlock<'_>, first: Pte) {
    assert!(blk.va().is_aligned(CONT_SIZE) && first.output_addr().is_aligned(CONT_SIZE));
    debug_assert!(
        (0..CONT_PTES).all(|i| !blk.slot(i).load().is_valid()),
        "map_l3c over a live entry"
    );
    let first = first.with_cont(true);
    blk.store(ctx, |i| {
        Write::Swap(first.with_output_addr(first.output_addr().add(i * PAGE_SIZE)))
    });
    Counters::bump(&ctx.counters().cont_maps, 1);
}

/// Applies `change` to every entry of a contiguous block in place, without unfolding.
/// Returns the block's gathered old value.
fn change_l3c<E: PtMachine>(ctx: &mut Ctx<'_, E>, blk: ContBlock<'_>, change: Change) -> Pte {
    assert!(blk.va().is_aligned(CONT_SIZE));
    let hw_dirty = ctx.features.hw_dirty;
    let (mut first, mut young, mut dirty, mut needs_tlbi) = (Pte::INVALID, false, false, false);
    ctx.store_each(
        blk.table,
        blk.first,
        CONT_PTES,
        |_| Write::Update(change),
        |i, before, after| {
            if i == 0 {
                first = before;
            }
            young |= before.is_young();
            dirty |= before.is_dirty();
            needs_tlbi |= Pte::needs_tlbi(before, after, hw_dirty);
        },
    );
    if needs_tlbi {
        ctx.flush_later(blk.va(), CONT_SIZE);
    }
    // The block's old value as a read sees it (`view`): AF and dirty gathered.
    if first.is_cont() {
        first.with_gathered(young, dirty)
    } else {
        first
    }
}

/// Applies `change` to the valid entries of `[lo, hi)` in a block that is not
/// contiguous, in one loop over them; one TLBI request for the part if any needs it.
fn change_part<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    blk: ContBlock<'_>,
    lo: VirtAddr,
    hi: VirtAddr,
    change: Change,
) {
    let range = blk.indices(lo, hi);
    let hw_dirty = ctx.features.hw_dirty;
    let mut needs_tlbi = false;
    ctx.store_each(
        blk.table,
        blk.first + range.start,
        range.len(),
        |_| Write::Update(change),
        |_, before, after| needs_tlbi |= Pte::needs_tlbi(before, after, hw_dirty),
    );
    if needs_tlbi {
        ctx.flush_later(lo, hi.offset_from(lo));
    }
}

/// Applies `change` to the entry of `va` if its block is not contiguous (nothing if
/// the entry is invalid) and says whether it did; a contiguous block is left to the
/// range path, which unfolds or changes it whole.
pub(crate) fn change_single<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    table: Table<'_>,
    va: VirtAddr,
    change: Change,
) -> bool {
    let blk = ContBlock::containing(table, va);
    if ctx.mode == ContMode::Naive || blk.is_cont() {
        return false;
    }
    change_pte(ctx, table.slot_of(va), change);
    refold_if_last(ctx, blk, va.add(PAGE_SIZE));
    true
}

/// `replace_page` on a level-3 table: unfold the block of `va`, clear its entry,
/// TLBI + DSB, write `new`. Returns the old mapping.
pub(crate) fn replace_pte<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    table: Table<'_>,
    va: VirtAddr,
    new: Pte,
) -> Unmapped {
    unfold_l3c(ctx, ContBlock::containing(table, va));
    let slot = table.slot_of(va);
    let (old, _) = ctx.store(slot, Write::Swap(Pte::INVALID));
    assert!(old.is_valid(), "replace_page at {va:?}: nothing mapped");
    ctx.invalidate_now(va, 1);
    ctx.store(slot, Write::Swap(new));
    Unmapped::new(va, old, 1)
}

/// Applies `change` to one entry (nothing if it is invalid). Returns the old value.
fn change_pte<E: PtMachine>(ctx: &mut Ctx<'_, E>, slot: Slot<'_>, change: Change) -> Pte {
    let (old, new) = ctx.store(slot, Write::Update(change));
    if Pte::needs_tlbi(old, new, ctx.features.hw_dirty) {
        ctx.flush_later(slot.va(), PAGE_SIZE);
    }
    old
}

/// Clears a whole contiguous block, gathering AF and dirty.
fn clear_l3c<E: PtMachine>(ctx: &mut Ctx<'_, E>, blk: ContBlock<'_>) -> Unmapped {
    assert!(blk.va().is_aligned(CONT_SIZE));
    let old = blk
        .store(ctx, |_| Write::Swap(Pte::INVALID))
        .map(|(old, _)| old);
    ctx.flush_later(blk.va(), CONT_SIZE);
    Unmapped::new(blk.va(), view(&old, 0), CONT_PTES)
}

/// Clears the valid entries of `[lo, hi)` in a block that is not contiguous, a record
/// each pushed straight onto `out` (no record built and copied per entry: this loop is
/// most of an unmap or a move of small folios), and defers one TLBI for the span
/// from the first of them to the last.
fn clear_ptes<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    blk: ContBlock<'_>,
    lo: VirtAddr,
    hi: VirtAddr,
    out: &mut Vec<Unmapped>,
) {
    let mut span: Option<(VirtAddr, VirtAddr)> = None;
    for i in blk.indices(lo, hi) {
        let slot = blk.slot(i);
        if !slot.load().is_valid() {
            continue;
        }
        let (old, _) = ctx.store(slot, Write::Swap(Pte::INVALID));
        let va = slot.va();
        out.push(Unmapped::new(va, old, 1));
        span = Some((span.map_or(va, |(first, _)| first), va.add(PAGE_SIZE)));
    }
    if let Some((first, end)) = span {
        ctx.flush_later(first, end.offset_from(first));
    }
}

/// Maps the run's (empty) entries from the page entry `first` (for `run.start`),
/// advancing the output address page by page. Aligned blocks inside one folio get the
/// Contiguous bit directly (mode `On`); other blocks are written entry by entry and
/// folded once their last entry is written (modes `On` and `Naive`).
pub(crate) fn set_ptes<E: PtMachine>(ctx: &mut Ctx<'_, E>, run: PteRun<'_>, first: Pte) {
    let pa_at = |va: VirtAddr| first.output_addr().add(va.offset_from(run.start));
    for (blk, lo, hi) in run.blocks() {
        let pa = pa_at(lo);
        let direct = ctx.mode == ContMode::On
            && is_whole(&blk, lo, hi)
            && pa.is_aligned(CONT_SIZE)
            && block_in_one_folio(ctx.env, pa);
        if direct {
            map_l3c(ctx, blk, first.with_output_addr(pa));
            continue;
        }
        let base = blk.va();
        blk.store_part(ctx, blk.indices(lo, hi), |i| {
            Write::Swap(first.with_output_addr(pa_at(base.add(i * PAGE_SIZE))))
        });
        refold_if_last(ctx, blk, hi);
    }
}

/// Applies `change` to the valid entries of the run (holes stay holes).
pub(crate) fn change_ptes<E: PtMachine>(ctx: &mut Ctx<'_, E>, run: PteRun<'_>, change: Change) {
    for (blk, lo, hi) in run.blocks() {
        if ctx.mode == ContMode::Naive {
            for i in blk.indices(lo, hi) {
                unfold_l3c(ctx, blk);
                change_pte(ctx, blk.slot(i), change);
                try_fold_l3c(ctx, blk);
            }
        } else if is_whole(&blk, lo, hi) && blk.is_cont() {
            change_l3c(ctx, blk, change);
        } else {
            unfold_l3c(ctx, blk);
            change_part(ctx, blk, lo, hi, change);
            refold_if_last(ctx, blk, hi);
        }
    }
}

/// A change that wrote the last entry of a block may have made it uniform again
/// (mprotect restoring one page): fold it then, as Linux's `contpte_try_fold` does
/// from `set_ptes` when the last entry of a block is written.
fn refold_if_last<E: PtMachine>(ctx: &mut Ctx<'_, E>, blk: ContBlock<'_>, hi: VirtAddr) {
    if hi == blk.va().add(CONT_SIZE) {
        try_fold_l3c(ctx, blk);
    }
}

/// `protect_exclusive` on the run: each entry gets `rw` if `exclusive` says its page
/// (a whole contiguous block: its 16 pages) belongs to this address space alone, `ro`
/// otherwise. Holes stay holes.
pub(crate) fn protect_ptes<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    run: PteRun<'_>,
    ro: Prot,
    rw: Prot,
    exclusive: &mut impl FnMut(PhysAddr, usize) -> bool,
) {
    let mut prot_of = |pte: Pte, pages| {
        if exclusive(pte.output_addr(), pages) {
            rw
        } else {
            ro
        }
    };
    for (blk, lo, hi) in run.blocks() {
        if ctx.mode == ContMode::Naive {
            for i in blk.indices(lo, hi) {
                let pte = blk.slot(i).load();
                if pte.is_valid() {
                    unfold_l3c(ctx, blk);
                    change_pte(ctx, blk.slot(i), Change::Protect(prot_of(pte, 1)));
                    try_fold_l3c(ctx, blk);
                }
            }
            continue;
        }
        let cont = blk.is_cont();
        if cont && is_whole(&blk, lo, hi) {
            let prot = prot_of(blk.slot(0).load(), CONT_PTES);
            change_l3c(ctx, blk, Change::Protect(prot));
            continue;
        }
        if cont {
            unfold_l3c(ctx, blk);
        }
        let range = blk.indices(lo, hi);
        let table = blk.table;
        let first = blk.first + range.start;
        let hw_dirty = ctx.features.hw_dirty;
        let mut needs_tlbi = false;
        ctx.store_each(
            table,
            first,
            range.len(),
            |i| {
                let pte = Pte::from_raw(table.entries[first + i].load(Ordering::Relaxed));
                // An invalid entry is left alone by the update whatever it says.
                let prot = if pte.is_valid() { prot_of(pte, 1) } else { ro };
                Write::Update(Change::Protect(prot))
            },
            |_, before, after| needs_tlbi |= Pte::needs_tlbi(before, after, hw_dirty),
        );
        if needs_tlbi {
            ctx.flush_later(lo, hi.offset_from(lo));
        }
        refold_if_last(ctx, blk, hi);
    }
}

/// Clears the run, appending what was mapped to `out`: one record per contiguous
/// block cleared whole, one per single entry otherwise. Only the blocks cut at either
/// end of the run are unfolded (every block, in `Naive` mode). The table is freed at
/// the end of the operation if this left it empty.
pub(crate) fn get_and_clear_ptes<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    run: PteRun<'_>,
    out: &mut Vec<Unmapped>,
) {
    take_ptes(ctx, run, out);
    ctx.note_maybe_empty(run.start);
}

/// [`get_and_clear_ptes`] that keeps the table even if emptied: a move, which may have
/// to put the entries back without allocating.
pub(crate) fn take_ptes<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    run: PteRun<'_>,
    out: &mut Vec<Unmapped>,
) {
    for (blk, lo, hi) in run.blocks() {
        if ctx.mode != ContMode::Naive && is_whole(&blk, lo, hi) && blk.is_cont() {
            out.push(clear_l3c(ctx, blk));
            continue;
        }
        unfold_l3c(ctx, blk);
        clear_ptes(ctx, blk, lo, hi, out);
    }
}

/// A move's take (`remap::move_batch`): clears the run as [`take_ptes`] does, but
/// keeps the entries themselves, page `i` of the run in `out[i]` (`Pte::INVALID` for
/// a hole: every one is written), for [`place_entries`] to store again: no record
/// per entry. A
/// contiguous block cleared whole keeps its Contiguous bit if `keep_cont` (its
/// destination has the same offset inside 64 KiB), else its entries become plain ones,
/// each with the block's AF and dirty gathered. Only the blocks cut at either end of
/// the run are unfolded (every block, in `Naive` mode). Defers one TLBI for the span
/// of what it cleared; returns whether it cleared anything.
pub(crate) fn take_entries<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    run: PteRun<'_>,
    keep_cont: bool,
    out: &mut [Pte],
) -> bool {
    let mut span: Option<(usize, usize)> = None;
    let mut note = |first: usize, end: usize| {
        span = Some(span.map_or((first, end), |(a, _)| (a, end)));
    };
    for (blk, lo, hi) in run.blocks() {
        let at = lo.offset_from(run.start) / PAGE_SIZE;
        if ctx.mode != ContMode::Naive && is_whole(&blk, lo, hi) && blk.is_cont() {
            // Straight into `out` (no array of the old values built and copied); the
            // block's AF and dirty go into every entry in a second pass only if its
            // entries differ in them (the hardware set them in some entries only).
            let part = &mut out[at..at + CONT_PTES];
            let (mut young, mut dirty, mut all) = (false, false, true);
            ctx.store_each(
                blk.table,
                blk.first,
                CONT_PTES,
                |_| Write::Swap(Pte::INVALID),
                |i, old, _| {
                    part[i] = old.with_cont(keep_cont);
                    young |= old.is_young();
                    dirty |= old.is_dirty();
                    all &= old.is_young() && old.is_dirty();
                },
            );
            if !all && (young || dirty) {
                for e in part {
                    *e = e.with_gathered(young, dirty);
                }
            }
            note(at, at + CONT_PTES);
            continue;
        }
        unfold_l3c(ctx, blk);
        let range = blk.indices(lo, hi);
        let part = &mut out[at..at + range.len()];
        let entries = &blk.table.entries[blk.first + range.start..blk.first + range.end];
        if entries
            .iter()
            .all(|e| Pte::from_raw(e.load(Ordering::Relaxed)).is_valid())
        {
            // All mapped (the common case): one loop of swaps, no test per entry.
            let (table, first) = (blk.table, blk.first + range.start);
            let n = part.len();
            let swap = |_| Write::Swap(Pte::INVALID);
            ctx.store_each(table, first, n, swap, |k, old, _| part[k] = old);
            note(at, at + n);
            continue;
        }
        for (k, i) in range.enumerate() {
            let slot = blk.slot(i);
            part[k] = Pte::INVALID;
            if slot.load().is_valid() {
                part[k] = ctx.store(slot, Write::Swap(Pte::INVALID)).0;
                note(at + k, at + k + 1);
            }
        }
    }
    let Some((first, end)) = span else {
        return false;
    };
    ctx.flush_later(run.start.add(first * PAGE_SIZE), (end - first) * PAGE_SIZE);
    true
}

/// A move's place: stores `entries` (page `i` of the run in `entries[i]`, from
/// [`take_entries`]) into the run's empty entries, holes left as holes. A block
/// taken folded arrives folded as it was; a whole block of one folio, aligned in VA
/// and PA, is folded at once (mode `On`: the entries were empty, no TLB holds them);
/// other blocks are written entry by entry and folded once their last entry is
/// written (modes `On` and `Naive`), as [`set_ptes`] does.
pub(crate) fn place_entries<E: PtMachine>(ctx: &mut Ctx<'_, E>, run: PteRun<'_>, entries: &[Pte]) {
    for (blk, lo, hi) in run.blocks() {
        let at = lo.offset_from(run.start) / PAGE_SIZE;
        let range = blk.indices(lo, hi);
        let part = &entries[at..at + range.len()];
        // Each store as it is: no array of the old values built (`store_each`).
        let (table, first, n) = (blk.table, blk.first + range.start, part.len());
        if let Ok(whole) = <&[Pte; CONT_PTES]>::try_from(part) {
            // An empty block written contiguous at once (`cont_maps`): taken folded,
            // or of one folio aligned in VA and PA.
            if whole[0].is_cont() {
                ctx.store_each(table, first, n, |i| Write::Swap(whole[i]), |_, _, _| {});
                Counters::bump(&ctx.counters().cont_maps, 1);
                continue;
            }
            let direct = ctx.mode == ContMode::On
                && whole[0].is_valid()
                && whole[0].output_addr().is_aligned(CONT_SIZE)
                && foldable(ctx.env, whole);
            if direct {
                let young = whole.iter().any(|e| e.is_young());
                let dirty = whole.iter().any(|e| e.is_dirty());
                let folded = |i: usize| whole[i].with_cont(true).with_gathered(young, dirty);
                ctx.store_each(table, first, n, |i| Write::Swap(folded(i)), |_, _, _| {});
                Counters::bump(&ctx.counters().cont_maps, 1);
                continue;
            }
        }
        if part.iter().all(|e| e.is_valid()) {
            ctx.store_each(table, first, n, |k| Write::Swap(part[k]), |_, _, _| {});
        } else {
            for (k, i) in range.enumerate().filter(|&(k, _)| part[k].is_valid()) {
                ctx.store(blk.slot(i), Write::Swap(part[k]));
            }
        }
        refold_if_last(ctx, blk, hi);
    }
}

/// The block containing `va`: its first address and its 16 entries, read once, for a
/// walk over many of its pages (`desc::view` of entry i is what `get_pte` returns).
pub(crate) fn get_block(table: Table<'_>, va: VirtAddr) -> (VirtAddr, [Pte; CONT_PTES]) {
    let blk = ContBlock::containing(table, va);
    (blk.va(), blk.load())
}

/// Reads the entry for `va`, with AF and dirty gathered over its block if contiguous.
pub(crate) fn get_pte(table: Table<'_>, va: VirtAddr) -> Pte {
    let pte = table.slot_of(va).load();
    if !pte.is_cont() {
        // Invalid or a single entry: what it says is all (no block to gather over).
        return pte;
    }
    let blk = ContBlock::containing(table, va);
    view(&blk.load(), blk.indices(va, va).start)
}

/// Applies an AF/dirty-only `change` at `va`: to the whole block if it is contiguous
/// (no unfold: AF and dirty may differ inside a block), else to the entry. Returns the
/// gathered old value. The change is applied to every entry whatever the gathered value
/// says (bug 3 of `docs/notes/contpte.md`).
pub(crate) fn change_af_dirty_pte<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    table: Table<'_>,
    va: VirtAddr,
    change: Change,
) -> Pte {
    debug_assert!(matches!(
        change,
        Change::Mkold | Change::Mkyoung | Change::MkyoungDirty
    ));
    let blk = ContBlock::containing(table, va);
    if table.slot_of(va).load().is_cont() {
        change_l3c(ctx, blk, change)
    } else {
        change_pte(ctx, table.slot_of(va), change)
    }
}
