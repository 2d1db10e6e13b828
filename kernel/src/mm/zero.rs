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
//! The huge zero page (Linux's, with `use_zero_page` 1, the default): where a 2 MiB
//! folio is allowed and fits, a read fault maps 2 MiB of zeros as one read-only block
//! instead. It is allocated at the first such fault (`thp_zero_page_alloc`; when it
//! cannot be, the fault maps the small zero page, `thp_zero_page_alloc_failed`), its
//! mapped pages are counted (entries may split it into pages, fork copies them), and
//! reclaim frees it once nothing maps it (Linux's shrinker: `shrink`).
//!
//! A write to it (`write_over`) allocates the largest folio the policy allows
//! whose aligned range inside the VMA holds only unmapped and zero-page entries, and
//! maps it over them. Linux 6.12 and 7.3 allocate one base page there (`wp_page_copy`
//! on the zero pfn), so a buffer read before it is written never gets large folios
//! until khugepaged collapses it; here the first write restores the folio size a write
//! fault would have had.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::addr::PMD_SIZE;
use super::anon;
use super::aspace::Mm;
use super::frame::frames;
use super::install::{map_error, pte_attrs, release, FaultError};
use super::machine::MmMachine;
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

/// The huge zero page's first frame (0 while it is not allocated) and the pages of it
/// entries map. Both change under `HUGE_LOCK`; `HUGE_ZERO_PAGE` is read without it
/// (`is_zero`: an entry that maps it keeps it allocated).
static HUGE_ZERO_PAGE: AtomicU64 = AtomicU64::new(0);
static HUGE_MAPPED: AtomicUsize = AtomicUsize::new(0);
static HUGE_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Linux's `thp_zero_page_alloc` and `thp_zero_page_alloc_failed` (/proc/vmstat).
pub static THP_ZERO_PAGE_ALLOC: AtomicU64 = AtomicU64::new(0);
pub static THP_ZERO_PAGE_ALLOC_FAILED: AtomicU64 = AtomicU64::new(0);

const HUGE_PAGES: usize = PMD_SIZE / PAGE_SIZE;

