//! The demand-zero fault: of the mTHP orders the policy allows for the VMA (`mthp`),
//! the largest whose aligned range lies in the VMA and is entirely unmapped, falling
//! back one order at a time when allocation fails (after reclaim); the folio is
//! mapped with one batched call (`install::map_folio`: contiguous blocks from 64 KiB
//! up, a PMD block for 2 MiB). A write fault on an unmapped page (`fault`) and a write
//! over the zero page (`zero`) both end here.

use core::sync::atomic::Ordering;

use super::aspace::Mm;
use super::folio;
use super::install::{self, FaultError};
use super::machine::MmMachine;
use super::mthp;
use super::reclaim;
use super::vma::Vma;
use super::{VirtAddr, PAGE_SIZE};

/// A fault on an unmapped page of `vma`: the largest folio of the `allowed` orders
/// (a bit mask) that fits, else a base page.
pub(super) fn fault<E: MmMachine>(
    mm: &mut Mm<E>,
    va: VirtAddr,
    vma: Vma,
    allowed: u16,
    write: bool,
) -> Result<(), FaultError> {
    reclaim::if_low(mm);
    for order in mthp::fault_orders(allowed, va, vma.start, vma.end) {
        let n = 1usize << order;
        let base = va.align_down(n * PAGE_SIZE);
        if !mm.tables.is_unmapped(base, n) {
            continue;
        }
        // Reclaim (lazyfree folios, deferred splits) before falling back an order.
        let allocated = folio::alloc_anon(mm.env(), order).or_else(|| {
            reclaim::direct(mm, n)
                .then(|| folio::alloc_anon(mm.env(), order))
                .flatten()
        });
        // No folio, or no table to map it (nothing mapped, the folio went back):
        // the page below reclaims for both.
        let mapped = allocated.map(|f| install::map_folio(mm, base, f, vma.prot, write));
        match mapped {
            Some(Err(FaultError::Oom)) if mm.tables.is_unmapped(base, n) => {}
            None => {}
            Some(r) => {
                r?;
                mthp::stats(order)
                    .anon_fault_alloc
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        mthp::stats(order)
            .anon_fault_fallback
            .fetch_add(1, Ordering::Relaxed);
    }
    // Out of memory for the page or for a table to map it: give back lazyfree
    // folios and what partially mapped folios hold, and retry, until reclaim has
    // nothing more to give (a table that cannot be had is ENOMEM too, never early).
    let page = va.align_down(PAGE_SIZE);
    reclaim::alloc_or_reclaim(mm, 1, |mm| {
        let f = folio::alloc_anon(mm.env(), 0)?;
        match install::map_folio(mm, page, f, vma.prot, write) {
            Err(FaultError::Oom) if mm.tables.is_unmapped(page, 1) => None,
            r => Some(r),
        }
    })
    .unwrap_or(Err(FaultError::Oom))
}
