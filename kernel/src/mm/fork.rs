//! fork: the child's copy of an address space. Each VMA is copied in 64 MiB batches
//! (`batch::WIDE_BATCH_PAGES`, as mprotect: fork collects nothing), one page-table
//! call per batch (`pgtable/fork.rs`): one walk of the parent write-protects its
//! entries and maps the same frames read-only in the child, 2 MiB blocks as blocks,
//! contiguous blocks folded; every page mapped in both is shared (not exclusive),
//! a whole folio in one step (`folio`: entire map count, `ALL_SHARED`). Batches keep
//! what one call costs bounded whatever the VMA's length: the test build's checker
//! keeps state per 64 KiB block an operation touches, and a 256 MiB VMA copied in one
//! operation ran the kernel heap out. A lazyfree folio's new mapping gets its entry on
//! the lazyfree list (`lazyfree`'s fork), batch by batch.
//!
//! The VMA flags, as Linux's `dup_mmap`: a MADV_DONTFORK VMA is not copied (the child
//! has a hole there), so a folio in it is never shared and the parent's next write
//! fault finds it still exclusive; a MADV_WIPEONFORK VMA is copied without its pages
//! (the child reads zeros and faults in frames of its own) and keeps the flag; the
//! child inherits no lock (VM_LOCKED and VM_LOCKONFAULT are cleared, and the address
//! space's `def_flags` start empty).

use core::sync::atomic::{AtomicU64, Ordering};

use super::aspace::Mm;
use super::batch::{batches_of, pages, WIDE_BATCH_PAGES};
use super::folio::{self, Folio, Shared};
use super::install::{self, pte_attrs, FaultError};
use super::lazyfree::span;
use super::machine::MmMachine;
use super::vma::{VmProt, Vma, VmaFlags, VmaKind};
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::{
    Errno, EINVAL, ENOMEM, MADV_DOFORK, MADV_DONTFORK, MADV_KEEPONFORK, MADV_WIPEONFORK,
};

impl<E: MmMachine> Mm<E> {
    /// The child's copy at fork: the same VMAs, the same folios mapped read-only in
    /// both. Every parent entry is write-protected whatever its VMA's flags say (an
    /// entry may allow more than its VMA while a block is being split: what counts is
    /// what the entries allow) before the child maps its frame, so no page is shared
    /// while an entry can still write it.
    pub fn fork(&mut self) -> Result<Mm<E>, Errno> {
        let mut child = Mm::new_in(self.env())?;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        let mut next = VirtAddr(0);
        while let Some(vma) = self.vmas.next_from(next).cloned() {
            next = vma.end;
            if vma.flags.dontcopy {
                continue;
            }
            // Without UFFD_FEATURE_EVENT_FORK the child's VMAs are not registered
            // (Linux's `dup_userfaultfd`).
            let flags = VmaFlags {
                locked: false,
                lockonfault: false,
                userfault: None,
                ..vma.flags
            };
            child
                .vmas
                .insert(Vma {
                    flags,
                    kind: vma.kind.forked(),
                    ..vma.clone()
                })
                .expect("parent VMAs do not overlap");
            // A shared file mapping's pages are the file's: the child faults them in
            // from its page cache, as Linux copies no entries of a shared mapping.
            if vma.flags.wipeonfork || vma.is_shared() {
                continue;
            }
            if vma
                .hugetlb()
                .is_some_and(|h| h.size.bytes() > super::addr::PMD_SIZE)
            {
                self.hugetlb_fork(&mut child, &vma)?;
                continue;
            }
            let attrs = pte_attrs(VmProt {
                write: false,
                ..vma.prot
            });
            for (a, b) in batches_of(vma.start, vma.end, WIDE_BATCH_PAGES) {
                let mut seen = Seen::default();
                let r = self.tables.fork_range(
                    &mut child.tables,
                    a,
                    pages(a, b),
                    attrs,
                    |va, pa, n| share(va, pa, n, &mut seen),
                );
                // After a failure the child is dropped with what it maps.
                r.map_err(|_| ENOMEM)?;
                for &(va, end) in &seen.pinned[..seen.nr_pinned] {
                    child.copy_pinned(va, end, &vma).map_err(|_| ENOMEM)?;
                }
                if seen.lazyfree {
                    self.fork_lazyfree(&mut child, a, b);
                }
            }
        }
        Ok(child)
    }
}

impl<E: MmMachine> Mm<E> {
    /// madvise MADV_DONTFORK, MADV_DOFORK, MADV_WIPEONFORK or MADV_KEEPONFORK of
    /// `[start, end)`, a piece of `vma`: Linux's `madvise_vma_behavior`. Wipe-on-fork
    /// is for private anonymous memory only: a file mapping (the executable's is one
    /// on Linux) is EINVAL.
    pub(super) fn madvise_fork(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        vma: &Vma,
        advice: u64,
    ) -> Result<(), Errno> {
        if advice == MADV_WIPEONFORK && (vma.kind == VmaKind::Image || vma.file().is_some()) {
            return Err(EINVAL);
        }
        self.change_flags(start, end, |f| match advice {
            MADV_DONTFORK => f.dontcopy = true,
            MADV_DOFORK => f.dontcopy = false,
            MADV_WIPEONFORK => f.wipeonfork = true,
            MADV_KEEPONFORK => f.wipeonfork = false,
            _ => unreachable!("madvise passes the fork advice only"),
        })
    }
}

