//! Level-2 contiguous blocks: 16 level-2 block entries with the Contiguous bit, 32 MiB
//! of one folio (a hugetlb page, `mm::hugetlb`), the contiguous layer's second level.
//!
//! The rules are those of the level-3 block (`desc::cont_block_violation`, Arm ARM "The
//! Contiguous bit"), with the level-2 sizes: the 16 entries are valid block entries
//! with the bit, the virtual and output addresses are aligned to 32 MiB, the output
//! addresses consecutive 2 MiB apart, the attributes identical but AF and dirty. The
//! checker enforces them on every group an operation touched (`check.rs`), and the
//! model's walk refuses a misprogrammed group (`model.rs`).
//!
//! Only [`PageTable::map_l2c`] is a level-2 contiguous operation of its own: it
//! writes the 16 entries into 16 empty slots in one operation, so no walk sees part of
//! the group before the operation ends. Everything else this layer does to a level-2
//! block applies to the group as the batched level-3 operations apply to a 64 KiB
//! block: one operation over the whole 32 MiB changes each of the 16 entries in place
//! (a permission or AF/dirty change needs no break-before-make) or clears them all, and
//! ends with one TLBI of the range and a DSB. The caller (hugetlb, which never cuts a
//! page) always passes whole groups, and the checker fails any operation that leaves
//! one half changed.

use crate::mm::addr::{PhysAddr, VirtAddr, CONT_PMDS, CONT_PMD_SIZE, PAGE_SIZE, PMD_SIZE};

use super::check::OpKind;
use super::ctx;
use super::desc::{Pte, PteAttrs};
use super::machine::PtMachine;
use super::{pmd, range_end, MapError, PageTable};

/// The level of a block entry of a level-2 contiguous block.
const LEVEL: super::Level = 2;

impl<E: PtMachine> PageTable<E> {
    /// Maps the order-13 folio at `pa` as one level-2 contiguous block at `va` (both
    /// 32 MiB aligned): 16 block entries with the Contiguous bit, stored into empty
    /// slots in one operation. On error nothing is mapped.
    #[track_caller]
    pub fn map_l2c(&mut self, va: VirtAddr, pa: PhysAddr, attrs: PteAttrs) -> Result<(), MapError> {
        let end = range_end(va, CONT_PMD_SIZE / PAGE_SIZE);
        assert!(
            va.is_aligned(CONT_PMD_SIZE) && pa.is_aligned(CONT_PMD_SIZE),
            "map_l2c needs 32 MiB alignment"
        );
        self.op(OpKind::MapPmd, va, end, |ctx, cursor| {
            // The 16 slots share one level-2 table: 32 MiB never crosses 1 GiB.
            let first = ctx::slot_alloc(ctx, cursor, va, LEVEL)?;
            let slots: [_; CONT_PMDS] = core::array::from_fn(|i| first.table.slot(first.index + i));
            if slots.iter().any(|s| s.load().is_valid()) {
                return Err(MapError::AlreadyMapped);
            }
            for (i, slot) in slots.into_iter().enumerate() {
                let block = Pte::block(pa.add(i * PMD_SIZE), LEVEL, attrs).with_cont(true);
                pmd::map_l2(ctx, slot, block);
            }
            Ok(())
        })
    }
}
