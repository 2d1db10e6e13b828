//! mremap with Linux 6.12's semantics and errors (`mm/mremap.c`): shrink in place (an
//! unmap of the tail), grow in place when the range after the VMA is free (the VMA is
//! extended and merged as Linux's `vma_merge_extend` does), or move with
//! `MREMAP_MAYMOVE`, to a fixed address with `MREMAP_FIXED` (whatever is mapped there
//! is unmapped first), or leaving the source as an empty VMA with `MREMAP_DONTUNMAP`.
//! The source must lie in one VMA (else EFAULT), except for a pure move
//! (`MREMAP_FIXED` with the same length), which since Linux 6.17 moves every VMA of
//! the range, the holes between them kept (`remap_move`).
//!
//! A move works in 2 MiB batches of the source. Where the destination keeps the offset
//! inside 2 MiB, runs of whole regions move by their level-2 entries, up to 32 in one
//! page-table operation (`PageTable::move_tables`): a level-3 table as one entry
//! (Linux's `move_normal_pmd`), a 2 MiB block as one entry (`move_huge_pmd`). Every
//! other batch is one operation (`PageTable::move_range`): folded 64 KiB blocks
//! move as blocks where the destination keeps their offset inside 64 KiB, every other
//! entry moves as a plain entry of the same folio; no folio is
//! split, no map count or reference changes (the mappings move, they are not made
//! again). What records an address follows the whole move by its range, without
//! per-folio work: the lazyfree reverse map (`lazyfree::follow_range`, which asks for
//! the moved marked folios to be listed only while a reclaim pass holds entries) and
//! the collapse hints (`collapse::follow_move`); the deferred-split queue and the
//! audit name no address.
//! A batch that cannot get a destination table fails before changing anything; the
//! batches moved before it are moved back (their source tables were kept, so that
//! needs none) and the call fails with ENOMEM, the mapping as it was.

use alloc::vec::Vec;

use super::addr::PMD_SIZE;
use super::aspace::{Mm, STACK_TOP};
use super::batch::{batches, pages};
use super::folio::Folio;
use super::lazyfree;
use super::machine::MmMachine;
use super::pgtable::{entry_size, MoveBuf, USER_VA_END};
use super::vma::{Vma, VmaFlags, MAX_MAP_COUNT};
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::{Errno, EFAULT, EINVAL, ENOMEM, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE};

const PAGE: u64 = PAGE_SIZE as u64;
/// Linux's TASK_SIZE: the end of the user address space.
const TASK_SIZE: u64 = USER_VA_END.0;

/// Linux's PAGE_ALIGN: wraps to 0 past the top, as in C.
fn page_align(len: u64) -> u64 {
    len.wrapping_add(PAGE - 1) & !(PAGE - 1)
}

impl<E: MmMachine> Mm<E> {
    /// mremap(addr, old_len, new_len, flags, new_addr): the new address, or Linux's
    /// errno, the checks in Linux 6.12's order.
    pub fn mremap(
        &mut self,
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> Result<VirtAddr, Errno> {
        if flags & !(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP) != 0 {
            return Err(EINVAL);
        }
        let may_move = flags & MREMAP_MAYMOVE != 0;
        if flags & MREMAP_FIXED != 0 && !may_move {
            return Err(EINVAL);
        }
        let dontunmap = flags & MREMAP_DONTUNMAP != 0;
        if dontunmap && (!may_move || old_len != new_len) {
            return Err(EINVAL);
        }
        if !addr.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        let (old_len, new_len) = (page_align(old_len), page_align(new_len));
        if new_len == 0 {
            return Err(EINVAL);
        }
        let Some(vma) = self.vmas.find(VirtAddr(addr)) else {
            return Err(EFAULT);
        };
        if let Some(size) = vma.hugetlb().map(|h| h.size) {
            return self.hugetlb_mremap(addr, old_len, new_len, flags, new_addr, size);
        }
        if flags & MREMAP_FIXED != 0 && old_len == new_len {
            return self.remap_move(addr, old_len, new_addr, flags);
        }
        if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
            return self.mremap_to(addr, old_len, new_addr, new_len, flags);
        }
        if old_len >= new_len {
            // Always allowed, whatever lies in the range: an unmap of the tail.
            if old_len > new_len {
                self.shrink(addr, old_len, new_len)?;
            }
            return Ok(VirtAddr(addr));
        }
        let vma = self.vma_to_resize(addr, old_len, new_len)?;
        let delta = new_len - old_len;
        if old_len == vma.end.as_u64() - addr && self.expandable(&vma, delta) {
            let grown = Vma {
                start: vma.end,
                end: vma.end.add(delta as usize),
                ..vma
            };
            self.vmas.insert(grown).map_err(|_| ENOMEM)?;
            return Ok(VirtAddr(addr));
        }
        if !may_move {
            return Err(ENOMEM);
        }
        let to = self.unmapped_area(0, new_len)?;
        self.move_vma(vma, VirtAddr(addr), old_len, to, new_len, false)
    }

