//! Moving entries from one range to another (mremap; Linux's `move_page_tables`).
//!
//! **Whole level-3 tables and 2 MiB blocks** ([`move_tables`], Linux's
//! `move_normal_pmd` and `move_huge_pmd`): where whole 2 MiB regions are mapped by
//! level-3 tables or 2 MiB blocks and their destinations are 2 MiB aligned regions
//! whose level-2 slots are empty, the level-2 entries themselves move, up to
//! [`MAX_TABLES`] in one operation: they are cleared, the old range invalidated (its
//! last-level entries and blocks with one range TLBI, or one by ASID without
//! FEAT_TLBIRANGE, and each walk-cache step through a table with a TLBI by VA that is
//! not last-level only), a DSB, and the same descriptors are stored in the
//! destination's slots. The tables' entries, folded blocks included, are not
//! touched: AF and dirty state the hardware sets in them meanwhile stay where they
//! are. Break-before-make across the two ranges: a table is reachable through one of
//! them at a time (the checker's rule for a table linked twice).
//!
//! **Otherwise the entries move**, one batch of at most one 2 MiB region per
//! operation ([`move_batch`]), in three steps:
//!
//! 1. *Reserve*: the destination's tables are allocated for every mapped piece of the
//!    source (a level-2 slot for a 2 MiB block whose destination is 2 MiB aligned,
//!    level-3 tables otherwise; a 2 MiB block whose destination is not 2 MiB aligned
//!    is split into contiguous blocks first, as Linux's `move_page_tables` splits it).
//!    This is the only step that can fail, and it changes no translation.
//! 2. *Take*: the source is cleared as an unmap clears it (`contpte::take_entries`,
//!    `pmd::take_l2`), but the entries themselves are kept, page by page, in a
//!    buffer one mremap reuses for all its batches ([`MoveBuf`]: no record per
//!    entry, nothing allocated or cleared per batch): a whole contiguous block in
//!    one loop of swaps, keeping its Contiguous bit where the destination keeps its
//!    offset inside 64 KiB and otherwise becoming plain entries with the block's AF
//!    and dirty gathered into each; a 2 MiB block as one entry; only the blocks cut
//!    at the batch's ends unfolded. The source's tables are kept, so that a later
//!    batch's failure can put this one back without allocating. Then the deferred
//!    TLBI of the source and a DSB: no CPU can reach the frames through the old
//!    addresses any more before they become reachable through the new ones
//!    (break-before-make across the two ranges, Arm ARM "Using break-before-make
//!    when updating translation table entries": a frame written through a stale
//!    old entry after its new one exists could lose the write's dirty state).
//! 3. *Place*: each entry is stored again as it was, AF and dirty included
//!    (`contpte::place_entries`): a 2 MiB block as one block entry (Linux's
//!    `move_huge_pmd`); a block taken folded arrives folded; a whole block of one
//!    folio aligned in VA and PA is folded as it is written, and any other block is
//!    folded once its last entry is written if it can be (elsewhere the folio is
//!    mapped with plain entries, whole, never split). Destination entries were
//!    invalid, so nothing needs a TLBI. About 60 instructions an entry at a 4 KiB
//!    offset, where Linux's `move_ptes` takes about 65.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::mm::addr::{VirtAddr, CONT_SIZE, PAGE_SIZE, PMD_SIZE};

use super::contpte;
use super::counters::Counters;
use super::ctx::{self, Ctx, Write};
use super::cursor::{Cursor, Found};
use super::desc::{entry_size, Kind, Pte};
use super::machine::PtMachine;
use super::{for_each_segment, for_each_table_alloc, pmd, MapError, Segment};

const PMD_LEVEL: usize = 2;

