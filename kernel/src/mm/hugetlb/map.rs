//! hugetlb mappings (`VmaKind::Hugetlb`): `mmap(MAP_HUGETLB | MAP_HUGE_<size>)`,
//! private or shared, with Linux's rules. Every hook of the ordinary paths is one check
//! of the VMA kind at their top (fault, munmap, mprotect, madvise, mremap, fork's
//! child), which lands here.
//!
//! - **mmap** rounds the length up to the page size, needs a MAP_FIXED address aligned
//!   to it (EINVAL), places the mapping aligned, and reserves its pages in the pool
//!   (ENOMEM there when the pool is short, as Linux's `hugetlb_reserve_pages`;
//!   MAP_NORESERVE reserves nothing). A private mapping's reservation is its
//!   [`ResvMap`], owned by the mapping process (fork's child owns none, as Linux's
//!   `HPAGE_RESV_OWNER`); a shared one's is its [`HugeFile`]'s.
//! - **A fault** maps the whole page: 64 KiB as one folded contiguous block, 2 MiB as
//!   one level-2 block, 32 MiB as one level-2 contiguous block (`pgtable::contpmd`).
//!   Every later operation on a 32 MiB page covers all of it, so its 16 entries change
//!   together: unmaps go in batches of a page (`map`'s `unmap_pages`), fork copies it
//!   whole ([`Mm::hugetlb_fork`]). A private page is an anonymous folio of the pool's
//!   (exclusive, accounted whole); a shared page is its file's, held by it. No page
//!   can be had (no reservation, the pool empty): SIGBUS, as Linux.
//! - **Copy on write** (a private page after fork; also a read pin's unshare and a
//!   debugger's write, through `cow`'s hook) reuses the page if it is exclusive or
//!   this mapping is its only one, else copies it whole into a page of the pool
//!   (SIGBUS if none). Fork gives the child a whole copy of a pinned page (`pin`'s
//!   rule 2, `fork`'s `copy_pinned` hook).
//! - **munmap, mprotect, MADV_DONTNEED** work on whole pages: a cut inside a page is
//!   EINVAL (Linux's `hugetlb_vm_op_split`); MADV_DONTNEED rounds its end down. Unmapped
//!   pages go back to the pool when their last mapping goes (`folio`'s free), an
//!   unmapped range's unused reservations at once.
//! - **A hugetlb memfd** (`memfd_create(MFD_HUGETLB)`) is a [`HugeFile`] as a shared
//!   mapping's is: fallocate makes its pages (`allocate`), read(2) reads them
//!   (`read_file`), a truncation or a punched hole unmaps them from every mapping
//!   (`Mm::hugetlb_unmap_file_range`). A private mapping of it maps the file's pages
//!   read-only and copies one on a write, into a page of its own reservation.
//! - **mremap**: a growth, or an address not aligned to the page size, is EINVAL as in
//!   Linux 6.12; a shrink unmaps the tail; a move is EINVAL here (Linux moves the
//!   entries): not built yet.

use alloc::sync::Arc;

use super::resv::{HugeFile, ResvMap};
use super::{pool, HugeSize};
use crate::mm::addr::CONT_PMD_SIZE;
use crate::mm::aspace::{Mm, MMAP_BASE, MMAP_MIN};
use crate::mm::folio::{self, Folio};
use crate::mm::install::{self, map_error, pte_attrs, release, FaultError};
use crate::mm::machine::MmMachine;
use crate::mm::vma::{HugeMap, Vma, VmaKind};
use crate::mm::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::*;

/// A new empty hugetlb file of pages of `size` (a memfd's, or a shared mapping's).
pub fn new_file(size: HugeSize) -> Arc<HugeFile> {
    Arc::new(HugeFile::new(size, put_file_page))
}

/// What a hugetlb mapping maps: new memory of pages of a size (`MAP_ANONYMOUS|
/// MAP_HUGETLB`), or a hugetlb file from a byte offset (a `MFD_HUGETLB` memfd).
pub enum HugeSource {
    Anon(HugeSize),
    File(Arc<HugeFile>, u64),
}

