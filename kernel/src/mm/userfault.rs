//! userfaultfd's side in the address space (Linux's `mm/userfaultfd.c`, missing mode):
//! registration marks VMAs (`VmaFlags::userfault`, split and merged as any flag), a
//! fault on an unpopulated page of a marked VMA is `FaultError::Userfault` (the hook
//! in `fault`), and UFFDIO_COPY / UFFDIO_ZEROPAGE fill unpopulated pages
//! (`uffd_fill`). The context, its messages and the waiting threads are the process
//! layer's (`proc::userfault`); the calls are `syscall::userfaultfd`.
//!
//! Registrable: anonymous private memory (mmap, the heap, the stack), the
//! executable's segments (on Linux private mappings of the initramfs's files, which
//! live in tmpfs: shmem, registrable there too), mappings of memfds and shared
//! anonymous memory (MISSING_SHMEM: a fault is missing when the file has no page
//! there, `filemap`'s hook; a fill of a shared mapping goes into the file) and
//! private hugetlb mappings (whole huge pages: MISSING_HUGETLBFS). Linux also
//! registers shared hugetlb VMAs; here those are EINVAL.
//!
//! UFFDIO_COPY fills with the folio a fault there would take, up to 64 KiB: a
//! 64 KiB-aligned run of 16 unpopulated pages, where the VMA's mTHP policy allows
//! order 4, is one folio mapped by the normal mapping path (`map_folio`: the
//! contiguous layer folds it); anything else base pages (Linux copies into base pages
//! only).

use super::aspace::Mm;
use super::filemap;
use super::folio::{self, Folio};
use super::hugetlb;
use super::install::{self, FaultError};
use super::machine::MmMachine;
use super::vma::{FileMap, UffdId, Vma, VmaKind};
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::{Errno, EBUSY, EEXIST, EINVAL, ENOENT, ENOMEM};

/// Pages UFFDIO_COPY moves per batch (the process layer's buffer): one 64 KiB block.
pub const FILL_PAGES: usize = 16;

/// What UFFDIO_COPY or UFFDIO_ZEROPAGE puts in the pages.
pub enum Fill<'a> {
    /// The bytes of the pages, in order (a multiple of the page size).
    Copy(&'a [u8]),
    /// The shared zero page.
    Zero,
}

/// Linux's `vma_can_userfault` for the missing mode, as far as this kernel goes.
fn registrable(vma: &Vma) -> bool {
    match &vma.kind {
        VmaKind::Anon | VmaKind::Heap | VmaKind::Stack | VmaKind::Image | VmaKind::File(_) => true,
        VmaKind::Hugetlb(h) => h.file.is_none(),
    }
}

/// Linux's alignment rule for hugetlb VMAs: a range that starts or ends inside one
/// must do so at a boundary of its page size (EINVAL).
fn huge_aligned(vma: &Vma, start: VirtAddr, end: VirtAddr) -> bool {
    vma.hugetlb().is_none_or(|h| {
        let size = h.size.bytes();
        (start <= vma.start || start.is_aligned(size)) && (end >= vma.end || end.is_aligned(size))
    })
}

