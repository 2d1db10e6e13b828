//! A user address space (`Mm`): its page tables, its VMAs and its heap (brk).
//!
//! Anonymous memory is faulted in as folios: of the mTHP orders the policy allows for
//! the VMA (`mthp`), the largest whose aligned range lies in the VMA and is entirely
//! unmapped, falling back one order at a time when allocation fails; a folio is mapped
//! with one batched call (contiguous blocks from 64 KiB up, a PMD block for 2 MiB).
//! Every page-table entry holds one reference and one map count on its page's folio.
//!
//! fork shares every folio read-only (one batched write-protect per VMA: contiguous
//! blocks stay folded, PMD blocks stay PMD blocks). A write fault on a shared folio
//! then (1) takes the whole folio over when this mapping is the only one left: one
//! batched make-writable, no copy, no split; or (2) copies: the faulting 4 KiB page
//! (the old folio is left partially mapped and queued for deferred split), or, with
//! `cow=folio`, the whole folio into a new one of the same order.
//!
//! Invariants every operation keeps (the audit checks them in test builds):
//! - *Who may write a page*: an entry is writable (or DBM) only if it maps a page
//!   that is anon-exclusive to this address space. fork clears exclusivity, so
//!   nothing but the write fault (reuse or copy) makes a shared page writable again;
//!   mprotect grants write only to exclusive pages (Linux: `can_change_pte_writable`).
//! - *Blocks and VMAs agree*: no 2 MiB block straddles a VMA boundary. Every VMA
//!   split (mprotect, madvise, munmap, mmap over a part) splits a block cut by the new
//!   edge first, and fails before changing anything if that needs a table it cannot get.
//! - *Bounded kernel memory*: no operation allocates kernel memory in proportion to a
//!   user range. Ranges are worked in 2 MiB batches (`batches`), so an unmap collects
//!   at most 512 records whatever its length; VMAs are capped at `MAX_MAP_COUNT`.
//!
//! Locking: the owning process's `Mm` lock is held for every call here; nothing here
//! touches user memory through user addresses (uaccess happens outside the lock).
//! Folio counts change only under the folio lock (`folio`'s protocol); a page this
//! address space maps pins its folio, and its anon-exclusive flag changes only under
//! the lock of an address space that maps it.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, Ordering};

use super::folio::{self, Folio};
use super::mthp;
use super::pgtable::{FaultFix, MapError, Prot, PteAttrs, Unmapped};
use super::ptenv::UserTables;
use super::vma::{HugeHint, VmProt, Vma, VmaKind, VmaSet, MAX_MAP_COUNT};
use super::{phys_to_virt, MemType, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::syscall::abi::*;

/// Top of the initial stack, and its reserved size.
pub const STACK_TOP: u64 = 0x0000_ffff_f000_0000;
pub const STACK_SIZE: u64 = 8 << 20;
/// mmap searches downwards from here (below the stack and a gap).
pub const MMAP_BASE: u64 = STACK_TOP - STACK_SIZE - (256 << 20);
/// Lowest address mmap hands out (the first 64 KiB stay unmapped: NULL dereferences).
pub const MMAP_MIN: u64 = 0x1_0000;
const PMD: u64 = 2 << 20;
/// Pages per batch of range work (2 MiB, aligned): bounds what one step collects.
const BATCH_PAGES: usize = 512;

/// Which access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No VMA, or the VMA does not allow the access: SIGSEGV.
    Segv,
    /// No memory for the page or its tables.
    Oom,
}

pub use crate::syscall::Errno;

pub struct Mm {
    pub tables: UserTables,
    pub vmas: VmaSet,
    pub brk_start: VirtAddr,
    pub brk: VirtAddr,
}

fn pte_attrs(prot: VmProt) -> PteAttrs {
    // PROT_NONE pages stay mapped (their contents survive) but only for EL1.
    let prot = if prot.read || prot.write || prot.exec {
        Prot::user(prot.write, prot.exec)
    } else {
        Prot {
            write: false,
            exec: false,
            user: false,
        }
    };
    PteAttrs {
        prot,
        mem: MemType::Normal,
    }
}