/// Read `file` from byte `pos` into `buf` (a hugetlb memfd's read): a hole reads as
/// zeros, nothing past the end; returns the bytes read.
pub fn read_file<E: MmMachine>(env: &E, file: &HugeFile, pos: u64, buf: &mut [u8]) -> usize {
    let len = file.length();
    let n = len.saturating_sub(pos).min(buf.len() as u64) as usize;
    let bytes = file.page_size().bytes();
    let mut done = 0;
    while done < n {
        let at = pos as usize + done;
        // A 4 KiB page at a time: what `read_page` reads at most.
        let k = (PAGE_SIZE - at % PAGE_SIZE).min(n - done);
        match file.get(at / bytes) {
            Some(head) => env.read_page(head.add(at % bytes), &mut buf[done..done + k]),
            None => buf[done..done + k].fill(0),
        }
        done += k;
    }
    n
}

/// fallocate of `[offset, offset + len)` of a hugetlb file: every page the range
/// touches is made (zeroed, from its reservation if it has one); without `keep_size`
/// the file grows to `offset + len` (Linux's `hugetlbfs_fallocate`). ENOSPC when the
/// pool has no page left (the pages made so far stay).
pub fn allocate<E: MmMachine>(
    env: &E,
    file: &HugeFile,
    offset: u64,
    len: u64,
    keep_size: bool,
) -> Result<(), Errno> {
    let bytes = file.page_size().bytes() as u64;
    let end = offset.checked_add(len).ok_or(EFBIG)?;
    let n = bytes as usize / PAGE_SIZE;
    for index in offset / bytes..end.div_ceil(bytes) {
        let made = |head| {
            env.zero_pages(head, n);
            Folio::lock(folio::adopt_hugetlb(head, true).head()).set_cached(true);
        };
        file.page(index as usize, made).ok_or(ENOSPC)?;
    }
    if !keep_size && end > file.length() {
        drop(file.set_len(end));
    }
    Ok(())
}

/// A file lets go of its page at `head` (`HugeFile`'s drop, a truncation): the
/// cache's reference, the last one once nothing maps the page.
fn put_file_page(head: PhysAddr) {
    let locked = Folio::lock(head);
    locked.set_cached(false);
    let _ = locked.put(1);
}