/// Ranges of pinned folios a batch remembers for `copy_pinned`; beyond, the last one
/// grows to take in the next (they come in address order).
const PINNED_RUNS: usize = 32;

/// What fork's accounting met in a batch: a lazyfree folio (its new mapping needs an
/// entry: `lazyfree`'s fork), pinned ones (where the child needs copies).
#[derive(Default)]
struct Seen {
    lazyfree: bool,
    /// `[start, end)` of each.
    pinned: [(VirtAddr, VirtAddr); PINNED_RUNS],
    nr_pinned: usize,
}

/// Account `n` more mappings of the consecutive pages from `pa`, mapped at `va`
/// (fork), which are now shared (`folio::Locked::share`): not exclusive to either
/// address space, except in a pinned folio, remembered for `copy_pinned`. The zero
/// page is no folio: its entries are copied and nothing is accounted (`zero`).
fn share(va: VirtAddr, pa: PhysAddr, n: usize, seen: &mut Seen) {
    zero::account(pa, n, true, |pa_run, n| {
        folio::for_each_folio(pa_run, n, |f, first, m| match f.share(first, m) {
            Shared::Plain => {}
            Shared::Lazyfree => seen.lazyfree = true,
            Shared::Pinned => {
                let at = va.add((f.page(first).as_u64() - pa.as_u64()) as usize);
                let end = at.add(m * PAGE_SIZE);
                if seen.nr_pinned == PINNED_RUNS {
                    seen.pinned[PINNED_RUNS - 1].1 = end;
                } else {
                    seen.pinned[seen.nr_pinned] = (at, end);
                    seen.nr_pinned += 1;
                }
            }
        })
    });
}

impl<E: MmMachine> Mm<E> {
    /// After fork mapped `[start, end)` here (the child) with the parent's frames: give
    /// this side its own copy of every exclusive page of a pinned folio, so that the
    /// pin keeps referring to the parent's page and nothing the parent writes through
    /// it reaches the child (Linux's `copy_present_page` when `folio_maybe_dma_pinned`).
    /// A folio this side maps whole and in order, all exclusive, is copied whole into a
    /// new folio of its order (mapped folded, or as a 2 MiB block); otherwise, or when
    /// no such folio can be had, page by page. The child has not run: its entries are
    /// the parent's, read-only. Only the runs in which `share` met a pinned folio get
    /// this walk, so a fork with nothing pinned pays nothing for it.
    fn copy_pinned(&mut self, start: VirtAddr, end: VirtAddr, vma: &Vma) -> Result<(), FaultError> {
        if vma.hugetlb().is_some() {
            return self.hugetlb_copy_pinned(start, end, vma);
        }
        let mut va = start;
        while va < end {
            let Some(leaf) = self.tables.get(va) else {
                va = va.add(PAGE_SIZE);
                continue;
            };
            let pa = leaf.pa_of(va);
            if zero::is_zero(pa) {
                va = va.add(PAGE_SIZE);
                continue;
            }
            let f = Folio::of(pa);
            let n = f.nr_pages();
            let base = VirtAddr(va.as_u64() - (f.index(pa) * PAGE_SIZE) as u64);
            if !f.is_pinned() || f.is_file() {
                // The rest of this entry or block maps the same folio.
                va = va.add(span(va, &leaf) * PAGE_SIZE);
                continue;
            }
            let whole = f.is_large()
                && va == base
                && base.add(n * PAGE_SIZE) <= end
                && f.all_exclusive()
                && self.maps_in_order(base, f);
            if whole {
                if let Some(new) = folio::alloc_anon_copy(self.env(), f.order(), f.head()) {
                    install::unmap_for(self, base, n, new)?;
                    install::map_folio(self, base, new, vma.prot, false)?;
                    PINNED_FOLIO_COPIES.fetch_add(1, Ordering::Relaxed);
                    va = base.add(n * PAGE_SIZE);
                    continue;
                }
            }
            if f.is_exclusive(f.index(pa)) {
                install::replace_with_copy(self, va, pa, vma.prot, false)?;
                PINNED_PAGE_COPIES.fetch_add(1, Ordering::Relaxed);
            }
            va = va.add(PAGE_SIZE);
        }
        Ok(())
    }

    /// Whether this address space maps every page of `f` in order from `base`.
    fn maps_in_order(&self, base: VirtAddr, f: Folio) -> bool {
        (0..f.nr_pages()).all(|i| {
            self.tables
                .get(base.add(i * PAGE_SIZE))
                .is_some_and(|l| l.pa_of(base.add(i * PAGE_SIZE)) == f.page(i))
        })
    }
}

/// Fork's copies for the child of pinned folios: whole folios and single pages.
pub static PINNED_FOLIO_COPIES: AtomicU64 = AtomicU64::new(0);
pub static PINNED_PAGE_COPIES: AtomicU64 = AtomicU64::new(0);