fn pages(start: VirtAddr, end: VirtAddr) -> usize {
    ((end.as_u64() - start.as_u64()) / PAGE_SIZE as u64) as usize
}

/// `[start, end)` cut at 2 MiB boundaries: pieces of at most `BATCH_PAGES` pages, none
/// cutting a block that the range does not cut itself.
fn batches(start: VirtAddr, end: VirtAddr) -> impl Iterator<Item = (VirtAddr, VirtAddr)> {
    let step = BATCH_PAGES * PAGE_SIZE;
    let mut at = start;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let to = at.align_down(step).add(step).min(end);
        let piece = (at, to);
        at = to;
        Some(piece)
    })
}

/// Whether the page at `pa`, which the caller's address space maps, is exclusive to it.
fn page_is_exclusive(pa: PhysAddr) -> bool {
    super::frame::frames()
        .meta(pa)
        .test(super::frame::flags::ANON_EXCLUSIVE)
}

fn map_error(e: MapError) -> FaultError {
    match e {
        MapError::NoMemory => FaultError::Oom,
        MapError::AlreadyMapped => unreachable!("fault path maps only empty entries"),
    }
}

/// `cow=folio`: copy a whole shared folio on a write fault instead of one page.
pub static COW_COPIES_FOLIO: AtomicBool = AtomicBool::new(false);

/// Drop what an unmap returned: one map count and one reference per page, folio by
/// folio. Records of consecutive frames are merged first (an unmap without contiguous
/// blocks returns one record per page), so a folio unmapped whole is accounted in one
/// step and never looks partially mapped on the way. The records are one batch's
/// (at most `BATCH_PAGES`).
fn release(records: Vec<Unmapped>) {
    let mut runs: Vec<(PhysAddr, usize)> = Vec::new();
    for r in records {
        match runs.last_mut() {
            Some((pa, n)) if pa.add(*n * PAGE_SIZE) == r.pa => *n += r.pages,
            _ => runs.push((r.pa, r.pages)),
        }
    }
    for (pa, pages) in runs {
        folio::for_each_folio(pa, pages, |f, first, n| f.unmap(first, n));
    }
}

impl Mm {
    pub fn new() -> Result<Self, Errno> {
        Ok(Mm {
            tables: UserTables::new().map_err(|_| ENOMEM)?,
            vmas: VmaSet::new(),
            brk_start: VirtAddr(0),
            brk: VirtAddr(0),
        })
    }

    /// Map pages `first..first + n` of the new folio `f` at `va` (a PMD block for a
    /// whole 2 MiB folio) and account them; the folio's allocation reference is dropped
    /// either way. The pages are marked exclusive before any entry maps them (who may
    /// write a page). For a write fault the pages are mapped dirty: without hardware
    /// dirty state the faulting store would otherwise take a second fault just to mark
    /// them.
    fn map_folio(
        &mut self,
        va: VirtAddr,
        f: Folio,
        first: usize,
        n: usize,
        prot: VmProt,
        write: bool,
    ) -> Result<(), FaultError> {
        let f = Folio::lock(f.head());
        f.set_exclusive(first, n, true);
        let r = if n == 512 && first == 0 && va.is_aligned(PMD as usize) {
            self.tables.map_pmd(va, f.head(), pte_attrs(prot))
        } else {
            self.tables.map(va, f.page(first), n, pte_attrs(prot))
        };
        if r.is_ok() {
            f.map(first, n);
        }
        drop(f.put(1));
        r.map_err(map_error)?;
        if write && prot.write && !crate::mm::ptenv::config().features.hw_dirty {
            self.tables.make_writable(va, n).map_err(map_error)?;
        }
        Ok(())
    }

    fn range_is_empty(&self, start: VirtAddr, n: usize) -> bool {
        let mut empty = true;
        self.tables
            .for_each_leaf(start, start.add(n * PAGE_SIZE), |_, _| empty = false);
        empty
    }

