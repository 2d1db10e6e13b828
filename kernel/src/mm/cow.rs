//! Copy-on-write: a write fault on a read-only page of a writable VMA (shared since
//! fork, or write-protected by mprotect while shared), or a forced write (a
//! debugger's, through /proc/self/mem: `fault::access_forced`). The zero page is
//! replaced by a new folio (`zero`), a hugetlb page reused or copied whole within its
//! pool (`hugetlb::map`). Anything else takes one of four ways, Linux's
//! `wp_page_reuse` / `wp_page_copy` split by what is reused or copied:
//!
//! - [`reuse_folio`]: this mapping is the only one left on the whole anonymous folio:
//!   one batched make-writable, no copy, no split, blocks stay folded;
//! - [`reuse_page`]: the page is anon-exclusive (a pinned one too): written in place;
//! - [`copy_folio`] (`cow=folio`): the whole folio into a new one of the same order;
//! - [`copy_page`]: the faulting 4 KiB page (a file's folio in a private mapping
//!   always: its pages are the file's, `shmem`); the old folio is left partially
//!   mapped and queued for deferred split once nobody maps the page.
//!
//! A forced write to a read-only VMA leaves the entry read-only, as Linux's do
//! through `maybe_mkwrite`. All four map through `install`.

use core::sync::atomic::{AtomicBool, Ordering};

use super::aspace::Mm;
use super::folio::{self, Folio, Locked};
use super::hugetlb;
use super::install::{self, map_error, FaultError};
use super::machine::MmMachine;
use super::mthp;
use super::vma::Vma;
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};

/// `cow=folio`: copy a whole shared folio on a write fault instead of one page.
pub static COW_COPIES_FOLIO: AtomicBool = AtomicBool::new(false);

/// A write fault at `page`, which maps `old` read-only (the fault's walk found it;
/// the `Mm` lock keeps it mapped). The new or reused entry is writable only if the
/// VMA is.
pub(super) fn copy_on_write<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    old: PhysAddr,
    vma: Vma,
) -> Result<(), FaultError> {
    if zero::is_zero(old) {
        // Nothing to copy or reuse: a folio of zeros replaces it.
        return zero::write_over(mm, page, vma);
    }
    if vma.hugetlb().is_some() {
        return hugetlb::map::cow(mm, page, old, &vma);
    }
    let f = Folio::lock(old);
    // A file's folio is never taken over: its pages are the file's (Linux reuses
    // anonymous folios only), and it gives a private mapping one page at a time.
    if f.is_file() {
        drop(f);
        return copy_page(mm, page, old, vma);
    }
    let exclusive = f.is_exclusive(f.index(old));
    let held_once = f.held_by_one_entry_per_page();
    let reuse = held_once || (exclusive && f.all_exclusive());
    let copy_whole = f.is_large() && !exclusive && COW_COPIES_FOLIO.load(Ordering::Relaxed);
    // One walk of the folio's range serves both the reuse and the folio copy.
    let whole = if reuse || copy_whole {
        whole_folio_at(mm, page, old, *f, &vma)
    } else {
        None
    };
    match whole {
        Some(base) if reuse => reuse_folio(mm, f, base, held_once, &vma),
        _ if exclusive => {
            drop(f);
            reuse_page(mm, page, &vma)
        }
        Some(base) if copy_whole => copy_folio(mm, f, page, old, base, vma),
        _ => {
            drop(f);
            copy_page(mm, page, old, vma)
        }
    }
}

