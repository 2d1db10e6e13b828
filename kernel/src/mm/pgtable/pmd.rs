//! Level-2 (2 MiB, "PMD") block mappings, for order-9 folios.
//!
//! A block is mapped, changed and cleared as one entry. An operation that covers only
//! part of a block first splits it into a level-3 table ([`split_l2`]); the new table
//! is filled with the same frames, as contiguous blocks where the mode allows, so a
//! split 2 MiB folio keeps its TLB reach at 64 KiB.

use crate::mm::addr::{VirtAddr, PMD_SIZE};

use super::contpte::{self, PteRun};
use super::counters::Counters;
use super::ctx::{Ctx, Write};
use super::cursor::{Cursor, Slot, Table};
use super::desc::{entry_size, Change, Kind, Level, Pte, LAST_LEVEL};
use super::machine::PtMachine;
use super::{MapError, Unmapped};

const PMD_LEVEL: Level = 2;

/// Maps the empty level-2 entry `slot` with the block descriptor `block` (a new one,
/// or one a move took from another slot with its AF and dirty state).
pub(crate) fn map_l2<E: PtMachine>(ctx: &mut Ctx<'_, E>, slot: Slot<'_>, block: Pte) {
    assert!(
        slot.level() == PMD_LEVEL
            && slot.va().is_aligned(PMD_SIZE)
            && block.kind(PMD_LEVEL) == Kind::Block
    );
    assert!(!slot.load().is_valid(), "map_l2 over a live entry");
    ctx.store(slot, Write::Swap(block));
}

/// Applies `change` to a block entry. Returns the old value.
pub(crate) fn change_l2<E: PtMachine>(ctx: &mut Ctx<'_, E>, slot: Slot<'_>, change: Change) -> Pte {
    assert!(slot.level() == PMD_LEVEL && slot.va().is_aligned(PMD_SIZE));
    let (old, new) = ctx.store(slot, Write::Update(change));
    if Pte::needs_tlbi(old, new, ctx.features.hw_dirty) {
        ctx.flush_later(slot.va(), PMD_SIZE);
    }
    old
}

/// Clears a block entry; its tables may be freed at the end of the operation.
pub(crate) fn clear_l2<E: PtMachine>(ctx: &mut Ctx<'_, E>, slot: Slot<'_>) -> Unmapped {
    ctx.note_maybe_empty(slot.va());
    take_l2(ctx, slot)
}

/// Clears a block entry and keeps its tables (a move, which may have to put it back).
pub(crate) fn take_l2<E: PtMachine>(ctx: &mut Ctx<'_, E>, slot: Slot<'_>) -> Unmapped {
    assert!(slot.level() == PMD_LEVEL && slot.va().is_aligned(PMD_SIZE));
    let (old, _) = ctx.store(slot, Write::Swap(Pte::INVALID));
    ctx.flush_later(slot.va(), PMD_SIZE);
    Unmapped::new(
        slot.va(),
        old,
        entry_size(PMD_LEVEL) / entry_size(LAST_LEVEL),
    )
}

/// Splits the block at `slot` into a level-3 table mapping the same frames.
///
/// Break-before-make: the block is cleared first (gathering the AF and dirty state the
/// hardware set in it), invalidated with one TLBI by VA (which removes the whole block
/// entry) and a DSB; then the new table is filled and linked.
pub(crate) fn split_l2<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    cursor: &mut Cursor,
    slot: Slot<'_>,
) -> Result<(), MapError> {
    assert!(slot.level() == PMD_LEVEL && slot.va().is_aligned(PMD_SIZE));
    assert_eq!(slot.load().kind(PMD_LEVEL), Kind::Block);
    let va = slot.va();
    let table_pa = ctx.alloc_table(va)?;
    ctx.widen(va, va.add(PMD_SIZE));
    let (old, _) = ctx.store(slot, Write::Swap(Pte::INVALID));
    ctx.tlbi_page(va, true);
    ctx.dsb();
    ctx.note_split(va, old, table_pa);
    let table = Table::new(ctx.env, table_pa, LAST_LEVEL, va);
    let run = PteRun {
        table,
        start: va,
        end: va.add(PMD_SIZE),
    };
    contpte::set_ptes(ctx, run, old.block_to_page(old.output_addr()));
    ctx.publish_barrier();
    ctx.store(slot, Write::Swap(Pte::table(table_pa)));
    cursor.forget_below(PMD_LEVEL);
    Counters::bump(&ctx.counters().pmd_splits, 1);
    Ok(())
}

/// Splits the level-2 block containing `va`, if any and if `va` is inside it (not at
/// its start): an operation starting or ending at `va` covers only part of it.
pub(crate) fn split_l2_at<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    cursor: &mut Cursor,
    va: VirtAddr,
) -> Result<(), MapError> {
    if va.is_aligned(PMD_SIZE) {
        return Ok(());
    }
    match cursor.find(ctx.env, va) {
        super::cursor::Found::Block(slot) => split_l2(ctx, cursor, slot),
        _ => Ok(()),
    }
}