/// The size in the MAP_HUGE_SHIFT bits of mmap's flags (the default size if 0);
/// `None` (EINVAL) for a size without a pool.
pub fn size_of_flags(flags: u64) -> Option<HugeSize> {
    match (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK {
        0 => Some(super::default_size()),
        log if log < 64 => super::size_of_bytes(1 << log),
        _ => None,
    }
}

/// Whether `va` lies on a page boundary of the hugetlb VMA around it (true if there is
/// none): where a VMA may be cut.
fn on_boundary<E: MmMachine>(mm: &Mm<E>, va: VirtAddr) -> bool {
    mm.vmas
        .find(va)
        .and_then(Vma::hugetlb)
        .is_none_or(|h| va.is_aligned(h.size.bytes()))
}

/// The page around `va` is not mapped: the file's (shared), or in a private mapping
/// the file's page read-only if the file has one (a write then copies it, `cow`),
/// else a new page of the mapping's own (Linux's `hugetlb_no_page`). Past the file's
/// end: SIGBUS. Also a debugger's access (`access_forced`).
pub(in crate::mm) fn missing<E: MmMachine>(
    mm: &mut Mm<E>,
    va: VirtAddr,
    vma: &Vma,
    write: bool,
) -> Result<(), FaultError> {
    let h = vma.hugetlb().expect("a hugetlb VMA");
    let base = va.align_down(h.size.bytes());
    let n = h.size.bytes() / PAGE_SIZE;
    let index = (base.as_u64().wrapping_sub(h.origin) as usize) / h.size.bytes();
    let cached = match &h.file {
        Some(file) if index as u64 >= file.length() / h.size.bytes() as u64 => {
            return Err(FaultError::Bus);
        }
        Some(file) if h.shared => {
            let env = mm.env();
            let made = |head| {
                env.zero_pages(head, n);
                Folio::lock(folio::adopt_hugetlb(head, true).head()).set_cached(true);
            };
            Some(file.page(index, made).ok_or(FaultError::Bus)?)
        }
        Some(file) => file.get(index),
        None => None,
    };
    let Some(head) = cached else {
        let reserved = h.resv.as_ref().is_some_and(|r| r.consume(base));
        let head = pool(h.size).take(reserved).ok_or(FaultError::Bus)?;
        mm.env().zero_pages(head, n);
        return install::map_folio(mm, base, folio::adopt_hugetlb(head, false), vma.prot, write);
    };
    // A private mapping maps the file's page read-only until a write copies it.
    let prot = crate::mm::vma::VmProt {
        write: vma.prot.write && h.shared,
        ..vma.prot
    };
    let dirty = write && prot.write;
    install::map_run(mm, base, head, n, pte_attrs(prot), dirty).map_err(map_error)?;
    Folio::lock(head).map(0, n);
    install::dirty_block(mm, base, n, dirty)?;
    if write && !h.shared {
        return cow(mm, va, head, vma);
    }
    Ok(())
}

/// A write to the private page around `va` (frame `pa` inside it) that fork
/// shared (or a debugger's, `access_forced`): reuse it if this is its only
/// mapping, else copy it whole into a pool page; writable where the VMA is.
pub(in crate::mm) fn cow<E: MmMachine>(
    mm: &mut Mm<E>,
    va: VirtAddr,
    pa: PhysAddr,
    vma: &Vma,
) -> Result<(), FaultError> {
    let h = vma.hugetlb().expect("a hugetlb VMA");
    let base = va.align_down(h.size.bytes());
    let n = h.size.bytes() / PAGE_SIZE;
    let f = Folio::lock(pa);
    let old = f.head();
    // Exclusive already (a pinned page fork left this side's), or no one else's; a
    // file's page is the file's, never taken over.
    if !f.is_file() && (f.all_exclusive() || f.mapped_exactly_once()) {
        f.set_exclusive(0, n, true);
        drop(f);
        if vma.prot.write {
            mm.tables.make_writable(base, n).map_err(map_error)?;
        }
        return Ok(());
    }
    drop(f);
    // The first copy of a page of the owner's private mapping takes its reservation.
    let reserved = h.resv.as_ref().is_some_and(|r| r.consume(base));
    let head = pool(h.size).take(reserved).ok_or(FaultError::Bus)?;
    mm.env().copy_pages(old, head, n);
    let new = folio::adopt_hugetlb(head, false);
    install::unmap_for(mm, base, n, new)?;
    install::map_folio(mm, base, new, vma.prot, true)
}

impl<E: MmMachine> Mm<E> {
    /// mmap of a hugetlb mapping of pages of `size` (module doc); returns the start.
    pub fn mmap_hugetlb(
        &mut self,
        addr: u64,
        len: u64,
        prot: crate::mm::vma::VmProt,
        flags: u64,
        shared: bool,
        source: HugeSource,
    ) -> Result<VirtAddr, Errno> {
        let (size, file) = match source {
            HugeSource::Anon(size) => (size, None),
            HugeSource::File(file, off) => (file.page_size(), Some((file, off))),
        };
        let bytes = size.bytes() as u64;
        let len = len.checked_next_multiple_of(bytes).ok_or(ENOMEM)?;
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let offset = file.as_ref().map_or(0, |(_, off)| *off);
        if (fixed && !addr.is_multiple_of(bytes)) || !offset.is_multiple_of(bytes) {
            return Err(EINVAL);
        }
        let pages = (len / bytes) as usize;
        let noreserve = flags & MAP_NORESERVE != 0;
        // From here the file or the map owns the reservation: dropped on a failure,
        // it gives it back.
        let (file, resv) = if shared {
            let file = match file {
                Some((file, _)) => file,
                None => {
                    // Shared anonymous memory: a file of the mapping's length.
                    let file = new_file(size);
                    drop(file.set_len(len));
                    file
                }
            };
            if !noreserve {
                file.reserve((offset / bytes) as usize, pages)?;
            }
            (Some(file), None)
        } else {
            pool(size).reserve(if noreserve { 0 } else { pages })?;
            let reserved = if noreserve { 0 } else { pages };
            (
                file.map(|(f, _)| f),
                Some(Arc::new(ResvMap::new(size, reserved))),
            )
        };
        let start = if fixed {
            addr
        } else {
            self.hugetlb_place(addr, len, size)?
        };
        let flags = if fixed {
            flags
        } else {
            flags | MAP_FIXED_NOREPLACE
        };
        self.mmap_kind(start, len, prot, flags, |start| {
            VmaKind::Hugetlb(HugeMap {
                size,
                file,
                shared,
                origin: start.as_u64().wrapping_sub(offset),
                resv,
            })
        })
    }

    /// Where a hugetlb mapping of `len` bytes of pages of `size` goes without MAP_FIXED:
    /// at the hint `addr` if it is aligned and free, else the highest free aligned
    /// range below the mmap base.
    fn hugetlb_place(&self, addr: u64, len: u64, size: HugeSize) -> Result<u64, Errno> {
        let hint = VirtAddr(addr);
        let free = addr >= MMAP_MIN
            && hint.is_aligned(size.bytes())
            && addr.checked_add(len).is_some_and(|e| e <= MMAP_BASE)
            && self.vmas.is_free(hint, hint.add(len as usize));
        if free {
            return Ok(addr);
        }
        let base = VirtAddr(MMAP_BASE);
        let found = self
            .vmas
            .find_free(len as usize, size.bytes(), base, VirtAddr(MMAP_MIN));
        Ok(found.ok_or(ENOMEM)?.as_u64())
    }

    /// fork's copy of the private hugetlb VMA `vma` of 32 MiB pages into `child`: each
    /// page mapped here is write-protected, then mapped read-only in the child as one
    /// level-2 contiguous block and shared whole (the generic copy goes 2 MiB at a
    /// time, which would share a 32 MiB folio a part at a time). A pinned page stays
    /// this side's, and the child gets a copy from the pool (`pin`, rule 2).
    pub(in crate::mm) fn hugetlb_fork(
        &mut self,
        child: &mut Mm<E>,
        vma: &Vma,
    ) -> Result<(), Errno> {
        let size = CONT_PMD_SIZE;
        let attrs = pte_attrs(crate::mm::vma::VmProt {
            write: false,
            ..vma.prot
        });
        let mut base = vma.start;
        while base < vma.end {
            if let Some(leaf) = self.tables.get(base) {
                let head = leaf.pa_of(base);
                if Folio::of(head).is_pinned() {
                    child
                        .hugetlb_copy_into(base, head, vma)
                        .map_err(|_| ENOMEM)?;
                } else {
                    self.tables
                        .wrprotect(base, size / PAGE_SIZE)
                        .map_err(|_| ENOMEM)?;
                    child
                        .tables
                        .map_l2c(base, head, attrs)
                        .map_err(|_| ENOMEM)?;
                    Folio::lock(head).share(0, size / PAGE_SIZE);
                }
            }
            base = base.add(size);
        }
        Ok(())
    }

    /// fork's copies for the child (this address space) of the pinned pages of
    /// `[start, end)` in the private hugetlb VMA `vma`, which fork shared: each is
    /// replaced by a whole copy from the pool (Linux's `copy_hugetlb_page_range` when
    /// `folio_maybe_dma_pinned`); out of memory when the pool has none.
    pub(in crate::mm) fn hugetlb_copy_pinned(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        vma: &Vma,
    ) -> Result<(), FaultError> {
        let size = vma.hugetlb().expect("a hugetlb VMA").size.bytes();
        let mut base = start.align_down(size);
        while base < end {
            if let Some(leaf) = self.tables.get(base) {
                let head = leaf.pa_of(base);
                if Folio::of(head).is_pinned() {
                    let records = self
                        .tables
                        .unmap(base, size / PAGE_SIZE)
                        .map_err(map_error)?;
                    release(records);
                    self.hugetlb_copy_into(base, head, vma)?;
                }
            }
            base = base.add(size);
        }
        Ok(())
    }

    /// Map at `base` (unmapped) a copy of the hugetlb page at `head`, from the pool:
    /// this address space's own, exclusive.
    fn hugetlb_copy_into(
        &mut self,
        base: VirtAddr,
        head: PhysAddr,
        vma: &Vma,
    ) -> Result<(), FaultError> {
        let size = vma.hugetlb().expect("a hugetlb VMA").size;
        let new = pool(size).take(false).ok_or(FaultError::Oom)?;
        self.env().copy_pages(head, new, size.bytes() / PAGE_SIZE);
        install::map_folio(
            self,
            base,
            folio::adopt_hugetlb(new, false),
            vma.prot,
            false,
        )
    }

    /// munmap's and mprotect's check: EINVAL if `start` or `end` cuts a hugetlb page.
    pub(in crate::mm) fn hugetlb_check_cut(
        &self,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), Errno> {
        if on_boundary(self, start) && on_boundary(self, end) {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }

    /// munmap of `[start, end)` (cuts checked): the private reservations of the pages
    /// there that never faulted in go back to the pool. Only the VMAs of the range are
    /// visited, so munmap's cost stays what is there.
    pub(in crate::mm) fn hugetlb_unreserve(&self, start: VirtAddr, end: VirtAddr) {
        let mut at = start;
        while let Some(v) = self.vmas.next_from(at).filter(|v| v.start < end) {
            if let Some(r) = v.hugetlb().and_then(|h| h.resv.as_ref()) {
                r.release(v.start.max(start), v.end.min(end));
            }
            at = v.end;
        }
    }

    /// Unmap every page of this address space mapped from bytes `[from, to)` of the
    /// hugetlb `file` (a truncation, a punched hole), in shared and private mappings
    /// of it alike, private copies too (Linux's `hugetlb_vmdelete_list` zaps the range
    /// whole). `from` and `to` are multiples of its page size. The caller holds this
    /// `Mm`'s lock (lock table L2) and no other.
    pub fn hugetlb_unmap_file_range(
        &mut self,
        file: &Arc<HugeFile>,
        from: u64,
        to: u64,
    ) -> Result<(), Errno> {
        let mut at = VirtAddr(0);
        while let Some(v) = self.vmas.next_from(at).cloned() {
            at = v.end;
            let Some(h) = v.hugetlb() else { continue };
            if !h.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, file)) {
                continue;
            }
            // The file offsets the VMA maps: from that of its start.
            let first = v.start.as_u64().wrapping_sub(h.origin);
            let last = first + (v.end.offset_from(v.start) as u64);
            let (a, b) = (from.max(first), to.min(last));
            if a < b {
                let start = v.start.add((a - first) as usize);
                self.unmap_pages(start, start.add((b - a) as usize))?;
            }
        }
        Ok(())
    }

    /// MADV_DONTNEED of `[start, end)` in the hugetlb VMA `vma`: the start aligned
    /// (EINVAL otherwise), the end rounded down to the page size, so that a caller
    /// unaware of the page size loses no data (Linux 6.12's
    /// `madvise_dontneed_free_valid_vma`): less than a page is nothing.
    pub(in crate::mm) fn hugetlb_dontneed(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        vma: &Vma,
    ) -> Result<(), Errno> {
        let h = vma.hugetlb().expect("a hugetlb VMA");
        if !start.is_aligned(h.size.bytes()) {
            return Err(EINVAL);
        }
        let end = end.align_down(h.size.bytes());
        if end <= start {
            return Ok(());
        }
        self.unmap_pages(start, end)
    }

    /// mremap of the hugetlb mapping at `addr` (module doc).
    pub(in crate::mm) fn hugetlb_mremap(
        &mut self,
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
        size: HugeSize,
    ) -> Result<VirtAddr, Errno> {
        let bytes = size.bytes() as u64;
        let old_len = old_len.checked_next_multiple_of(bytes).ok_or(EINVAL)?;
        let new_len = new_len.checked_next_multiple_of(bytes).ok_or(EINVAL)?;
        let fixed = flags & MREMAP_FIXED != 0;
        if !addr.is_multiple_of(bytes) || (fixed && !new_addr.is_multiple_of(bytes)) {
            return Err(EINVAL);
        }
        if new_len > old_len || fixed || flags & MREMAP_DONTUNMAP != 0 {
            return Err(EINVAL);
        }
        if new_len < old_len {
            // The tail as munmap takes it: within the user address space.
            let end = addr
                .checked_add(old_len)
                .filter(|&e| e <= crate::mm::aspace::STACK_TOP)
                .ok_or(EINVAL)?;
            self.munmap(VirtAddr(addr + new_len), VirtAddr(end))?;
        }
        Ok(VirtAddr(addr))
    }
}
