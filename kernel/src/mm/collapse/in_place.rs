//! Collapse in place (seed 001): the entries of a block already map one naturally
//! aligned run of frames, in order (after an mprotect split the mapping and a second
//! restored it, after a partial copy-on-write was undone, after a 2 MiB block was
//! split). Nothing is copied and nothing allocated: if the run is several folios,
//! their metadata is merged into one (`folio::merge`); the entries are given one
//! protection if they differ; then the 64 KiB blocks are refolded
//! (`PageTable::refold_l3c`) or, for 2 MiB, the table is replaced by a block
//! (`PageTable::collapse_l2`). The folio stays locked throughout, so no split
//! changes its shape under the refold.

use super::scan::Survey;
use super::Fail;
use crate::mm::aspace::Mm;
use crate::mm::folio::{self, Folio, MergeError};
use crate::mm::install::pte_attrs;
use crate::mm::machine::MmMachine;
use crate::mm::mthp::PMD_ORDER;
use crate::mm::vma::{VmProt, Vma};
use crate::mm::{PhysAddr, VirtAddr, PAGE_SIZE};

/// The smallest order whose blocks have a larger translation (64 KiB).
const CONT_ORDER: usize = 4;

impl<E: MmMachine> Mm<E> {
    /// Collapse the block of `order` at `base`, whose pages map `pa..` in order (all
    /// exclusive or none: the caller checked), in place. `Err(Fail::Busy)` if a folio
    /// was locked; any other error leaves the block as it was, for a copy to try.
    pub(super) fn collapse_in_place(
        &mut self,
        base: VirtAddr,
        order: usize,
        pa: PhysAddr,
        s: &Survey,
        vma: &Vma,
    ) -> Result<(), Fail> {
        let n = 1usize << order;
        let one = folio::span_of(pa).contains(pa, n * PAGE_SIZE);
        let locked = if one {
            Folio::lock(pa)
        } else {
            folio::merge(pa, order).map_err(|e| match e {
                MergeError::Busy => Fail::Busy,
                MergeError::Unfit => Fail::ExceedShared,
            })?
        };
        // One protection over the block: the VMA's, write only for exclusive pages
        // (who may write a page; `s.exclusive` is all or nothing).
        let prot = pte_attrs(VmProt {
            write: vma.prot.write && s.exclusive == n,
            ..vma.prot
        })
        .prot;
        if s.prot != Some(prot) {
            self.tables
                .protect(base, n, prot)
                .expect("a block inside one table cuts no 2 MiB block");
        }
        let done = if order == PMD_ORDER {
            self.tables.collapse_l2(base)
        } else {
            if order >= CONT_ORDER {
                self.tables.refold_l3c(base, n);
            }
            true
        };
        drop(locked);
        if done {
            Ok(())
        } else {
            Err(Fail::ExceedNone)
        }
    }
}