/// Take the whole folio `f` (locked), mapped here in order from `base`.
///
/// Safe because this address space is the only one left that maps it: every page is
/// mapped exactly once, by this mapping (`held_once`: as many entries as pages and no
/// other reference, each page seen here), or every page is already anon-exclusive
/// here. So no other address space can read a page this write changes, and marking
/// the pages exclusive keeps *who may write a page*.
#[inline]
fn reuse_folio<E: MmMachine>(
    mm: &mut Mm<E>,
    f: Locked,
    base: VirtAddr,
    held_once: bool,
    vma: &Vma,
) -> Result<(), FaultError> {
    let n = f.nr_pages();
    debug_assert!(!held_once || f.mapped_exactly_once());
    // Exclusive first: a writable entry maps an exclusive page.
    f.set_exclusive(0, n, true);
    if vma.prot.write {
        mm.tables.make_writable(base, n).map_err(map_error)?;
    }
    if f.is_large() {
        mthp::stats(f.order())
            .cow_reuse
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Write the anon-exclusive `page` in place (its folio is partly shared or partly
/// mapped elsewhere).
///
/// Safe because an exclusive page is this mapping's alone whatever else holds a
/// reference to it; a pin must see the write, so it is never copied (Linux's
/// `do_wp_page` reuses any PageAnonExclusive page; `pin`'s rule 2).
#[inline]
fn reuse_page<E: MmMachine>(mm: &mut Mm<E>, page: VirtAddr, vma: &Vma) -> Result<(), FaultError> {
    if vma.prot.write {
        mm.tables.make_writable(page, 1).map_err(map_error)?;
    }
    Ok(())
}

/// Copy the whole folio `f` (locked), mapped here in order from `base`, into a new one
/// of its order and map that instead (`cow=folio`); the page `old` alone if no folio
/// can be had.
///
/// Needed because the folio is shared: the faulting page is not exclusive, so another
/// address space may read it, and nothing here may write it.
fn copy_folio<E: MmMachine>(
    mm: &mut Mm<E>,
    f: Locked,
    page: VirtAddr,
    old: PhysAddr,
    base: VirtAddr,
    vma: Vma,
) -> Result<(), FaultError> {
    let (order, head, n) = (f.order(), f.head(), f.nr_pages());
    drop(f);
    let Some(new) = folio::alloc_anon_copy(mm.env(), order, head) else {
        return copy_page(mm, page, old, vma);
    };
    install::unmap_for(mm, base, n, new)?;
    mthp::stats(order)
        .cow_folio_copy
        .fetch_add(1, Ordering::Relaxed);
    install::map_folio(mm, base, new, vma.prot, true)
}

/// Copy the page `old` at `page` into a new exclusive page, mapped dirty (the faulting
/// store is a write).
///
/// Needed because the page is not exclusive (shared since fork, or a file's): another
/// address space or the file may read it. The old folio, now partly mapped here, is
/// hinted to the collapse thread.
#[inline]
fn copy_page<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    old: PhysAddr,
    vma: Vma,
) -> Result<(), FaultError> {
    install::replace_with_copy(mm, page, old, vma.prot, true)?;
    super::collapse::hint(mm, page);
    Ok(())
}

/// Where folio `f` would sit if this address space maps all of it around `page`
/// (which maps `pa`): its first address, if every page is mapped here in order,
/// inside `vma`.
#[inline]
fn whole_folio_at<E: MmMachine>(
    mm: &Mm<E>,
    page: VirtAddr,
    pa: PhysAddr,
    f: Folio,
    vma: &Vma,
) -> Option<VirtAddr> {
    if !f.is_large() {
        // `page` maps `pa`, and the page is the whole folio.
        return Some(page);
    }
    let base = VirtAddr(page.as_u64() - (f.index(pa) * PAGE_SIZE) as u64);
    let end = base.add(f.nr_pages() * PAGE_SIZE);
    if base < vma.start || end > vma.end {
        return None;
    }
    // A block at a time: one call for a 2 MiB block or a whole contiguous block
    // (each maps consecutive pages of one folio), one per page otherwise.
    let mut pages = 0;
    let mut in_order = true;
    mm.tables.for_each_block(base, end, |va, leaf, n| {
        pages += n;
        in_order &= leaf.pa_of(va) == f.page((va.as_u64() - base.as_u64()) as usize / PAGE_SIZE);
    });
    (in_order && pages == f.nr_pages()).then_some(base)
}
