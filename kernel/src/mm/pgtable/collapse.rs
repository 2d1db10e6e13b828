//! In-place collapse primitives (for `mm::collapse`): make entries that already map
//! an aligned run of one folio use the larger translation, without touching the
//! frames. Two operations, one per size class:
//!
//! * [`PageTable::refold_l3c`]: fold every whole 64 KiB block of a range that
//!   qualifies (`contpte::try_fold_l3c`: 16 valid pages of one folio, consecutive
//!   frames, equal attributes), the same break-before-make convert a fold after
//!   `set_ptes` does.
//! * [`PageTable::collapse_l2`]: replace a level-3 table whose 512 entries map one
//!   2 MiB aligned folio in order, with equal attributes, by one level-2 block.
//!   Break-before-make (Arm ARM, "Using break-before-make when updating translation
//!   table entries"): the 512 entries are cleared (gathering the AF and dirty state
//!   the hardware set in them), then the table entry; one TLBI of the 2 MiB for the
//!   last-level entries and a TLBI by VA of the walk caches (VAE1IS) removes every
//!   cached step through the old table, a DSB waits for both; only then is the
//!   table freed and the block written. A CPU touching the range meanwhile faults and
//!   waits for the address-space lock, which the caller holds.

use crate::mm::addr::{VirtAddr, CONT_SIZE, PAGE_SIZE, PMD_SIZE};

use super::check::OpKind;
use super::contpte::{self, ContBlock};
use super::ctx::Write;
use super::cursor::Found;
use super::desc::{Kind, Pte, LAST_LEVEL};
use super::{range_end, PageTable, PtMachine};

/// Bit[1] of a level-3 descriptor: set in a page, clear in a level-2 block.
const PAGE_TYPE_BIT: u64 = 1 << 1;

impl<E: PtMachine> PageTable<E> {
    /// Folds the whole 64 KiB blocks of `[va, va + nr pages)` that qualify and are not
    /// folded yet; returns how many it folded. Changes no translation.
    #[track_caller]
    pub fn refold_l3c(&mut self, va: VirtAddr, nr: usize) -> usize {
        let end = range_end(va, nr);
        assert!(
            va.is_aligned(CONT_SIZE) && end.is_aligned(CONT_SIZE),
            "refold of {va:?} + {nr} pages: not whole 64 KiB blocks"
        );
        // A fold changes only the Contiguous bit: `Protect` is the kind of operation
        // the checker holds it to (folds happen inside protect in Naive mode too).
        self.op(OpKind::Protect, va, end, |ctx, cursor| {
            let mut folded = 0;
            let mut at = va;
            while at < end {
                if let Found::Ptes(table) = cursor.find(ctx.env, at) {
                    let blk = ContBlock::containing(table, at);
                    if !table.slot_of(at).load().is_cont() && contpte::try_fold_l3c(ctx, blk) {
                        folded += 1;
                    }
                }
                at = at.add(CONT_SIZE);
            }
            folded
        })
    }

    /// Replaces the level-3 table mapping the 2 MiB at `va` by one level-2 block, if
    /// its 512 entries map consecutive frames from a 2 MiB aligned base with equal
    /// attributes (AF and dirty aside) and the frames are one folio; returns whether
    /// it did. Allocates nothing; frees the table.
    #[track_caller]
    pub fn collapse_l2(&mut self, va: VirtAddr) -> bool {
        assert!(
            va.is_aligned(PMD_SIZE),
            "collapse_l2 at {va:?}: not 2 MiB aligned"
        );
        let end = range_end(va, PMD_SIZE / PAGE_SIZE);
        self.op(OpKind::MapPmd, va, end, |ctx, cursor| {
            let Found::Ptes(table) = cursor.find(ctx.env, va) else {
                return false;
            };
            let first = table.slot(0).load();
            let base = first.output_addr();
            let plain = |p: Pte| p.with_cont(false).with_gathered(true, true);
            let qualifies = first.kind(LAST_LEVEL) == Kind::Page
                && base.is_aligned(PMD_SIZE)
                && ctx.env.folio_of(base).contains(base, PMD_SIZE)
                && (0..PMD_SIZE / PAGE_SIZE).all(|i| {
                    let e = table.slot(i).load();
                    e.kind(LAST_LEVEL) == Kind::Page
                        && plain(e) == plain(first.with_output_addr(base.add(i * PAGE_SIZE)))
                });
            if !qualifies {
                return false;
            }
            let (mut young, mut dirty) = (false, false);
            for i in 0..PMD_SIZE / PAGE_SIZE {
                let old = ctx.store(table.slot(i), Write::Swap(Pte::INVALID)).0;
                young |= old.is_young();
                dirty |= old.is_dirty();
            }
            let l2 = cursor.table_at(ctx.env, 2).slot_of(va);
            let table_pa = match l2.load().kind(2) {
                Kind::Table(pa) => pa,
                other => unreachable!("level-2 entry of a level-3 table is {other:?}"),
            };
            ctx.store(l2, Write::Swap(Pte::INVALID));
            ctx.tlbi_page(va, false);
            ctx.invalidate_now(va, PMD_SIZE / PAGE_SIZE);
            cursor.forget_below(2);
            ctx.free_table(table_pa);
            // The page's attributes as a block: descriptor bit[1] clear (Arm ARM,
            // "Translation table descriptor formats": block at level 2, page at 3).
            let block = Pte::from_raw(first.with_cont(false).raw() & !PAGE_TYPE_BIT);
            debug_assert_eq!(block.kind(2), Kind::Block);
            ctx.store(l2, Write::Swap(block.with_gathered(young, dirty)));
            true
        })
    }
}
