//! userfaultfd's side in the address space (Linux's `mm/userfaultfd.c`, missing mode):
//! registration marks VMAs (`VmaFlags::userfault`, split and merged as any flag), a
//! fault on an unpopulated page of a marked VMA is `FaultError::Userfault` (the hook
//! in `fault`), and UFFDIO_COPY / UFFDIO_ZEROPAGE fill unpopulated pages
//! (`uffd_fill`). The context, its messages and the waiting threads are the process
//! layer's (`proc::userfault`); the calls are `syscall::userfaultfd`.
//!
//! Registrable: anonymous private memory (mmap, the heap, the stack) and the
//! executable's segments (on Linux private mappings of the initramfs's files, which
//! live in tmpfs: shmem, registrable there too). Linux also registers shmem and
//! hugetlb VMAs; here those are EINVAL.
//!
//! UFFDIO_COPY fills with the folio a fault there would take, up to 64 KiB: a
//! 64 KiB-aligned run of 16 unpopulated pages, where the VMA's mTHP policy allows
//! order 4, is one folio mapped by the normal mapping path (`map_folio`: the
//! contiguous layer folds it); anything else base pages (Linux copies into base pages
//! only).

use super::aspace::{Errno, Mm, MmEnv};
use super::fault::FaultError;
use super::folio;
use super::vma::{UffdId, Vma, VmaKind};
use super::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::{EBUSY, EEXIST, EINVAL, ENOENT, ENOMEM};

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
    matches!(
        vma.kind,
        VmaKind::Anon | VmaKind::Heap | VmaKind::Stack | VmaKind::Image
    )
}

impl<E: MmEnv> Mm<E> {
    /// UFFDIO_REGISTER (MODE_MISSING) of `[start, end)` for `uffd`: Linux's
    /// `userfaultfd_register` after its argument checks. The range may hold holes but
    /// must meet a VMA (EINVAL); every VMA in it must be registrable (EINVAL) and not
    /// another context's (EBUSY); nothing changes unless all are.
    pub fn uffd_register(
        &mut self,
        uffd: UffdId,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), Errno> {
        self.uffd_check(start, end, |v| {
            if !registrable(v) {
                Err(EINVAL)
            } else if v.flags.userfault.is_some_and(|u| u != uffd) {
                Err(EBUSY)
            } else {
                Ok(())
            }
        })?;
        self.uffd_mark(start, end, Some(uffd));
        Ok(())
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
            if !registrable(v) || v.flags.userfault.is_some_and(|u| u != uffd) {
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

    /// Whether a fault at `va` would still go to `uffd`: its VMA is registered with it
    /// and the page unpopulated (Linux's `userfaultfd_must_wait`, asked again once
    /// the fault is queued, so that a fill between the fault and the queueing is not
    /// waited for in vain).
    pub fn uffd_must_wait(&self, uffd: UffdId, va: VirtAddr) -> bool {
        self.vmas
            .find(va)
            .is_some_and(|v| v.flags.userfault == Some(uffd))
            && self.tables.get(va.align_down(PAGE_SIZE)).is_none()
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
        if let Fill::Copy(data) = fill {
            assert!(pages <= FILL_PAGES && data.len() == pages * PAGE_SIZE);
            if pages == FILL_PAGES
                && dst.is_aligned(FILL_PAGES * PAGE_SIZE)
                && self.thp_orders(vma.huge) & (1 << 4) != 0
                && self.tables.is_unmapped(dst, FILL_PAGES)
            {
                if let Some(f) = folio::alloc_anon(self.env(), 4) {
                    self.write_folio(f.head(), data);
                    return match self.map_folio(dst, f, vma.prot, true) {
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
                Fill::Zero => self.map_zero_page(page, vma.clone()),
                Fill::Copy(data) => match folio::alloc_anon(self.env(), 0) {
                    Some(f) => {
                        self.write_folio(f.head(), &data[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]);
                        self.map_folio(page, f, vma.prot, true)
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
        ok: impl Fn(&Vma) -> Result<(), Errno>,
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
        while let Some(v) = self.vmas.next_from(at).filter(|v| v.start < end).cloned() {
            let (a, b) = (v.start.max(at), v.end.min(end));
            self.vmas
                .set_flags(a, b, |f| f.userfault = uffd)
                .expect("a piece of one VMA");
            at = b;
        }
    }
}