/// The huge zero page, allocated (and zeroed) if it is not, with `HUGE_PAGES` more
/// mapped pages counted for the caller, who maps it whole; `None` without memory.
fn get_huge<E: MmMachine>(env: &E) -> Option<PhysAddr> {
    let _g = HUGE_LOCK.lock();
    let mut pa = HUGE_ZERO_PAGE.load(Ordering::Relaxed);
    if pa == 0 {
        let Some(new) = frames().alloc(9) else {
            THP_ZERO_PAGE_ALLOC_FAILED.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        env.zero_pages(new, HUGE_PAGES);
        THP_ZERO_PAGE_ALLOC.fetch_add(1, Ordering::Relaxed);
        pa = new.as_u64();
        HUGE_ZERO_PAGE.store(pa, Ordering::Release);
    }
    HUGE_MAPPED.fetch_add(HUGE_PAGES, Ordering::Relaxed);
    Some(PhysAddr::new(pa))
}

/// Free the huge zero page if no entry maps it (reclaim, and the machine's last
/// check); whether it was freed.
pub fn shrink() -> bool {
    let _g = HUGE_LOCK.lock();
    let pa = HUGE_ZERO_PAGE.load(Ordering::Relaxed);
    if pa == 0 || HUGE_MAPPED.load(Ordering::Relaxed) != 0 {
        return false;
    }
    HUGE_ZERO_PAGE.store(0, Ordering::Release);
    frames().free(PhysAddr::new(pa), 9);
    true
}

fn is_huge_zero(pa: PhysAddr) -> bool {
    huge_head(pa).is_some()
}

/// The huge zero page's first frame, if `pa` lies in it.
pub fn huge_head(pa: PhysAddr) -> Option<PhysAddr> {
    let h = HUGE_ZERO_PAGE.load(Ordering::Acquire);
    (h != 0 && (h..h + PMD_SIZE as u64).contains(&pa.as_u64())).then_some(PhysAddr::new(h))
}

/// Pages of the huge zero page that entries map (host tests).
#[cfg(test)]
pub fn huge_mapped() -> usize {
    HUGE_MAPPED.load(Ordering::Relaxed)
}

/// Forget the huge zero page without freeing it: the host machine takes every frame
/// back after a failed test (`host::machine`).
#[cfg(test)]
pub fn forget_huge() {
    HUGE_ZERO_PAGE.store(0, Ordering::Release);
    HUGE_MAPPED.store(0, Ordering::Relaxed);
}

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

/// Whether `pa` lies in the zero page or the huge zero page: the entry mapping it
/// maps no folio.
pub fn is_zero(pa: PhysAddr) -> bool {
    pa.align_down(PAGE_SIZE).as_u64() == ZERO_PAGE.load(Ordering::Relaxed) || is_huge_zero(pa)
}

/// A read fault where a 2 MiB folio is allowed and fits (the 2 MiB at `base` are
/// unmapped) and `use_zero_page` is on: map the huge zero page there, read-only;
/// `false` if it cannot be had.
pub(super) fn map_huge<E: MmMachine>(
    mm: &mut Mm<E>,
    base: VirtAddr,
    vma: &Vma,
) -> Result<bool, FaultError> {
    let Some(pa) = get_huge(mm.env()) else {
        return Ok(false);
    };
    match mm.tables.map_pmd(base, pa, read_only(vma)) {
        Ok(()) => Ok(true),
        Err(e) => {
            HUGE_MAPPED.fetch_sub(HUGE_PAGES, Ordering::Relaxed);
            Err(map_error(e))
        }
    }
}

/// A read (or exec) fault on the unmapped `page` of `vma`: map the zero page,
/// read-only whatever the VMA allows. A table it needs is had by reclaim as a
/// fault's page is (`reclaim::alloc_or_reclaim`).
pub(super) fn map<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    vma: &Vma,
) -> Result<(), FaultError> {
    let attrs = read_only(vma);
    let map = |mm: &mut Mm<E>| mm.tables.map(page, self::page(), 1, attrs);
    let r = match map(mm) {
        Err(MapError::NoMemory) => reclaim::alloc_or_reclaim(mm, 1, |mm| match map(mm) {
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
/// (`anon`), at that order if memory allows, mapped dirty. The new entries
/// are writable only if the VMA is (a forced write to a read-only VMA).
pub(super) fn write_over<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    vma: Vma,
) -> Result<(), FaultError> {
    let allowed = mm.thp_orders(vma.huge);
    let order = mthp::fault_orders(allowed, page, vma.start, vma.end)
        .find(|&order| only_zero_or_unmapped(mm, page.align_down(PAGE_SIZE << order), 1 << order))
        .unwrap_or(0);
    let n = 1usize << order;
    let base = page.align_down(n * PAGE_SIZE);
    // Only zero-page entries in the window: nothing to account, no block to cut
    // but a 2 MiB block of zero-page entries, which the window then covers whole.
    let records = mm.tables.unmap(base, n).map_err(map_error)?;
    release(records);
    ZERO_PAGE_COW.fetch_add(1, Ordering::Relaxed);
    // Orders above the window's would find its neighbours mapped: allow none.
    let upto = allowed & ((2u16 << order) - 1);
    anon::fault(mm, page, vma, upto, true)
}

/// Whether every entry of the `n` pages from `base` is unmapped or maps the zero
/// page.
fn only_zero_or_unmapped<E: MmMachine>(mm: &Mm<E>, base: VirtAddr, n: usize) -> bool {
    let mut only = true;
    mm.tables
        .for_each_leaf(base, base.add(n * PAGE_SIZE), |va, leaf| {
            only &= is_zero(leaf.pa_of(va));
        });
    only
}

/// The attributes of a zero-page entry in `vma`: read-only whatever it allows.
fn read_only(vma: &Vma) -> super::pgtable::PteAttrs {
    pte_attrs(VmProt {
        write: false,
        ..vma.prot
    })
}

/// Entries mapping `n` pages from `pa` are gone (unmap) or `mapped` anew (fork): call
/// `f` for each part of the run that is no zero page (a run of consecutive frames may
/// begin, end or pass through one), and count the huge zero page's pages.
pub fn account(pa: PhysAddr, n: usize, mapped: bool, mut f: impl FnMut(PhysAddr, usize)) {
    let page = PAGE_SIZE as u64;
    let (start, end) = (pa.as_u64(), pa.as_u64() + n as u64 * page);
    let z = ZERO_PAGE.load(Ordering::Relaxed);
    let h = HUGE_ZERO_PAGE.load(Ordering::Acquire);
    // The zero pages' ranges, clipped to the run, in address order.
    let mut holes = [(z, z + page, false), (h, h + PMD_SIZE as u64, true)];
    holes.sort_unstable();
    let mut at = start;
    for (lo, hi, huge) in holes {
        let (lo, hi) = (lo.clamp(at, end), hi.clamp(at, end));
        if lo == hi || (huge && h == 0) || (!huge && z == 0) {
            continue;
        }
        if lo > at {
            f(PhysAddr::new(at), ((lo - at) / page) as usize);
        }
        if huge {
            let k = ((hi - lo) / page) as usize;
            if mapped {
                HUGE_MAPPED.fetch_add(k, Ordering::Relaxed);
            } else {
                HUGE_MAPPED.fetch_sub(k, Ordering::Relaxed);
            }
        }
        at = hi;
    }
    if at < end {
        f(PhysAddr::new(at), ((end - at) / page) as usize);
    }
}