    /// A fault on an unmapped page of `vma`: the largest folio of the `allowed` orders
    /// (a bit mask) that fits, else a base page.
    fn anon_fault(
        &mut self,
        va: VirtAddr,
        vma: Vma,
        allowed: u16,
        write: bool,
    ) -> Result<(), FaultError> {
        folio::shrink_if_low();
        for order in mthp::fault_orders(allowed, va, vma.start, vma.end) {
            let n = 1usize << order;
            let base = va.align_down(n * PAGE_SIZE);
            if !self.range_is_empty(base, n) {
                continue;
            }
            match folio::alloc_anon(order) {
                Some(f) => {
                    self.map_folio(base, f, 0, n, vma.prot, write)?;
                    mthp::stats(order)
                        .anon_fault_alloc
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                None => {
                    mthp::stats(order)
                        .anon_fault_fallback
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let f = match folio::alloc_anon(0) {
            Some(f) => f,
            // Out of memory: give back what partially mapped folios hold, then retry.
            None if folio::shrink_deferred() > 0 => folio::alloc_anon(0).ok_or(FaultError::Oom)?,
            None => return Err(FaultError::Oom),
        };
        self.map_folio(va.align_down(PAGE_SIZE), f, 0, 1, vma.prot, write)
    }

    /// Resolve a fault at `va`; `Ok` means retry the access.
    pub fn handle_fault(&mut self, va: VirtAddr, access: Access) -> Result<(), FaultError> {
        let vma = *self.vmas.find(va).ok_or(FaultError::Segv)?;
        let allowed = match access {
            Access::Read => vma.prot.read || vma.prot.write || vma.prot.exec,
            Access::Write => vma.prot.write,
            Access::Exec => vma.prot.exec,
        };
        if !allowed {
            return Err(FaultError::Segv);
        }
        let page = va.align_down(PAGE_SIZE);
        let fix = match access {
            Access::Write => self.tables.write_fault(page),
            Access::Read | Access::Exec => self.tables.access_flag_fault(page),
        };
        match fix {
            FaultFix::Fixed => Ok(()),
            FaultFix::NotMapped => self.anon_fault(
                page,
                vma,
                mthp::POLICY.allowed_orders(vma.huge),
                access == Access::Write,
            ),
            FaultFix::NotWritable => self.copy_on_write(page, vma),
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
        let base = VirtAddr(page.as_u64() - (f.index(pa) * PAGE_SIZE) as u64);
        let end = base.add(f.nr_pages() * PAGE_SIZE);
        if base < vma.start || end > vma.end {
            return None;
        }
        let mut pages = 0;
        let mut in_order = true;
        self.tables.for_each_leaf(base, end, |va, leaf| {
            let n = if leaf.level == 2 { 512 } else { 1 };
            pages += n;
            in_order &=
                leaf.pa_of(va) == f.page((va.as_u64() - base.as_u64()) as usize / PAGE_SIZE);
        });
        (in_order && pages == f.nr_pages()).then_some(base)
    }

    /// A write fault on a read-only page of a writable VMA (shared since fork, or
    /// write-protected by mprotect while shared).
    fn copy_on_write(&mut self, page: VirtAddr, vma: Vma) -> Result<(), FaultError> {
        let old = self
            .tables
            .get(page)
            .expect("write fault on an unmapped page")
            .pa_of(page);
        let f = Folio::lock(old);
        let n = f.nr_pages();
        let reuse = f.mapped_exactly_once();
        let copy_folio = f.is_large() && COW_COPIES_FOLIO.load(Ordering::Relaxed);
        // One walk of the folio's range serves both the reuse and the folio copy.
        let whole = if reuse || copy_folio {
            self.whole_folio_at(page, old, *f, &vma)
        } else {
            None
        };
        if reuse {
            if let Some(base) = whole {
                // Only this mapping is left: take the whole folio, blocks stay folded.
                // Exclusive first: a writable entry maps an exclusive page.
                f.set_exclusive(0, n, true);
                self.tables.make_writable(base, n).map_err(map_error)?;
                if f.is_large() {
                    mthp::stats(f.order())
                        .cow_reuse
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Ok(());
            }
        }
        if copy_folio {
            if let Some(base) = whole {
                if let Some(new) = folio::alloc_anon(f.order()) {
                    copy_pages(f.head(), new.head(), n);
                    drop(f);
                    let records = match self.tables.unmap(base, n) {
                        Ok(r) => r,
                        Err(e) => {
                            drop(Folio::lock(new.head()).put(1));
                            return Err(map_error(e));
                        }
                    };
                    release(records);
                    mthp::stats(new.order())
                        .cow_folio_copy
                        .fetch_add(1, Ordering::Relaxed);
                    return self.map_folio(base, new, 0, n, vma.prot, true);
                }
            }
        }
        drop(f);
        let new = folio::alloc_anon(0).ok_or(FaultError::Oom)?;
        copy_pages(old, new.head(), 1);
        // Unmapping one page of a 2 MiB block splits it, which needs a table.
        match self.tables.unmap(page, 1) {
            Ok(records) => release(records),
            Err(e) => {
                drop(Folio::lock(new.head()).put(1));
                return Err(map_error(e));
            }
        }
        self.map_folio(page, new, 0, 1, vma.prot, true)
    }

    /// Fault in every page of `[start, end)` (MAP_POPULATE, MADV_POPULATE_*).
    pub fn populate(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        access: Access,
    ) -> Result<(), FaultError> {
        let mut va = start;
        while va < end {
            self.handle_fault(va, access)?;
            va = va.add(PAGE_SIZE);
        }
        Ok(())
    }

    /// Copy `data` to `va` in this address space (exec: segments and the stack),
    /// faulting pages in regardless of the VMA's protection.
    pub fn write_bytes(&mut self, va: VirtAddr, data: &[u8]) -> Result<(), FaultError> {
        let mut done = 0;
        while done < data.len() {
            let at = va.add(done);
            let page = at.align_down(PAGE_SIZE);
            if self.tables.get(page).is_none() {
                // Base pages, as Linux fills the new stack and image at exec.
                let vma = *self.vmas.find(page).ok_or(FaultError::Segv)?;
                self.anon_fault(page, vma, 0, false)?;
            }
            let pa = self.tables.get(page).expect("just mapped").pa_of(page);
            let off = (at.as_u64() - page.as_u64()) as usize;
            let n = (PAGE_SIZE - off).min(data.len() - done);
            // SAFETY: `pa` is a frame this address space maps; written through the linear map.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data[done..].as_ptr(),
                    phys_to_virt(pa).as_ptr::<u8>().add(off),
                    n,
                )
            };
            done += n;
        }
        Ok(())
    }

    /// Split the 2 MiB blocks that `start` and `end` cut: what a VMA boundary or a range
    /// operation there needs first. Fails (ENOMEM) only for want of a table; a split
    /// changes no translation, so one done before a failure needs no undo.
    fn split_edges(&mut self, start: VirtAddr, end: VirtAddr) -> Result<(), Errno> {
        self.tables.split_at(start).map_err(|_| ENOMEM)?;
        self.tables.split_at(end).map_err(|_| ENOMEM)
    }

    /// Unmap the pages of `[start, end)` (munmap, MADV_DONTNEED), in batches.
    fn unmap_pages(&mut self, start: VirtAddr, end: VirtAddr) -> Result<(), Errno> {
        self.split_edges(start, end)?;
        for (a, b) in batches(start, end) {
            let records = self
                .tables
                .unmap(a, pages(a, b))
                .expect("edges split: a batch cuts no block");
            release(records);
        }
        Ok(())
    }

    /// munmap: pages and VMAs of `[start, end)`; holes are fine.
    pub fn munmap(&mut self, start: VirtAddr, end: VirtAddr) -> Result<(), Errno> {
        // Cutting a hole in the middle of a VMA adds one.
        let splits = self
            .vmas
            .find(start)
            .is_some_and(|v| v.start < start && end < v.end);
        if splits && self.vmas.len() >= MAX_MAP_COUNT {
            return Err(ENOMEM);
        }
        self.unmap_pages(start, end)?;
        self.vmas.remove(start, end);
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
        let len = len.checked_add(PAGE_SIZE as u64 - 1).ok_or(ENOMEM)? & !(PAGE_SIZE as u64 - 1);
        if self.vmas.len() >= MAX_MAP_COUNT {
            return Err(ENOMEM);
        }
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let start = if fixed {
            if addr % PAGE_SIZE as u64 != 0 {
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
            let align = if len >= PMD { PMD as usize } else { PAGE_SIZE };
            let hint = VirtAddr(addr).align_down(PAGE_SIZE);
            let hint_ok = addr >= MMAP_MIN
                && hint
                    .as_u64()
                    .checked_add(len)
                    .is_some_and(|e| e <= MMAP_BASE)
                && self.vmas.is_free(hint, hint.add(len as usize));
            if hint_ok {
                hint
            } else {
                self.vmas
                    .find_free(len as usize, align, VirtAddr(MMAP_BASE), VirtAddr(MMAP_MIN))
                    .ok_or(ENOMEM)?
            }
        };
        let end = start.add(len as usize);
        self.vmas
            .insert(Vma {
                start,
                end,
                prot,
                huge: HugeHint::Default,
                kind: VmaKind::Anon,
            })
            .map_err(|_| ENOMEM)?;
        // As Linux: population is best effort (the mapping stands if memory runs out,
        // a later fault decides), and an inaccessible mapping is not populated.
        if flags & MAP_POPULATE != 0 && (prot.read || prot.write || prot.exec) {
            let access = if prot.write {
                Access::Write
            } else {
                Access::Read
            };
            let _ = self.populate(start, end, access);
        }
        Ok(start)
    }

    /// The VMA pieces of `[start, end)`, in order, and whether the range has a hole.
    /// Visits one piece at a time (no list is built): `f(mm, piece start, piece end,
    /// vma)` may change the VMAs; the walk resumes at the end of the piece.
    fn for_each_piece(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        mut f: impl FnMut(&mut Self, VirtAddr, VirtAddr, Vma) -> Result<(), Errno>,
    ) -> Result<bool, Errno> {
        let mut at = start;
        let mut hole = false;
        while at < end {
            let next = self.vmas.next_from(at).copied().filter(|v| v.start < end);
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
            let vma = *self.vmas.find(at).ok_or(ENOMEM)?;
            let to = vma.end.min(end);
            self.may_split()?;
            self.split_edges(at, to)?;
            self.vmas
                .protect(at, to, prot)
                .expect("the piece lies in one VMA");
            self.protect_entries(at, to, prot);
            at = to;
        }
        Ok(())
    }

    /// Give the entries of `[start, end)` (edges already split) the VMA protection
    /// `prot`, except that write goes only to pages exclusive to this address space:
    /// a shared page stays read-only and its next write fault reuses or copies it.
    fn protect_entries(&mut self, start: VirtAddr, end: VirtAddr, prot: VmProt) {
        let ro = pte_attrs(VmProt {
            write: false,
            ..prot
        })
        .prot;
        let rw = pte_attrs(prot).prot;
        for (a, b) in batches(start, end) {
            if !prot.write {
                self.tables
                    .protect(a, pages(a, b), ro)
                    .expect("edges split: a batch cuts no block");
                continue;
            }
            // Runs of leaves alike in exclusivity (a 2 MiB block is one leaf: exclusive
            // only if all its pages are); holes join either side.
            let mut runs: Vec<(VirtAddr, VirtAddr, bool)> = Vec::new();
            self.tables.for_each_leaf(a, b, |va, leaf| {
                let (n, end) = if leaf.level == 2 {
                    (512, va.add(PMD as usize))
                } else {
                    (1, va.add(PAGE_SIZE))
                };
                let pa = leaf.pa_of(va);
                let excl = (0..n).all(|i| page_is_exclusive(pa.add(i * PAGE_SIZE)));
                match runs.last_mut() {
                    Some(r) if r.2 == excl => r.1 = end,
                    _ => runs.push((va, end, excl)),
                }
            });
            let mut at = a;
            let count = runs.len();
            for (i, (_, run_end, excl)) in runs.into_iter().enumerate() {
                let to = if i + 1 == count { b } else { run_end };
                self.tables
                    .protect(at, pages(at, to), if excl { rw } else { ro })
                    .expect("runs end at leaf boundaries");
                at = to;
            }
        }
    }

    /// madvise, with Linux's semantics: advice applies to every mapped piece of the
    /// range and a hole then makes the call ENOMEM; MADV_POPULATE_* go in address
    /// order and stop at the first hole or failure. The range is page-aligned and
    /// non-empty, the advice known.
    pub fn madvise(&mut self, start: VirtAddr, end: VirtAddr, advice: u64) -> Result<(), Errno> {
        let populate_errno = |e| match e {
            FaultError::Oom => ENOMEM,
            FaultError::Segv => EFAULT,
        };
        match advice {
            MADV_POPULATE_READ | MADV_POPULATE_WRITE => {
                let write = advice == MADV_POPULATE_WRITE;
                if !self.vmas.covers(start, end) {
                    // Linux faults in what lies before the hole, then fails.
                    let mut at = start;
                    while let Some(v) = self.vmas.find(at).copied() {
                        if write && !v.prot.write {
                            return Err(EINVAL);
                        }
                        let to = v.end.min(end);
                        let access = if write { Access::Write } else { Access::Read };
                        self.populate(at, to, access).map_err(populate_errno)?;
                        at = to;
                    }
                    return Err(ENOMEM);
                }
                if write
                    && self
                        .vmas
                        .iter()
                        .any(|v| v.start < end && start < v.end && !v.prot.write)
                {
                    return Err(EINVAL);
                }
                let access = if write { Access::Write } else { Access::Read };
                return self.populate(start, end, access).map_err(populate_errno);
            }
            MADV_HUGEPAGE | MADV_NOHUGEPAGE => self.may_split()?,
            _ => {}
        }
        let hole = self.for_each_piece(start, end, |mm, a, b, _| match advice {
            MADV_DONTNEED => mm.unmap_pages(a, b),
            // Lazy free: the pages become clean and old; until reclaim discards them
            // they keep their contents, and a write makes them dirty again.
            MADV_FREE => mm
                .tables
                .clear_young_dirty(a, pages(a, b))
                .map_err(|_| ENOMEM),
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
                PMD
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
                kind: VmaKind::Heap,
            };
            if self.vmas.len() >= MAX_MAP_COUNT || self.vmas.insert(heap).is_err() {
                return self.brk;
            }
        } else if new_end < old_end && self.munmap(new_end, old_end).is_err() {
            return self.brk;
        }
        self.brk = want;
        self.brk
    }

    /// The child's copy at fork: the same VMAs, the same folios mapped read-only in
    /// both. The parent is write-protected first, one batched call per VMA whatever
    /// the VMA's flags say (an entry may allow more than its VMA while a block is being
    /// split: what counts is what the entries allow), so no page is shared while an
    /// entry can still write it. 2 MiB blocks stay blocks, runs of consecutive pages
    /// are mapped in the child with one call.
    pub fn fork(&mut self) -> Result<Mm, Errno> {
        let mut child = Mm::new()?;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        let mut next = VirtAddr(0);
        while let Some(vma) = self.vmas.next_from(next).copied() {
            next = vma.end;
            child.vmas.insert(vma).expect("parent VMAs do not overlap");
            self.tables
                .wrprotect(vma.start, pages(vma.start, vma.end))
                .map_err(|_| ENOMEM)?;
            let attrs = pte_attrs(VmProt {
                write: false,
                ..vma.prot
            });
            // Leaves stream in address order: a run of pages on consecutive frames is
            // mapped in the child with one call when it ends, a PMD block at once.
            let mut run: Option<Run> = None;
            let mut ok = true;
            self.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                let pa = leaf.pa_of(va);
                match &mut run {
                    Some(r) if leaf.level == 3 && r.extends_to(va, pa) => r.pages += 1,
                    _ => {
                        ok &= run.take().is_none_or(|r| r.map_shared(&mut child, attrs));
                        if leaf.level == 2 {
                            // Blocks never straddle a VMA edge (module invariant).
                            let inside = va >= vma.start && va.add(PMD as usize) <= vma.end;
                            let mapped = inside && child.tables.map_pmd(va, pa, attrs).is_ok();
                            if mapped {
                                share(pa, 512);
                            }
                            ok &= mapped;
                        } else {
                            run = Some(Run { va, pa, pages: 1 });
                        }
                    }
                }
            });
            ok &= run.is_none_or(|r| r.map_shared(&mut child, attrs));
            if !ok {
                return Err(ENOMEM);
            }
        }
        Ok(child)
    }

    /// /proc/self/thpmaps: per VMA, bytes mapped by folios of each order, by
    /// contiguous entries, and by 2 MiB blocks.
    pub fn thp_report(&self) -> String {
        let mut out = String::new();
        for vma in self.vmas.iter() {
            let mut by_order = [0u64; 10];
            let (mut cont, mut pmd) = (0u64, 0u64);
            self.tables.for_each_leaf(vma.start, vma.end, |va, leaf| {
                let bytes = if leaf.level == 2 {
                    PMD
                } else {
                    PAGE_SIZE as u64
                };
                by_order[Folio::lock(leaf.pa_of(va)).order()] += bytes;
                if leaf.level == 2 {
                    pmd += bytes;
                } else if leaf.pte.is_cont() {
                    cont += bytes;
                }
            });
            let p = vma.prot;
            let perms =
                [(p.read, 'r'), (p.write, 'w'), (p.exec, 'x')]
                    .map(|(on, c)| if on { c } else { '-' });
            let kind = match vma.kind {
                VmaKind::Anon => "anon",
                VmaKind::Stack => "stack",
                VmaKind::Heap => "heap",
                VmaKind::Image => "image",
            };
            let _ = write!(
                out,
                "{:x}-{:x} {}{}{}p {kind}",
                vma.start.as_u64(),
                vma.end.as_u64(),
                perms[0],
                perms[1],
                perms[2]
            );
            for order in [0, 2, 3, 4, 5, 6, 7, 8, 9] {
                let _ = write!(out, " order{order}={}", by_order[order]);
            }
            let _ = writeln!(out, " cont={cont} pmd={pmd}");
        }
        out
    }
}

/// Pages mapped at consecutive addresses on consecutive frames (fork batches them).
struct Run {
    va: VirtAddr,
    pa: PhysAddr,
    pages: usize,
}

impl Run {
    fn extends_to(&self, va: VirtAddr, pa: PhysAddr) -> bool {
        self.va.add(self.pages * PAGE_SIZE) == va && self.pa.add(self.pages * PAGE_SIZE) == pa
    }

    /// Map the run in `child` with one call and account the shared pages.
    fn map_shared(self, child: &mut Mm, attrs: PteAttrs) -> bool {
        let ok = child
            .tables
            .map(self.va, self.pa, self.pages, attrs)
            .is_ok();
        if ok {
            share(self.pa, self.pages);
        }
        ok
    }
}

/// Account `n` more mappings of the consecutive pages from `pa` (fork), which are now
/// shared: not exclusive to either address space.
fn share(pa: PhysAddr, n: usize) {
    folio::for_each_folio(pa, n, |f, first, m| {
        f.map(first, m);
        f.set_exclusive(first, m, false);
    });
}

fn copy_pages(from: PhysAddr, to: PhysAddr, n: usize) {
    // SAFETY: both ranges are RAM in the linear map; `to` is a new folio only we hold,
    // `from` is only read (its other mappings are read-only).
    unsafe {
        core::ptr::copy_nonoverlapping(
            phys_to_virt(from).as_ptr::<u8>(),
            phys_to_virt(to).as_ptr::<u8>(),
            n * PAGE_SIZE,
        )
    };
}

impl Drop for Mm {
    fn drop(&mut self) {
        while let Some(v) = self.vmas.next_from(VirtAddr(0)).copied() {
            // Whole VMAs: their edges cut no block, so this needs no memory.
            self.munmap(v.start, v.end)
                .expect("unmapping a whole VMA splits nothing");
        }
    }
}
