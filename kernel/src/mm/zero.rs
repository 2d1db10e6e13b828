//! The shared zero page (Linux's `ZERO_PAGE`): a read fault on untouched private
//! anonymous memory maps one read-only frame of zeros, the same frame in every address
//! space, instead of allocating (`do_anonymous_page`'s read path). Reading a large
//! untouched buffer costs no memory, which is what lets a program that reads more
//! than RAM holds run at all.
//!
//! The zero page is no folio: no map counts, no reference per mapping, never freed.
//! So every path from an entry to its folio skips it first ([`is_zero`]; Linux's
//! `vm_normal_page` answers NULL for it): unmap and fork account nothing for it,
//! MADV_FREE and reclaim pass it by, smaps counts it in no Rss, collapse counts its
//! entries as empty ones (khugepaged's `none_or_zero`). Its entries are never
//! writable: it is never anon-exclusive (`folio::anon_exclusive` answers `false`, so
//! the checker's rule on writable entries and mprotect's write-only-to-exclusive rule
//! both keep it read-only).
//!
//! A write to it (`Mm::write_over_zero`) allocates the largest folio the policy allows
//! whose aligned range inside the VMA holds only unmapped and zero-page entries, and
//! maps it over them. Linux 6.12 and 7.3 allocate one base page there (`wp_page_copy`
//! on the zero pfn), so a buffer read before it is written never gets large folios
//! until khugepaged collapses it; here the first write restores the folio size a write
//! fault would have had.

use core::sync::atomic::{AtomicU64, Ordering};

use super::aspace::{pte_attrs, release, Mm, MmEnv};
use super::fault::{map_error, FaultError};
use super::mthp;
use super::pgtable::MapError;
use super::reclaim;
use super::vma::{VmProt, Vma};
use super::{PhysAddr, VirtAddr, PAGE_SIZE};

/// The zero page's frame (0 until the machine sets it up: `set`).
static ZERO_PAGE: AtomicU64 = AtomicU64::new(0);

/// Read faults that mapped the zero page (this kernel's counter, in /proc/vmstat).
pub static ZERO_PAGE_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Write faults that replaced zero-page entries with a new folio (ditto).
pub static ZERO_PAGE_COW: AtomicU64 = AtomicU64::new(0);

/// Make the frame at `pa`, which holds zeros and is never written or freed, the zero
/// page (the kernel: a page of its read-only image; the host machine: a frame past
/// the allocator's RAM).
pub fn set(pa: PhysAddr) {
    assert!(pa.is_aligned(PAGE_SIZE), "the zero page is a frame");
    ZERO_PAGE.store(pa.as_u64(), Ordering::Relaxed);
}

/// The zero page's frame.
pub fn page() -> PhysAddr {
    let pa = ZERO_PAGE.load(Ordering::Relaxed);
    assert!(pa != 0, "the zero page is set up at boot");
    PhysAddr::new(pa)
}

/// Whether `pa` lies in the zero page: the entry mapping it maps no folio.
pub fn is_zero(pa: PhysAddr) -> bool {
    pa.align_down(PAGE_SIZE).as_u64() == ZERO_PAGE.load(Ordering::Relaxed)
}

impl<E: MmEnv> Mm<E> {
    /// A read (or exec) fault on the unmapped `page` of `vma`: map the zero page,
    /// read-only whatever the VMA allows. A table it needs is had by reclaim as a
    /// fault's page is (`reclaim::alloc_or_reclaim`).
    pub(super) fn map_zero_page(&mut self, page: VirtAddr, vma: Vma) -> Result<(), FaultError> {
        let attrs = pte_attrs(VmProt {
            write: false,
            ..vma.prot
        });
        let map = |mm: &mut Self| mm.tables.map(page, self::page(), 1, attrs);
        let r = match map(self) {
            Err(MapError::NoMemory) => reclaim::alloc_or_reclaim(self, 1, |mm| match map(mm) {
                Err(MapError::NoMemory) => None,
                r => Some(r),
            })
            .unwrap_or(Err(MapError::NoMemory)),
            r => r,
        };
        r.map_err(map_error)?;
        ZERO_PAGE_FAULTS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A write (or forced write) to `page` of `vma`, which maps the zero page: the
    /// zero-page entries of the largest window of an allowed order that holds nothing
    /// else are unmapped, and the page faults in as an unmapped one does
    /// (`anon_fault`), at that order if memory allows, mapped dirty. The new entries
    /// are writable only if the VMA is (a forced write to a read-only VMA).
    pub(super) fn write_over_zero(&mut self, page: VirtAddr, vma: Vma) -> Result<(), FaultError> {
        let allowed = self.thp_orders(vma.huge);
        let order = mthp::fault_orders(allowed, page, vma.start, vma.end)
            .find(|&order| {
                self.only_zero_or_unmapped(page.align_down(PAGE_SIZE << order), 1 << order)
            })
            .unwrap_or(0);
        let n = 1usize << order;
        let base = page.align_down(n * PAGE_SIZE);
        // Only zero-page entries in the window: nothing to account, no block to cut
        // but a 2 MiB block of zero-page entries, which the window then covers whole.
        let records = self.tables.unmap(base, n).map_err(map_error)?;
        release(records);
        ZERO_PAGE_COW.fetch_add(1, Ordering::Relaxed);
        // Orders above the window's would find its neighbours mapped: allow none.
        let upto = allowed & ((2u16 << order) - 1);
        self.anon_fault(page, vma, upto, true)
    }

    /// Whether every entry of the `n` pages from `base` is unmapped or maps the zero
    /// page.
    fn only_zero_or_unmapped(&self, base: VirtAddr, n: usize) -> bool {
        let mut only = true;
        self.tables
            .for_each_leaf(base, base.add(n * PAGE_SIZE), |va, leaf| {
                only &= is_zero(leaf.pa_of(va));
            });
        only
    }
}

/// Call `f` for each part of the run of `n` frames from `pa` that is not the zero
/// page (a run of consecutive frames may end or start at it).
pub fn without_zero(pa: PhysAddr, n: usize, mut f: impl FnMut(PhysAddr, usize)) {
    let z = ZERO_PAGE.load(Ordering::Relaxed);
    let (start, end) = (pa.as_u64(), pa.as_u64() + (n * PAGE_SIZE) as u64);
    if z < start || z >= end {
        f(pa, n);
        return;
    }
    let before = ((z - start) / PAGE_SIZE as u64) as usize;
    if before > 0 {
        f(pa, before);
    }
    if n - before - 1 > 0 {
        f(PhysAddr::new(z).add(PAGE_SIZE), n - before - 1);
    }
}
