//! The calls that change the layout of an address space: mmap, munmap, mprotect,
//! madvise, mincore and brk, with Linux's semantics (the lock flags mmap and brk give
//! a new VMA after mlockall(MCL_FUTURE) are `mlock`'s). Each VMA split first splits the
//! 2 MiB block its new edge cuts (`split_edges`), so a call fails before changing
//! anything; range work goes in 2 MiB batches (`batch::batches`), mprotect's in
//! 64 MiB ones (`batch::WIDE_BATCH_PAGES`: it collects nothing).

use super::addr::PMD_SIZE;
use super::aspace::{Mm, MMAP_BASE, MMAP_MIN, STACK_TOP};
use super::batch::{batches_of, pages, BATCH_PAGES, WIDE_BATCH_PAGES};
use super::fault::Access;
use super::folio;
use super::install::{pte_attrs, release, FaultError};
use super::lazyfree::Reach;
use super::machine::MmMachine;
use super::shmem::Shmem;
use super::vma::{FileMap, HugeHint, VmProt, Vma, VmaFlags, VmaKind, MAX_MAP_COUNT};
use super::{VirtAddr, PAGE_SIZE};
use crate::uapi::Errno;
use crate::uapi::*;
use alloc::sync::Arc;

impl<E: MmMachine> Mm<E> {
    /// Split the 2 MiB blocks that `start` and `end` cut: what a VMA boundary or a range
    /// operation there needs first. Fails (ENOMEM) only for want of a table; a split
    /// changes no translation, so one done before a failure needs no undo.
    pub(super) fn split_edges(&mut self, start: VirtAddr, end: VirtAddr) -> Result<(), Errno> {
        super::collapse::hint_edges(self, start, end);
        self.tables.split_at(start).map_err(|_| ENOMEM)?;
        self.tables.split_at(end).map_err(|_| ENOMEM)
    }

    /// Change the flags of `[start, end)`, which lies in one VMA (madvise's fork flags,
    /// mlock): the blocks its edges cut are split first, and a split may not take the
    /// VMA count past `MAX_MAP_COUNT`.
    pub(super) fn change_flags(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        change: impl Fn(&mut VmaFlags),
    ) -> Result<(), Errno> {
        let whole = self
            .vmas
            .find(start)
            .is_some_and(|v| v.start == start && v.end == end);
        if !whole {
            self.may_split()?;
            self.split_edges(start, end)?;
        }
        self.vmas
            .set_flags(start, end, change)
            .expect("the piece lies in one VMA");
        Ok(())
    }

    /// Unmap the pages of `[start, end)` (munmap, MADV_DONTNEED), in batches. Only
    /// VMAs have pages, so only their pieces are walked: an unmap of most of the
    /// address space (a munmap, or an mremap shrink, of 2^47 bytes) costs what is
    /// mapped there, not 2^26 batches of holes.
    pub(super) fn unmap_pages(&mut self, start: VirtAddr, end: VirtAddr) -> Result<(), Errno> {
        self.split_edges(start, end)?;
        let mut at = start;
        while let Some(v) = self
            .vmas
            .next_from(at)
            .cloned()
            .filter(|v| at < end && v.start < end)
        {
            let (from, to) = (v.start.max(at), v.end.min(end));
            // 2 MiB batches, holes skipped whole (`next_populated`); a hugetlb page
            // larger than that is one batch, so its entries go together (`hugetlb`).
            let batch = v
                .hugetlb()
                .map_or(BATCH_PAGES, |h| h.size.bytes() / PAGE_SIZE);
            let mut a = self.tables.next_populated(from, to);
            while let Some((_, b)) = batches_of(a, to, batch.max(BATCH_PAGES)).next() {
                let records = self
                    .tables
                    .unmap(a, pages(a, b))
                    .expect("edges split: a batch cuts no block");
                release(records);
                a = self.tables.next_populated(b, to);
            }
            at = to;
        }
        Ok(())
    }