    /// The part of mremap with a destination given (MREMAP_FIXED, MREMAP_DONTUNMAP):
    /// Linux 6.12's `mremap_to`.
    fn mremap_to(
        &mut self,
        addr: u64,
        old_len: u64,
        new_addr: u64,
        new_len: u64,
        flags: u64,
    ) -> Result<VirtAddr, Errno> {
        self.check_destination(addr, old_len, new_addr, new_len)?;
        let fixed = flags & MREMAP_FIXED != 0;
        if fixed {
            self.munmap(VirtAddr(new_addr), VirtAddr(new_addr + new_len))?;
        }
        let mut old_len = old_len;
        if old_len > new_len {
            self.shrink(addr, old_len, new_len)?;
            old_len = new_len;
        }
        let vma = self.vma_to_resize(addr, old_len, new_len)?;
        let to = if fixed {
            VirtAddr(new_addr)
        } else {
            self.unmapped_area(new_addr, new_len)?
        };
        self.move_vma(
            vma,
            VirtAddr(addr),
            old_len,
            to,
            new_len,
            flags & MREMAP_DONTUNMAP != 0,
        )
    }

    /// The checks of a given destination (Linux's `check_mremap_params` for one, and
    /// the VMA count `mremap_to` checks before it unmaps anything).
    fn check_destination(
        &self,
        addr: u64,
        old_len: u64,
        new_addr: u64,
        new_len: u64,
    ) -> Result<(), Errno> {
        if !new_addr.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        if new_len > TASK_SIZE || new_addr > TASK_SIZE - new_len {
            return Err(EINVAL);
        }
        // Overlap, computed as Linux does (an old range past the top wraps).
        if addr.wrapping_add(old_len) > new_addr && new_addr + new_len > addr {
            return Err(EINVAL);
        }
        if self.vmas.len() + 2 >= MAX_MAP_COUNT - 3 {
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// A pure move (MREMAP_FIXED, the same length; Linux 6.17's `remap_move`): every
    /// VMA piece of `[addr, addr + len)` moves to the same offset from `new_addr`, one
    /// piece at a time as `mremap_to` moves one VMA. The holes between the pieces are
    /// kept, and so is whatever is mapped at their images (only each piece's own
    /// destination is unmapped first); a hole at the end is no error. A piece that
    /// fails stops the call with its error, the pieces before it moved. `mremap`
    /// found a VMA at `addr`, so the range starts with a piece. Linux refuses (EFAULT)
    /// to move several VMAs when one is registered with userfaultfd (`vma_multi_allowed`:
    /// the event it would send needs the lock dropped): at the first piece if more
    /// follow, at a later one after those before it moved. (Its other refusal, a file
    /// with its own `get_unmapped_area`, has no case here.)
    fn remap_move(
        &mut self,
        addr: u64,
        len: u64,
        new_addr: u64,
        flags: u64,
    ) -> Result<VirtAddr, Errno> {
        self.check_destination(addr, len, new_addr, len)?;
        let (start, end) = (VirtAddr(addr), VirtAddr(addr + len));
        let dontunmap = flags & MREMAP_DONTUNMAP != 0;
        self.for_each_piece(start, end, |mm, a, b, vma| {
            // Linux moves a hugetlb piece aligned to its page size (`align_hugetlb`:
            // EINVAL off a page boundary); moving hugetlb entries is not built here
            // (`hugetlb::map`), so it is EINVAL, after the pieces before it moved.
            if vma.hugetlb().is_some() {
                return Err(EINVAL);
            }
            if vma.flags.userfault.is_some() && (a != start || vma.end < end) {
                return Err(EFAULT);
            }
            let to = VirtAddr(new_addr).add(a.offset_from(start));
            let piece = b.offset_from(a) as u64;
            mm.munmap(to, to.add(piece as usize))?;
            let vma = mm.vma_to_resize(a.as_u64(), piece, piece)?;
            mm.move_vma(vma, a, piece, to, piece, dontunmap).map(|_| ())
        })?;
        Ok(VirtAddr(new_addr))
    }

    /// Unmap `[addr + new_len, addr + old_len)` (Linux's `do_vmi_munmap` checks).
    fn shrink(&mut self, addr: u64, old_len: u64, new_len: u64) -> Result<(), Errno> {
        let start = addr + new_len;
        let len = old_len - new_len;
        if start > TASK_SIZE || len > TASK_SIZE - start {
            return Err(EINVAL);
        }
        self.munmap(VirtAddr(start), VirtAddr(start + len))
    }

    /// Linux 6.12's `vma_to_resize`: the VMA of `addr`, if `[addr, addr + old_len)`
    /// lies in it and may become `new_len` bytes.
    fn vma_to_resize(&self, addr: u64, old_len: u64, new_len: u64) -> Result<Vma, Errno> {
        let vma = self.vmas.find(VirtAddr(addr)).cloned().ok_or(EFAULT)?;
        // A zero old_len duplicates a shared mapping; a private one cannot be.
        if old_len == 0 {
            return Err(EINVAL);
        }
        if old_len > vma.end.as_u64() - addr {
            return Err(EFAULT);
        }
        let pgoff = (addr - vma.start.as_u64()) / PAGE;
        if pgoff.checked_add(new_len / PAGE).is_none() {
            return Err(EINVAL);
        }
        Ok(vma)
    }

    /// Whether `vma` can grow by `delta` bytes where it is (Linux's `vma_expandable`).
    fn expandable(&self, vma: &Vma, delta: u64) -> bool {
        vma.end
            .as_u64()
            .checked_add(delta)
            .filter(|&end| end <= STACK_TOP)
            .is_some_and(|end| self.vmas.is_free(vma.end, VirtAddr(end)))
    }

    /// Linux's `move_vma`: a VMA like `vma` at `[to, to + new_len)`, the pages of
    /// `[from, from + old_len)` moved there, the source unmapped (or, with
    /// `dontunmap`, left as an empty VMA).
    fn move_vma(
        &mut self,
        vma: Vma,
        from: VirtAddr,
        old_len: u64,
        to: VirtAddr,
        new_len: u64,
        dontunmap: bool,
    ) -> Result<VirtAddr, Errno> {
        if self.vmas.len() >= MAX_MAP_COUNT - 3 {
            return Err(ENOMEM);
        }
        let from_end = from.add(old_len as usize);
        self.split_edges(from, from_end)?;
        let kind = vma.kind.moved(to.as_u64().wrapping_sub(from.as_u64()));
        // The moved VMA is not registered with userfaultfd: without
        // UFFD_FEATURE_EVENT_REMAP Linux drops the context (`mremap_userfaultfd_prep`).
        let flags = VmaFlags {
            userfault: None,
            ..vma.flags
        };
        self.vmas
            .insert(Vma {
                start: to,
                end: to.add(new_len as usize),
                kind,
                flags,
                ..vma
            })
            .map_err(|_| ENOMEM)?;
        if let Err(e) = self.move_pages(from, from_end, to) {
            self.vmas.remove(to, to.add(new_len as usize));
            return Err(e);
        }
        // The source's emptied tables go, including the ones above a moved level-3
        // table, which the unmap below would not visit (it finds a hole there).
        self.tables.free_empty_tables(from, pages(from, from_end));
        if !dontunmap {
            self.munmap(from, from_end)
                .expect("the range's blocks are split and its pages gone");
        }
        Ok(to)
    }

    /// The page-table part of a move: batch by batch, and back again on failure.
    fn move_pages(
        &mut self,
        from: VirtAddr,
        from_end: VirtAddr,
        to: VirtAddr,
    ) -> Result<(), Errno> {
        let image = |va: VirtAddr| to.add(va.offset_from(from));
        // 2 MiB batches of the source, holes skipped whole (`next_populated`); runs of
        // whole level-3 tables, where the destination keeps the offset inside 2 MiB,
        // many in one operation.
        let mut buf = MoveBuf::default();
        let mut a = self.tables.next_populated(from, from_end);
        while let Some((_, b)) = batches(a, from_end).next() {
            let regions = from_end.offset_from(a) / PMD_SIZE;
            if a.is_aligned(PMD_SIZE) && image(a).is_aligned(PMD_SIZE) && regions > 0 {
                let moved = self.tables.move_tables(a, image(a), regions);
                if moved > 0 {
                    a = self
                        .tables
                        .next_populated(a.add(moved * PMD_SIZE), from_end);
                    continue;
                }
            }
            if self
                .tables
                .move_range(a, image(a), pages(a, b), &mut buf)
                .is_err()
            {
                // Back, in batches of the destination, each within a 2 MiB region
                // there: the source kept its tables, so this allocates nothing.
                let done_end = image(a);
                for (x, y) in batches(to, done_end) {
                    let back = from.add(x.offset_from(to));
                    self.tables
                        .move_range(x, back, pages(x, y), &mut buf)
                        .expect("moving back needs no table");
                }
                if to < done_end {
                    self.tables.free_empty_tables(to, pages(to, done_end));
                }
                return Err(ENOMEM);
            }
            a = self.tables.next_populated(b, from_end);
        }
        super::collapse::follow_move(self, from, from_end, to);
        let owner = self.tables.root();
        if lazyfree::follow_range(owner, from, from_end, to) {
            let to_end = image(from_end);
            for (a, b) in batches(to, to_end) {
                lazyfree::list_missing(owner, &mut self.marked_heads(a, b));
            }
        }
        Ok(())
    }

    /// The marked folios whose first page is mapped in `[a, b)` (within one 2 MiB
    /// region): (head, address of the first page).
    fn marked_heads(&self, a: VirtAddr, b: VirtAddr) -> Vec<(PhysAddr, VirtAddr)> {
        let mut heads = Vec::new();
        let mut va = a;
        while va < b {
            let leaf = self.tables.get(va);
            let step = leaf.map_or(PAGE_SIZE, |l| entry_size(l.level));
            // The zero pages are no folios (`zero`): nothing of theirs is listed.
            if let Some(pa) = leaf.map(|l| l.pa_of(va)).filter(|&pa| !zero::is_zero(pa)) {
                let f = Folio::of(pa);
                if f.head() == pa && f.is_lazyfree() {
                    heads.push((pa, va));
                }
            }
            va = va.align_down(step).add(step).min(b);
        }
        heads
    }
}
