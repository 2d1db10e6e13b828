//! MADV_COLLAPSE: the collapse engine, synchronous, for every order. The order is the
//! largest whose `hugepages-<N>kB/enabled` is not `never` (the call is itself the
//! hint, so `madvise` counts; so does `inherit`), 2 MiB when every size is `never`
//! (Linux's MADV_COLLAPSE ignores the settings and is 2 MiB only). Every block of that
//! order lying wholly inside the range is collapsed, in place where the entries allow,
//! else by copy; `max_ptes_none` and `max_ptes_shared` do not apply, as on Linux.
//! Errors as Linux's: EINVAL for a VMA that may not have huge pages (MADV_NOHUGEPAGE,
//! not anonymous) or has no aligned block of the order, a range that starts and ends
//! strictly inside one block, or a block with nothing mapped; ENOMEM when a folio cannot be allocated; EAGAIN when a folio is busy. The
//! last error is returned after every block was tried.

use super::scan::collapsible;
use super::{Fail, Limits};
use crate::mm::aspace::Mm;
use crate::mm::machine::MmMachine;
use crate::mm::mthp::{self, SizeSetting, MTHP_ORDERS, PMD_ORDER};
use crate::mm::vma::Vma;
use crate::mm::{VirtAddr, PAGE_SIZE};
use crate::uapi::{Errno, EINVAL};

/// The order MADV_COLLAPSE collapses to.
pub fn madvise_order() -> usize {
    MTHP_ORDERS
        .rev()
        .find(|&o| mthp::POLICY.size(o) != SizeSetting::Never)
        .unwrap_or(PMD_ORDER)
}

impl<E: MmMachine> Mm<E> {
    /// MADV_COLLAPSE of `[start, end)`, which lies inside `vma`.
    pub(in crate::mm) fn madvise_collapse(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        vma: &Vma,
    ) -> Result<(), Errno> {
        let order = madvise_order();
        let size = PAGE_SIZE << order;
        let first_block = vma.start.align_up(size);
        let has_block = first_block < vma.end && vma.end.offset_from(first_block) >= size;
        if !collapsible(vma) || !has_block {
            return Err(EINVAL);
        }
        // The range rounded inward to whole blocks; a range that starts past an
        // aligned edge and ends before the next is EINVAL, one that holds none but
        // starts on an edge is a success with nothing to do (Linux's hstart > hend).
        let (first, last_end) = (start.align_up(size), end.align_down(size));
        if first > last_end {
            return Err(EINVAL);
        }
        let mut last: Option<Fail> = None;
        let mut at = first;
        while at < last_end {
            if let Err(e) = self.collapse_block(at, order, vma, &Limits::MADVISE) {
                last = Some(e);
            }
            at = at.add(size);
        }
        last.map_or(Ok(()), |e| Err(e.errno()))
    }
}