    /// munmap: pages and VMAs of `[start, end)`; holes are fine.
    pub fn munmap(&mut self, start: VirtAddr, end: VirtAddr) -> Result<(), Errno> {
        self.hugetlb_check_cut(start, end)?;
        // Cutting a hole in the middle of a VMA adds one.
        let splits = self
            .vmas
            .find(start)
            .is_some_and(|v| v.start < start && end < v.end);
        if splits && self.vmas.len() >= MAX_MAP_COUNT {
            return Err(ENOMEM);
        }
        self.unmap_pages(start, end)?;
        self.hugetlb_unreserve(start, end);
        self.vmas.remove(start, end);
        super::collapse::forget_range(self, start, end);
        Ok(())
    }

    /// mmap of anonymous private memory; returns the start.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: VmProt,
        flags: u64,
    ) -> Result<VirtAddr, Errno> {
        self.mmap_kind(addr, len, prot, flags, |_| VmaKind::Anon)
    }

    /// mmap of `file` from byte `offset` (page-aligned), shared if `flags` say
    /// MAP_SHARED, else private; returns the start. (MAP_SHARED|MAP_ANONYMOUS is a
    /// mapping of a new file of the mapping's length, as Linux's `shmem_zero_setup`.)
    pub fn mmap_file(
        &mut self,
        addr: u64,
        len: u64,
        prot: VmProt,
        flags: u64,
        file: Arc<Shmem>,
        offset: u64,
    ) -> Result<VirtAddr, Errno> {
        let shared = flags & MAP_TYPE != MAP_PRIVATE;
        self.mmap_kind(addr, len, prot, flags, |start| {
            VmaKind::File(FileMap {
                file,
                origin: start.as_u64().wrapping_sub(offset),
                shared,
            })
        })
    }

    /// mmap of a new VMA whose kind `kind(start)` gives once its place is known.
    pub(super) fn mmap_kind(
        &mut self,
        addr: u64,
        len: u64,
        prot: VmProt,
        flags: u64,
        kind: impl FnOnce(VirtAddr) -> VmaKind,
    ) -> Result<VirtAddr, Errno> {
        let len = len.checked_add(PAGE_SIZE as u64 - 1).ok_or(ENOMEM)? & !(PAGE_SIZE as u64 - 1);
        if self.vmas.len() >= MAX_MAP_COUNT {
            return Err(ENOMEM);
        }
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let start = if fixed {
            if !addr.is_multiple_of(PAGE_SIZE as u64) {
                return Err(EINVAL);
            }
            let end = addr
                .checked_add(len)
                .filter(|&e| e <= STACK_TOP && addr >= MMAP_MIN)
                .ok_or(ENOMEM)?;
            if !self.vmas.is_free(VirtAddr(addr), VirtAddr(end)) {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    return Err(EEXIST);
                }
                self.munmap(VirtAddr(addr), VirtAddr(end))?;
            }
            VirtAddr(addr)
        } else {
            self.unmapped_area(addr, len)?
        };
        let end = start.add(len as usize);
        let (mut vma_flags, _) = self.new_vma_flags();
        vma_flags.locked |= flags & MAP_LOCKED != 0;
        let kind = kind(start);
        let lock = vma_flags.locked && !vma_flags.lockonfault;
        if matches!(kind, VmaKind::Hugetlb(_)) {
            // Never locked, but populated as a lock asks (`mlock`).
            vma_flags.locked = false;
            vma_flags.lockonfault = false;
        }
        self.vmas
            .insert(Vma {
                start,
                end,
                prot,
                huge: HugeHint::Default,
                flags: vma_flags,
                kind,
            })
            .map_err(|_| ENOMEM)?;
        // As Linux: population is best effort (the mapping stands if memory runs out,
        // a later fault decides), and an inaccessible mapping is not populated.
        if lock || vma_flags.locked {
            let _ = self.populate_locked(start, end);
        } else if flags & MAP_POPULATE != 0 && (prot.read || prot.write || prot.exec) {
            let access = if prot.write {
                Access::Write
            } else {
                Access::Read
            };
            let _ = self.populate(start, end, access);
        }
        Ok(start)
    }

    /// Where a mapping of `len` bytes (page-aligned, non-zero) goes without MAP_FIXED:
    /// at the hint `addr` if that range is free, else the highest free range, 2 MiB
    /// aligned from 2 MiB on (mmap, mremap's move).
    pub(super) fn unmapped_area(&self, addr: u64, len: u64) -> Result<VirtAddr, Errno> {
        let align = if len >= PMD_SIZE as u64 {
            PMD_SIZE
        } else {
            PAGE_SIZE
        };
        let hint = VirtAddr(addr).align_down(PAGE_SIZE);
        let hint_ok = addr >= MMAP_MIN
            && hint
                .as_u64()
                .checked_add(len)
                .is_some_and(|e| e <= MMAP_BASE)
            && self.vmas.is_free(hint, hint.add(len as usize));
        if hint_ok {
            Ok(hint)
        } else {
            self.vmas
                .find_free(len as usize, align, VirtAddr(MMAP_BASE), VirtAddr(MMAP_MIN))
                .ok_or(ENOMEM)
        }
    }

    /// The VMA pieces of `[start, end)`, in order, and whether the range has a hole.
    /// Visits one piece at a time (no list is built): `f(mm, piece start, piece end,
    /// vma)` may change the VMAs; the walk resumes at the end of the piece.
    pub(super) fn for_each_piece(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        mut f: impl FnMut(&mut Self, VirtAddr, VirtAddr, Vma) -> Result<(), Errno>,
    ) -> Result<bool, Errno> {
        let mut at = start;
        let mut hole = false;
        while at < end {
            let next = self.vmas.next_from(at).cloned().filter(|v| v.start < end);
            let Some(vma) = next else {
                hole = true;
                break;
            };
            hole |= vma.start > at;
            let a = vma.start.max(at);
            let b = vma.end.min(end);
            f(self, a, b, vma)?;
            at = b;
        }
        Ok(hole)
    }

    /// Whether changing `[start, end)` may split VMAs: not past `MAX_MAP_COUNT`.
    fn may_split(&self) -> Result<(), Errno> {
        if self.vmas.len() + 2 > MAX_MAP_COUNT {
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// mprotect, with Linux's semantics: VMA by VMA from `start`; a hole stops it with
    /// ENOMEM (what came before stays changed). Each VMA piece changes all or nothing:
    /// the blocks its edges cut are split before the VMA or any entry changes.
    pub fn mprotect(&mut self, start: VirtAddr, end: VirtAddr, prot: VmProt) -> Result<(), Errno> {
        let mut at = start;
        while at < end {
            let vma = self.vmas.find(at).cloned().ok_or(ENOMEM)?;
            // A shared mapping of a write-sealed file may not become writable (Linux
            // cleared its VM_MAYWRITE at mmap: EACCES).
            let sealed = vma
                .file()
                .is_some_and(|m| m.shared && m.file.seals() & super::shmem::WRITE_SEALS != 0);
            if prot.write && sealed {
                return Err(EACCES);
            }
            let to = vma.end.min(end);
            self.hugetlb_check_cut(at, to)?;
            self.may_split()?;
            self.split_edges(at, to)?;
            self.vmas
                .protect(at, to, prot)
                .expect("the piece lies in one VMA");
            self.protect_entries(at, to, prot, vma.is_shared());
            at = to;
        }
        Ok(())
    }

    /// Give the entries of `[start, end)` (edges already split) the VMA protection
    /// `prot`, except that write goes only to pages exclusive to this address space:
    /// a shared page stays read-only and its next write fault reuses or copies it. A
    /// shared file mapping's pages are every mapper's to write (`filemap`).
    fn protect_entries(&mut self, start: VirtAddr, end: VirtAddr, prot: VmProt, shared: bool) {
        let ro = pte_attrs(VmProt {
            write: false,
            ..prot
        })
        .prot;
        let rw = pte_attrs(prot).prot;
        for (a, b) in batches_of(start, end, WIDE_BATCH_PAGES) {
            let r = if prot.write && shared {
                self.tables.protect(a, pages(a, b), rw)
            } else if prot.write {
                // Each leaf asks its folio: one read of the head for a folio accounted
                // whole (a 2 MiB block, a whole contiguous block).
                self.tables
                    .protect_exclusive(a, pages(a, b), ro, rw, folio::pages_exclusive)
            } else {
                self.tables.protect(a, pages(a, b), ro)
            };
            r.expect("edges split: a batch cuts no block");
        }
    }

    /// madvise, with Linux's semantics: advice applies to every mapped piece of the
    /// range and a hole then makes the call ENOMEM; MADV_POPULATE_* go in address
    /// order and stop at the first hole or failure. The range is page-aligned and
    /// non-empty, the advice known.
    pub fn madvise(&mut self, start: VirtAddr, end: VirtAddr, advice: u64) -> Result<(), Errno> {
        if let MADV_POPULATE_READ | MADV_POPULATE_WRITE = advice {
            return self.madvise_populate(start, end, advice == MADV_POPULATE_WRITE);
        }
        match advice {
            MADV_HUGEPAGE | MADV_NOHUGEPAGE => {
                self.may_split()?;
                self.hugetlb_check_cut(start, end)?;
            }
            MADV_DONTFORK | MADV_DOFORK | MADV_KEEPONFORK => self.hugetlb_check_cut(start, end)?,
            _ => {}
        }
        let hole = self.for_each_piece(start, end, |mm, a, b, vma| match advice {
            // Linux's madvise_dontneed_free_valid_vma and can_madv_lru_vma: a locked
            // VMA keeps its pages (`mlock`), MADV_DONTNEED_LOCKED aside.
            MADV_DONTNEED | MADV_FREE | MADV_PAGEOUT if vma.flags.locked => Err(EINVAL),
            // hugetlb pages go whole, and nowhere but back to their pool (`hugetlb`).
            MADV_DONTNEED | MADV_DONTNEED_LOCKED if vma.hugetlb().is_some() => {
                mm.hugetlb_dontneed(a, b, &vma)
            }
            MADV_FREE | MADV_PAGEOUT | MADV_COLLAPSE | MADV_WIPEONFORK
                if vma.hugetlb().is_some() =>
            {
                Err(EINVAL)
            }
            // Lazy free is for anonymous memory (Linux's madvise_free_single_vma); a
            // file's pages, without swap, have nowhere to be paged out to.
            MADV_FREE | MADV_COLLAPSE if vma.file().is_some() => Err(EINVAL),
            MADV_PAGEOUT if vma.file().is_some() => Ok(()),
            MADV_DONTNEED | MADV_DONTNEED_LOCKED => mm.unmap_pages(a, b),
            // Lazy free: the pages become clean and old, whole exclusive folios are
            // marked; until reclaim discards them they keep their contents, and a
            // write makes them dirty again (`lazyfree`).
            MADV_FREE => mm.lazyfree(a, b, vma.prot.write),
            // Reclaim now: without swap, only clean lazyfree folios can go.
            MADV_PAGEOUT => {
                mm.reclaim_lazyfree(a, b, vma.prot.write, Reach::Pageout);
                Ok(())
            }
            MADV_DONTFORK | MADV_DOFORK | MADV_WIPEONFORK | MADV_KEEPONFORK => {
                mm.madvise_fork(a, b, &vma, advice)
            }
            MADV_COLLAPSE => mm.madvise_collapse(a, b, &vma),
            MADV_HUGEPAGE | MADV_NOHUGEPAGE => {
                let hint = if advice == MADV_HUGEPAGE {
                    HugeHint::Huge
                } else {
                    HugeHint::NoHuge
                };
                mm.split_edges(a, b)?;
                mm.vmas
                    .set_huge(a, b, hint)
                    .expect("the piece lies in one VMA");
                Ok(())
            }
            _ => Ok(()),
        })?;
        if hole {
            Err(ENOMEM)
        } else {
            Ok(())
        }
    }

    /// MADV_POPULATE_READ / _WRITE: fault in `[start, end)` in address order. The
    /// access must be one the mapping allows (Linux's `check_vma_flags`: a read needs
    /// PROT_READ, which PROT_WRITE alone does not give), else EINVAL; a hole faults in
    /// what lies before it, then fails with ENOMEM.
    fn madvise_populate(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        write: bool,
    ) -> Result<(), Errno> {
        let errno = |e| match e {
            FaultError::Oom => ENOMEM,
            FaultError::Segv | FaultError::Bus | FaultError::Userfault(_) => EFAULT,
        };
        let refused = |v: &Vma| if write { !v.prot.write } else { !v.prot.read };
        let access = if write { Access::Write } else { Access::Read };
        if !self.vmas.covers(start, end) {
            let mut at = start;
            while let Some(v) = self.vmas.find(at).cloned() {
                if refused(&v) {
                    return Err(EINVAL);
                }
                let to = v.end.min(end);
                self.populate(at, to, access).map_err(errno)?;
                at = to;
            }
            return Err(ENOMEM);
        }
        if self
            .vmas
            .iter()
            .any(|v| v.start < end && start < v.end && refused(v))
        {
            return Err(EINVAL);
        }
        self.populate(start, end, access).map_err(errno)
    }

    /// mincore of one step: fills `out[i]` with whether page `start + i` is resident,
    /// for as many pages as `out` holds that lie in the VMA containing `start`, and
    /// returns how many it filled; ENOMEM if no VMA contains `start` (Linux walks a
    /// page of results at a time the same way).
    pub fn mincore(&self, start: VirtAddr, out: &mut [u8]) -> Result<usize, Errno> {
        let vma = self.vmas.find(start).ok_or(ENOMEM)?;
        let n = pages(start, vma.end).min(out.len());
        let end = start.add(n * PAGE_SIZE);
        let out = &mut out[..n];
        out.fill(0);
        self.tables.for_each_leaf(start, end, |va, leaf| {
            // A 2 MiB block is reported at its own start, which may lie before `start`.
            let size = if leaf.level == 2 {
                PMD_SIZE as u64
            } else {
                PAGE_SIZE as u64
            };
            let from = va.max(start).as_u64() - start.as_u64();
            let to = (va.as_u64() + size).min(end.as_u64()) - start.as_u64();
            out[from as usize / PAGE_SIZE..to as usize / PAGE_SIZE].fill(1);
        });
        Ok(n)
    }

    /// brk: move the end of the heap; returns the (possibly unchanged) break. A break
    /// below the heap's start, or past where mmap starts, is refused as Linux does.
    pub fn set_brk(&mut self, want: VirtAddr) -> VirtAddr {
        if want < self.brk_start || want.as_u64() > MMAP_BASE {
            return self.brk;
        }
        let old_end = self.brk.align_up(PAGE_SIZE);
        let new_end = want.align_up(PAGE_SIZE);
        if new_end > old_end {
            let heap = Vma {
                start: old_end,
                end: new_end,
                prot: VmProt {
                    read: true,
                    write: true,
                    exec: false,
                },
                huge: HugeHint::Default,
                flags: self.new_vma_flags().0,
                kind: VmaKind::Heap,
            };
            if self.vmas.len() >= MAX_MAP_COUNT || self.vmas.insert(heap).is_err() {
                return self.brk;
            }
            // mlockall(MCL_FUTURE): populated at once, failures ignored, as Linux's brk.
            if self.new_vma_flags().1 {
                let _ = self.populate_locked(old_end, new_end);
            }
        } else if new_end < old_end && self.munmap(new_end, old_end).is_err() {
            return self.brk;
        }
        self.brk = want;
        self.brk
    }
}
