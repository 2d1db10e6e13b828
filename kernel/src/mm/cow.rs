//! Copy-on-write: a write fault on a read-only page of a writable VMA (shared since
//! fork, or write-protected by mprotect while shared). (1) When this mapping is the
//! only one left on the whole anonymous folio, it takes the folio over: one batched
//! make-writable, no copy, no split, blocks stay folded. (2) Otherwise it copies (a
//! file's folio in a private mapping always: its pages are the file's, `shmem`): the
//! faulting 4 KiB page (the old folio is left partially mapped and queued for deferred
//! split once nobody maps the page), or, with `cow=folio`, the whole folio into a new
//! one of the same order. A forced write (a debugger's, through /proc/self/mem:
//! `fault::access_forced`) to a read-only VMA takes the same path and leaves the entry
//! read-only, as Linux's `wp_page_reuse`/`wp_page_copy` do through `maybe_mkwrite`.

use core::sync::atomic::{AtomicBool, Ordering};

use super::aspace::{pte_attrs, release, release_one, Mm, MmEnv};
use super::fault::{map_error, FaultError};
use super::folio::{self, Folio};
use super::mthp;
use super::vma::{VmProt, Vma};
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};

/// `cow=folio`: copy a whole shared folio on a write fault instead of one page.
pub static COW_COPIES_FOLIO: AtomicBool = AtomicBool::new(false);

impl<E: MmEnv> Mm<E> {
    /// A write fault on a read-only page of a writable VMA (shared since fork, or
    /// write-protected by mprotect while shared), or a forced write to a read-only
    /// VMA, at a page which maps `old` (the fault's walk found it; the `Mm` lock keeps
    /// it mapped). The new or reused entry is writable only if the VMA is.
    pub(super) fn copy_on_write(
        &mut self,
        page: VirtAddr,
        old: PhysAddr,
        vma: Vma,
    ) -> Result<(), FaultError> {
        if zero::is_zero(old) {
            // Nothing to copy or reuse: a folio of zeros replaces it (`zero`).
            return self.write_over_zero(page, vma);
        }
        if vma.hugetlb().is_some() {
            // A hugetlb page is reused or copied whole, within its pool.
            return self.hugetlb_cow(page, old, &vma);
        }
        let f = Folio::lock(old);
        let n = f.nr_pages();
        // An exclusive page is this mapping's alone whatever else holds a reference to
        // it: a pin must see the write, so it is never copied (Linux's `do_wp_page`
        // reuses any PageAnonExclusive page; `pin`'s rule 2).
        let exclusive = !f.is_file() && f.is_exclusive(f.index(old));
        // Completed by the walk below: every page mapped here, so each exactly once. A
        // file's folio is never taken over: its pages are the file's (Linux reuses
        // anonymous folios only).
        let held_once = !f.is_file() && f.held_by_one_entry_per_page();
        let reuse = held_once || (exclusive && f.all_exclusive());
        // A file's folio gives a private mapping one page at a time, as Linux's
        // `wp_page_copy`: the rest stays the file's until written.
        let copy_folio =
            f.is_large() && !f.is_file() && !exclusive && COW_COPIES_FOLIO.load(Ordering::Relaxed);
        // One walk of the folio's range serves both the reuse and the folio copy.
        let whole = if reuse || copy_folio {
            self.whole_folio_at(page, old, *f, &vma)
        } else {
            None
        };
        if reuse {
            if let Some(base) = whole {
                // Only this mapping is left: take the whole folio, blocks stay folded.
                debug_assert!(!held_once || f.mapped_exactly_once());
                // Exclusive first: a writable entry maps an exclusive page.
                f.set_exclusive(0, n, true);
                if vma.prot.write {
                    self.tables.make_writable(base, n).map_err(map_error)?;
                }
                if f.is_large() {
                    mthp::stats(f.order())
                        .cow_reuse
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Ok(());
            }
        }
        if exclusive {
            // This page alone (its folio is partly shared or partly mapped elsewhere).
            drop(f);
            if vma.prot.write {
                self.tables.make_writable(page, 1).map_err(map_error)?;
            }
            return Ok(());
        }
        if copy_folio {
            if let Some(base) = whole {
                if let Some(new) = folio::alloc_anon_copy(self.env(), f.order(), f.head()) {
                    drop(f);
                    self.unmap_for(base, n, new)?;
                    mthp::stats(new.order())
                        .cow_folio_copy
                        .fetch_add(1, Ordering::Relaxed);
                    return self.map_folio(base, new, vma.prot, true);
                }
            }
        }
        drop(f);
        // Mapped dirty: the faulting store is a write.
        self.replace_with_copy(page, old, vma.prot, true)?;
        super::collapse::hint(self, page);
        Ok(())
    }

    /// Unmap the `n` pages from `base` that the new folio `new` (a copy of what they
    /// map, not mapped yet) is to replace; if that fails, `new`, whose allocation
    /// reference is its only one, is freed (copy-on-write of a whole folio, fork's copy
    /// of a pinned folio, hugetlb's copy of a page).
    pub(super) fn unmap_for(
        &mut self,
        base: VirtAddr,
        n: usize,
        new: Folio,
    ) -> Result<(), FaultError> {
        match self.tables.unmap(base, n) {
            Ok(records) => {
                release(records);
                Ok(())
            }
            Err(e) => {
                drop(Folio::lock(new.head()).put(1));
                Err(map_error(e))
            }
        }
    }

    /// Map a copy of the page `old` at `page` in its place, with `prot`: one
    /// break-before-make, exclusive before any entry maps it (copy-on-write, and fork's
    /// copy of a pinned page for the child). Replacing one page of a 2 MiB block splits
    /// it, which needs a table.
    pub(super) fn replace_with_copy(
        &mut self,
        page: VirtAddr,
        old: PhysAddr,
        prot: VmProt,
        dirty: bool,
    ) -> Result<(), FaultError> {
        let new = folio::alloc_anon_copy(self.env(), 0, old).ok_or(FaultError::Oom)?;
        let nf = Folio::lock(new.head());
        nf.set_exclusive(0, 1, true);
        match self
            .tables
            .replace_page(page, new.head(), pte_attrs(prot), dirty)
        {
            Ok(gone) => {
                nf.map(0, 1);
                drop(nf.put(1));
                release_one(gone);
                Ok(())
            }
            Err(e) => {
                drop(nf.put(1));
                Err(map_error(e))
            }
        }
    }

    /// Where folio `f` would sit if this address space maps all of it around `page`
    /// (which maps `pa`): its first address, if every page is mapped here in order,
    /// inside `vma`.
    fn whole_folio_at(
        &self,
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
        self.tables.for_each_block(base, end, |va, leaf, n| {
            pages += n;
            in_order &=
                leaf.pa_of(va) == f.page((va.as_u64() - base.as_u64()) as usize / PAGE_SIZE);
        });
        (in_order && pages == f.nr_pages()).then_some(base)
    }
}