impl<E: MmMachine> Mm<E> {
    /// UFFDIO_REGISTER (MODE_MISSING) of `[start, end)` for `uffd`: Linux's
    /// `userfaultfd_register` after its argument checks. The range may hold holes but
    /// must meet a VMA (EINVAL); every VMA in it must be registrable (EINVAL) and not
    /// another context's (EBUSY); nothing changes unless all are. Whether a hugetlb
    /// VMA is among them (no UFFDIO_ZEROPAGE there).
    pub fn uffd_register(
        &mut self,
        uffd: UffdId,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<bool, Errno> {
        let mut huge = false;
        self.uffd_check(start, end, |v| {
            huge |= v.hugetlb().is_some();
            if !registrable(v) || !huge_aligned(v, start, end) {
                Err(EINVAL)
            } else if v.flags.userfault.is_some_and(|u| u != uffd) {
                Err(EBUSY)
            } else {
                Ok(())
            }
        })?;
        self.uffd_mark(start, end, Some(uffd));
        Ok(huge)
    }

    /// UFFDIO_UNREGISTER of `[start, end)` through `uffd`: Linux's
    /// `userfaultfd_unregister`. EINVAL if the range meets no VMA, or a VMA that is
    /// another context's or could not be registered.
    pub fn uffd_unregister(
        &mut self,
        uffd: UffdId,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), Errno> {
        self.uffd_check(start, end, |v| {
            if !registrable(v)
                || !huge_aligned(v, start, end)
                || v.flags.userfault.is_some_and(|u| u != uffd)
            {
                Err(EINVAL)
            } else {
                Ok(())
            }
        })?;
        self.uffd_mark(start, end, None);
        Ok(())
    }

    /// The context `uffd` is gone (its last descriptor closed): every VMA it marked
    /// forgets it, and merges back with its neighbours (Linux's
    /// `userfaultfd_release_all`). One pass over the VMAs.
    pub fn uffd_release(&mut self, uffd: UffdId) {
        let mut at = VirtAddr(0);
        while let Some(v) = self.vmas.next_from(at).cloned() {
            at = v.end;
            if v.flags.userfault == Some(uffd) {
                self.vmas
                    .set_flags(v.start, v.end, |f| f.userfault = None)
                    .expect("a whole VMA");
                // The merge may have joined it to the VMA after it.
                at = self.vmas.find(v.start).map_or(v.end, |m| m.end);
            }
        }
    }

    /// fork with UFFD_FEATURE_EVENT_FORK (Linux's `dup_userfaultfd`): `child` was just
    /// forked from this address space, its VMAs unregistered; each VMA registered here
    /// with a context for which `keep` names the child's context is registered there
    /// with that one. One pass over the VMAs.
    pub fn uffd_fork(&self, child: &mut Mm<E>, mut keep: impl FnMut(UffdId) -> Option<UffdId>) {
        for v in self.vmas.iter() {
            if let Some(new) = v.flags.userfault.and_then(&mut keep) {
                child.uffd_mark(v.start, v.end, Some(new));
            }
        }
    }

    /// The address a fault at `va` reports: its page's, a huge page's for hugetlb (as
    /// Linux's `vmf->address`).
    pub fn uffd_fault_page(&self, va: VirtAddr) -> VirtAddr {
        va.align_down(self.uffd_huge_size(va).unwrap_or(PAGE_SIZE))
    }

    /// Whether a fault at `va` would still go to `uffd`: its VMA is registered with it
    /// and the page unpopulated (Linux's `userfaultfd_must_wait`, asked again once
    /// the fault is queued, so that a fill between the fault and the queueing is not
    /// waited for in vain).
    pub fn uffd_must_wait(&self, uffd: UffdId, va: VirtAddr) -> bool {
        let Some(v) = self
            .vmas
            .find(va)
            .filter(|v| v.flags.userfault == Some(uffd))
        else {
            return false;
        };
        let page = va.align_down(PAGE_SIZE);
        let cached = |m: &FileMap| {
            m.file
                .lookup(m.index(page))
                .map(|h| drop(Folio::lock(h.folio.head()).put(1)))
                .is_some()
        };
        self.tables.get(page).is_none() && !v.file().is_some_and(cached)
    }

    /// One batch of UFFDIO_COPY or UFFDIO_ZEROPAGE: fill the `pages` unpopulated pages
    /// from `dst` (at most `FILL_PAGES` for a copy). `[dst, call_end)`, the whole
    /// call's range, must lie in one registered VMA (ENOENT, as Linux's
    /// `validate_dst_vma`). Stops at the first page already populated (EEXIST) or
    /// out of memory (ENOMEM); returns the pages filled and that error.
    pub fn uffd_fill(
        &mut self,
        dst: VirtAddr,
        pages: usize,
        call_end: VirtAddr,
        fill: Fill<'_>,
    ) -> (usize, Result<(), Errno>) {
        let vma = match self.vmas.find(dst) {
            Some(v) if v.end >= call_end && v.flags.userfault.is_some() => v.clone(),
            _ => return (0, Err(ENOENT)),
        };
        // Huge pages are copied whole (`uffd_huge_take`); there is no zero page of
        // every huge size (Linux: EINVAL).
        if vma.hugetlb().is_some() {
            return (0, Err(EINVAL));
        }
        if let Some(m) = vma.file().filter(|m| m.shared) {
            return self.uffd_fill_shared(dst, pages, &vma, m, fill);
        }
        if let Fill::Copy(data) = fill {
            assert!(pages <= FILL_PAGES && data.len() == pages * PAGE_SIZE);
            if pages == FILL_PAGES
                && dst.is_aligned(FILL_PAGES * PAGE_SIZE)
                && self.thp_orders(vma.huge) & (1 << 4) != 0
                && self.tables.is_unmapped(dst, FILL_PAGES)
            {
                if let Some(f) = folio::alloc_anon(self.env(), 4) {
                    self.write_folio(f.head(), data);
                    return match install::map_folio(self, dst, f, vma.prot, true) {
                        Ok(()) => (pages, Ok(())),
                        Err(_) => (0, Err(ENOMEM)),
                    };
                }
            }
        }
        for i in 0..pages {
            let page = dst.add(i * PAGE_SIZE);
            if self.tables.get(page).is_some() {
                return (i, Err(EEXIST));
            }
            let r = match fill {
                Fill::Zero => zero::map(self, page, &vma),
                Fill::Copy(data) => match folio::alloc_anon(self.env(), 0) {
                    Some(f) => {
                        self.write_folio(f.head(), &data[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]);
                        install::map_folio(self, page, f, vma.prot, true)
                    }
                    None => Err(FaultError::Oom),
                },
            };
            if r.is_err() {
                return (i, Err(ENOMEM));
            }
        }
        (pages, Ok(()))
    }

    /// `uffd_fill` in a shared file mapping (MISSING_SHMEM; Linux's
    /// `shmem_mfill_atomic_pte`): each page goes into the file's cache, filled before
    /// it is seen (EEXIST if the file has it, EFAULT past its end), and is mapped here.
    /// A private file mapping is filled as anonymous memory (Linux too).
    fn uffd_fill_shared(
        &mut self,
        dst: VirtAddr,
        pages: usize,
        vma: &Vma,
        m: &FileMap,
        fill: Fill<'_>,
    ) -> (usize, Result<(), Errno>) {
        for i in 0..pages {
            let page = dst.add(i * PAGE_SIZE);
            if self.tables.get(page).is_some() {
                return (i, Err(EEXIST));
            }
            let env = self.env().clone();
            let held = m.file.add_filled(&env, m.index(page), |pa| {
                if let Fill::Copy(data) = fill {
                    env.write_page(pa, &data[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]);
                }
            });
            let r = match held {
                Ok(h) => filemap::map_cached(self, page, vma, m, h, false).map_err(|_| ENOMEM),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                return (i, Err(e));
            }
        }
        (pages, Ok(()))
    }

    /// Store `data` in the pages of a new folio from `head`, before anything maps it.
    fn write_folio(&self, head: PhysAddr, data: &[u8]) {
        for (i, page) in data.chunks(PAGE_SIZE).enumerate() {
            self.env().write_page(head.add(i * PAGE_SIZE), page);
        }
    }

    /// Check every VMA piece of `[start, end)` with `ok`; EINVAL if there is none.
    fn uffd_check(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        mut ok: impl FnMut(&Vma) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let mut at = start;
        let mut found = false;
        while let Some(v) = self.vmas.next_from(at).filter(|v| v.start < end) {
            ok(v)?;
            found = true;
            at = v.end;
        }
        if found {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }

    /// Set the registration of every VMA piece of `[start, end)` (split at the ends,
    /// merged where it makes neighbours alike), holes skipped.
    fn uffd_mark(&mut self, start: VirtAddr, end: VirtAddr, uffd: Option<UffdId>) {
        let mut at = start;
        // `at < end`: the merge after a piece may join it to the VMA past `end`.
        while let Some(v) = self
            .vmas
            .next_from(at)
            .filter(|v| at < end && v.start < end)
            .cloned()
        {
            let (a, b) = (v.start.max(at), v.end.min(end));
            self.vmas
                .set_flags(a, b, |f| f.userfault = uffd)
                .expect("a piece of one VMA");
            at = b;
        }
    }
}

/// UFFDIO_COPY into a private hugetlb VMA (UFFD_FEATURE_MISSING_HUGETLBFS), a huge
/// page at a time as Linux's `mfill_atomic_hugetlb`: a pool page is taken under the
/// `Mm` lock (`uffd_huge_take`), filled with the lock dropped (the source may fault),
/// and mapped under it again (`uffd_huge_map`), or given back (`uffd_huge_abandon`).
impl<E: MmMachine> Mm<E> {
    /// The huge page size of the hugetlb VMA at `va`, if it is one.
    pub fn uffd_huge_size(&self, va: VirtAddr) -> Option<usize> {
        self.vmas.find(va)?.hugetlb().map(|h| h.size.bytes())
    }

    /// A pool page for the huge page at `dst`: `[dst, call_end)` in one registered
    /// VMA (ENOENT), both ends aligned to its page size (EINVAL), the page unmapped
    /// (EEXIST), a page in the pool (its reservation, else a free one; ENOMEM).
    pub fn uffd_huge_take(&mut self, dst: VirtAddr, call_end: VirtAddr) -> Result<PhysAddr, Errno> {
        let vma = match self.vmas.find(dst) {
            Some(v) if v.end >= call_end && v.flags.userfault.is_some() => v,
            _ => return Err(ENOENT),
        };
        let h = vma.hugetlb().ok_or(EINVAL)?;
        let size = h.size.bytes();
        if !dst.is_aligned(size) || !call_end.is_aligned(size) {
            return Err(EINVAL);
        }
        if self.tables.get(dst).is_some() {
            return Err(EEXIST);
        }
        let reserved = h.resv.as_ref().is_some_and(|r| r.consume(dst));
        hugetlb::pool(h.size).take(reserved).ok_or(ENOMEM)
    }

    /// Store `data` at `off` bytes into the pool page `head` (`uffd_huge_take`'s,
    /// which nothing maps yet).
    pub fn uffd_huge_write(&self, head: PhysAddr, off: usize, data: &[u8]) {
        for (i, page) in data.chunks(PAGE_SIZE).enumerate() {
            self.env().write_page(head.add(off + i * PAGE_SIZE), page);
        }
    }

    /// Map the filled pool page `head` at `dst` if the VMA is still registered and the
    /// page still unmapped (else it goes back: ENOENT, EEXIST), as a fault maps one.
    pub fn uffd_huge_map(&mut self, dst: VirtAddr, head: PhysAddr) -> Result<(), Errno> {
        let vma = self.vmas.find(dst).cloned();
        let size = self.uffd_huge_size(dst);
        let vma = match vma {
            Some(v) if v.flags.userfault.is_some() && size.is_some() => v,
            _ => {
                uffd_huge_abandon(head);
                return Err(ENOENT);
            }
        };
        if self.tables.get(dst).is_some() {
            uffd_huge_abandon(head);
            return Err(EEXIST);
        }
        install::map_folio(self, dst, folio::adopt_hugetlb(head, false), vma.prot, true)
            .map_err(|_| ENOMEM)
    }
}

/// Give the pool page `head`, taken and never mapped, back to its pool (the free of
/// a hugetlb folio).
pub fn uffd_huge_abandon(head: PhysAddr) {
    drop(Folio::lock(folio::adopt_hugetlb(head, false).head()).put(1));
}