/// Moves the entries of `[src, end)` (inside one 2 MiB region, its cut blocks already
/// split) to `dst`, as the module doc says: the whole level-3 table where it can,
/// else entry by entry. On `NoMemory` no translation changed. Since the source keeps
/// its tables (or gets its moved table back in its own slot) and has no 2 MiB block
/// where the destination has entries, moving back never needs a table.
pub(super) fn move_batch<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    cursor: &mut Cursor,
    src: VirtAddr,
    end: VirtAddr,
    dst: VirtAddr,
    buf: &mut MoveBuf,
) -> Result<(), MapError> {
    let whole = src.is_aligned(PMD_SIZE) && end == src.add(PMD_SIZE) && dst.is_aligned(PMD_SIZE);
    if whole && move_tables(ctx, cursor, src, dst, 1) == 1 {
        return Ok(());
    }
    let mut dcursor = Cursor::new(ctx.root);
    let image = |va: VirtAddr| dst.add(va.offset_from(src));
    reserve(ctx, cursor, &mut dcursor, src, end, image)?;
    // The entries themselves, page by page, in `buf`: every one of a run is written
    // (holes as `Pte::INVALID`) before it is read. Or the one 2 MiB block a batch can
    // hold instead.
    let n = end.offset_from(src) / PAGE_SIZE;
    if buf.0.len() < n {
        buf.0.resize(n, Pte::INVALID);
    }
    let entries = &mut buf.0[..n];
    // The same offset inside 64 KiB: folded blocks can arrive folded.
    let keep_cont = (dst.as_u64() ^ src.as_u64()).is_multiple_of(CONT_SIZE as u64);
    let (mut taken, mut block) = (None, None);
    for_each_segment(ctx, cursor, src, end, |ctx, seg| match seg {
        Segment::Ptes(run) => {
            let at = run.start.offset_from(src) / PAGE_SIZE;
            let n = run.end.offset_from(run.start) / PAGE_SIZE;
            if contpte::take_entries(ctx, run, keep_cont, &mut entries[at..at + n]) {
                // A batch lies in one 2 MiB region: one level-3 table, one run.
                assert!(taken.replace((run.start, run.end)).is_none());
            }
        }
        Segment::Block(slot) => block = Some(pmd::take_l2(ctx, slot)),
    });
    ctx.flush_pending();
    if let Some(r) = block {
        let to = image(r.va);
        let Found::Hole { level: PMD_LEVEL } = dcursor.find(ctx.env, to) else {
            panic!("move of a 2 MiB block to {to:?}: its slot was reserved");
        };
        let slot = dcursor.table_at(ctx.env, PMD_LEVEL).slot_of(to);
        pmd::map_l2(ctx, slot, r.entry);
    }
    if let Some((a, b)) = taken {
        let first = a.offset_from(src) / PAGE_SIZE;
        for_each_table_alloc(ctx, &mut dcursor, image(a), image(b), |ctx, run| {
            let at = first + run.start.offset_from(image(a)) / PAGE_SIZE;
            contpte::place_entries(ctx, run, &entries[at..]);
            Ok(())
        })
        .expect("destination tables reserved");
    }
    Ok(())
}

/// The entries a batch of a move takes, from one batch to the next of one mremap
/// (`Mm::move_pages`), so that a batch neither allocates nor clears them: at most
/// one 2 MiB region's, 4 KiB.
#[derive(Default)]
pub struct MoveBuf(Vec<Pte>);

/// Most level-3 tables one operation moves (64 MiB): bounds the links it holds.
pub(super) const MAX_TABLES: usize = 32;

/// Moves the level-2 entries of up to `n` (at most [`MAX_TABLES`]) consecutive 2 MiB
/// regions from `src` to the same regions from `dst` (both 2 MiB aligned; module
/// doc; Linux's `move_normal_pmd` and `move_huge_pmd`), in order, as long as each
/// source region is mapped by a level-3 table or a 2 MiB block and its destination
/// slot is empty (its tables above allocated here). Returns how many moved: it stops
/// at the first region that does not qualify, or for want of a table above its
/// destination slot (that region is left to `move_batch`, which reports it).
///
/// Safe while the hardware updates AF and dirty: no level-3 entry is written, so an
/// update made through either address lands in the one table and is kept. A CPU
/// touching either range meanwhile faults (no translation) and waits for the
/// address-space lock, which the caller holds. The old range is invalidated once
/// for all of them: one range TLBI of its leaves (or one by ASID), a TLBI by VA per
/// table for the walk caches' step through it, one DSB.
/// Checker: a table may be linked at `dst` only once the TLBI and DSB of its
/// unlinking at `src` have completed (`check.rs`, a table linked twice).
pub(super) fn move_tables<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    cursor: &mut Cursor,
    src: VirtAddr,
    dst: VirtAddr,
    n: usize,
) -> usize {
    assert!(src.is_aligned(PMD_SIZE) && dst.is_aligned(PMD_SIZE));
    let mut links = [Pte::INVALID; MAX_TABLES];
    let mut dcursor = Cursor::new(ctx.root);
    let (mut moved, mut tables) = (0, 0);
    while moved < n.min(MAX_TABLES) {
        let (from, to) = (src.add(moved * PMD_SIZE), dst.add(moved * PMD_SIZE));
        let whole = match cursor.find(ctx.env, from) {
            Found::Ptes(_) => true,
            Found::Block(slot) => slot.level() == PMD_LEVEL,
            Found::Hole { .. } => false,
        };
        if !whole || block_slot(ctx, &mut dcursor, to) != Ok(true) {
            break;
        }
        let slot = cursor.table_at(ctx.env, PMD_LEVEL).slot_of(from);
        let (link, _) = ctx.store(slot, Write::Swap(Pte::INVALID));
        match link.kind(PMD_LEVEL) {
            // The walk caches' step through the table goes too.
            Kind::Table(_) => {
                cursor.forget_below(PMD_LEVEL);
                ctx.tlbi_page(from, false);
                tables += 1;
            }
            Kind::Block => {}
            other => unreachable!("move_tables at {from:?}: a level-2 {other:?}"),
        }
        links[moved] = link;
        moved += 1;
    }
    if moved == 0 {
        return 0;
    }
    ctx.flush_later(src, moved * PMD_SIZE);
    ctx.flush_pending();
    for (i, &link) in links[..moved].iter().enumerate() {
        let to = dst.add(i * PMD_SIZE);
        let Found::Hole { level: PMD_LEVEL } = dcursor.find(ctx.env, to) else {
            panic!("move of a level-3 table to {to:?}: its slot was reserved");
        };
        let slot = dcursor.table_at(ctx.env, PMD_LEVEL).slot_of(to);
        ctx.store(slot, Write::Swap(link));
    }
    Counters::bump(&ctx.counters().tables_moved, tables);
    moved
}

/// Step 1: the destination tables for every mapped piece of `[src, end)`.
fn reserve<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    cursor: &mut Cursor,
    dcursor: &mut Cursor,
    src: VirtAddr,
    end: VirtAddr,
    image: impl Fn(VirtAddr) -> VirtAddr,
) -> Result<(), MapError> {
    let mut va = src;
    while va < end {
        let (piece_end, mapped) = match cursor.find(ctx.env, va) {
            Found::Hole { level } => {
                let size = entry_size(level);
                (va.align_down(size).add(size).min(end), false)
            }
            Found::Block(slot) => {
                if image(va).is_aligned(PMD_SIZE) && block_slot(ctx, dcursor, image(va))? {
                    va = slot.va().add(entry_size(slot.level()));
                } else {
                    // Another offset inside 2 MiB (or a table in the way): the block
                    // is split here first, as Linux's `move_page_tables` splits it,
                    // and its entries move as contiguous blocks or pages. The folio
                    // stays whole.
                    pmd::split_l2(ctx, cursor, slot)?;
                }
                continue;
            }
            Found::Ptes(table) => {
                let stop = table.end().min(end);
                let first = table.index_of(va);
                let n = stop.offset_from(va) / PAGE_SIZE;
                let live = table.entries[first..first + n]
                    .iter()
                    .any(|e| Pte::from_raw(e.load(Ordering::Relaxed)).is_valid());
                (stop, live)
            }
        };
        if mapped {
            for_each_table_alloc(ctx, dcursor, image(va), image(piece_end), |_, _| Ok(()))?;
        }
        va = piece_end;
    }
    Ok(())
}

/// Whether the level-2 slot at `va` is (now) an empty slot a block can be stored in;
/// `false` if a level-3 table is there (the block then goes in as entries).
fn block_slot<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    dcursor: &mut Cursor,
    va: VirtAddr,
) -> Result<bool, MapError> {
    match ctx::slot_alloc(ctx, dcursor, va, PMD_LEVEL) {
        Ok(slot) => {
            assert!(!slot.load().is_valid(), "move onto a mapped 2 MiB block");
            Ok(true)
        }
        Err(MapError::AlreadyMapped) => Ok(false),
        Err(e) => Err(e),
    }
}
