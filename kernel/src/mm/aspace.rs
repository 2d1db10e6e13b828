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
//! Locking: the owning process's `Mm` lock is held for every call here; nothing here
//! touches user memory through user addresses (uaccess happens outside the lock).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, Ordering};

use super::folio::{self, Folio};
use super::mthp;
use super::pgtable::{FaultFix, MapError, Prot, PteAttrs, Unmapped};
use super::ptenv::UserTables;
use super::vma::{HugeHint, VmProt, Vma, VmaKind, VmaSet};
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
/// step and never looks partially mapped on the way.
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

    /// Map pages `first..first + n` of `f` at `va` (a PMD block for a whole 2 MiB
    /// folio) and account them; the folio's allocation reference is dropped either way.
    /// For a write fault the pages are mapped dirty: without hardware dirty state the
    /// faulting store would otherwise take a second fault just to mark them.
    fn map_folio(
        &mut self,
        va: VirtAddr,
        f: Folio,
        first: usize,
        n: usize,
        prot: VmProt,
        write: bool,
    ) -> Result<(), FaultError> {
        let r = if n == 512 && first == 0 && va.is_aligned(PMD as usize) {
            self.tables.map_pmd(va, f.head(), pte_attrs(prot))
        } else {
            self.tables.map(va, f.page(first), n, pte_attrs(prot))
        };
        if r.is_ok() {
            f.map(first, n);
            f.set_exclusive(first, n, true);
        }
        f.put(1);
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

    /// A write fault on a read-only page of a writable VMA (shared since fork).
    fn copy_on_write(&mut self, page: VirtAddr, vma: Vma) -> Result<(), FaultError> {
        let old = self
            .tables
            .get(page)
            .expect("write fault on an unmapped page")
            .pa_of(page);
        let f = Folio::of(old);
        let n = f.nr_pages();
        let reuse = f.mapped_exactly_once();
        let copy_folio = f.is_large() && COW_COPIES_FOLIO.load(Ordering::Relaxed);
        // One walk of the folio's range serves both the reuse and the folio copy.
        let whole = if reuse || copy_folio {
            self.whole_folio_at(page, old, f, &vma)
        } else {
            None
        };
        if reuse {
            if let Some(base) = whole {
                // Only this mapping is left: take the whole folio, blocks stay folded.
                self.tables.make_writable(base, n).map_err(map_error)?;
                f.set_exclusive(0, n, true);
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
                    release(self.tables.unmap(base, n).map_err(map_error)?);
                    mthp::stats(f.order())
                        .cow_folio_copy
                        .fetch_add(1, Ordering::Relaxed);
                    return self.map_folio(base, new, 0, n, vma.prot, true);
                }
            }
        }
        let new = folio::alloc_anon(0).ok_or(FaultError::Oom)?;
        copy_pages(old, new.head(), 1);
        release(self.tables.unmap(page, 1).map_err(map_error)?);
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

    /// Unmap `[start, end)`: VMAs and pages (munmap, MADV_DONTNEED without the VMA part).
    fn unmap_pages(&mut self, start: VirtAddr, end: VirtAddr) {
        let records = self
            .tables
            .unmap(start, pages(start, end))
            .expect("unmap of whole pages cannot need memory");
        release(records);
    }

    pub fn munmap(&mut self, start: VirtAddr, end: VirtAddr) {
        self.vmas.remove(start, end);
        self.unmap_pages(start, end);
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
                self.munmap(VirtAddr(addr), VirtAddr(end));
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
        if flags & MAP_POPULATE != 0 {
            let access = if prot.write {
                Access::Write
            } else {
                Access::Read
            };
            self.populate(start, end, access).map_err(|_| ENOMEM)?;
        }
        Ok(start)
    }

    pub fn mprotect(&mut self, start: VirtAddr, end: VirtAddr, prot: VmProt) -> Result<(), Errno> {
        self.vmas.protect(start, end, prot).map_err(|_| ENOMEM)?;
        self.tables
            .protect(start, pages(start, end), pte_attrs(prot).prot)
            .map_err(|_| ENOMEM)
    }

    /// madvise; the range is page-aligned and non-empty.
    pub fn madvise(&mut self, start: VirtAddr, end: VirtAddr, advice: u64) -> Result<(), Errno> {
        if !self.vmas.covers(start, end) {
            return Err(ENOMEM);
        }
        match advice {
            MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED => Ok(()),
            MADV_DONTNEED => {
                self.unmap_pages(start, end);
                Ok(())
            }
            // Lazy free: the pages become clean and old; until reclaim discards them
            // they keep their contents, and a write makes them dirty again.
            MADV_FREE => self
                .tables
                .clear_young_dirty(start, pages(start, end))
                .map_err(|_| ENOMEM),
            MADV_HUGEPAGE => self
                .vmas
                .set_huge(start, end, HugeHint::Huge)
                .map_err(|_| ENOMEM),
            MADV_NOHUGEPAGE => self
                .vmas
                .set_huge(start, end, HugeHint::NoHuge)
                .map_err(|_| ENOMEM),
            MADV_POPULATE_READ => self.populate(start, end, Access::Read).map_err(|e| {
                if e == FaultError::Oom {
                    ENOMEM
                } else {
                    EFAULT
                }
            }),
            MADV_POPULATE_WRITE
                if self
                    .vmas
                    .iter()
                    .any(|v| v.start < end && start < v.end && !v.prot.write) =>
            {
                Err(EINVAL)
            }
            MADV_POPULATE_WRITE => self.populate(start, end, Access::Write).map_err(|e| {
                if e == FaultError::Oom {
                    ENOMEM
                } else {
                    EFAULT
                }
            }),
            _ => Err(EINVAL),
        }
    }

    /// Whether each page of `[start, end)` is resident (mincore); ENOMEM on a hole.
    pub fn mincore(&self, start: VirtAddr, end: VirtAddr) -> Result<Vec<u8>, Errno> {
        if !self.vmas.covers(start, end) {
            return Err(ENOMEM);
        }
        let mut resident = alloc::vec![0u8; pages(start, end)];
        self.tables.for_each_leaf(start, end, |va, leaf| {
            // A 2 MiB block is reported at its own start, which may lie before `start`.
            let size = if leaf.level == 2 {
                PMD
            } else {
                PAGE_SIZE as u64
            };
            let from = va.max(start).as_u64() - start.as_u64();
            let to = (va.as_u64() + size).min(end.as_u64()) - start.as_u64();
            resident[from as usize / PAGE_SIZE..to as usize / PAGE_SIZE].fill(1);
        });
        Ok(resident)
    }

    /// brk: move the end of the heap; returns the (possibly unchanged) break.
    pub fn set_brk(&mut self, want: VirtAddr) -> VirtAddr {
        if want < self.brk_start {
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
            if new_end.as_u64() > MMAP_BASE || self.vmas.insert(heap).is_err() {
                return self.brk;
            }
        } else if new_end < old_end {
            self.munmap(new_end, old_end);
        }
        self.brk = want;
        self.brk
    }

    /// The child's copy at fork: the same VMAs, the same folios mapped read-only in
    /// both (writable VMAs are write-protected in the parent with one batched call per
    /// VMA); 2 MiB blocks stay blocks, runs of consecutive pages are mapped in one call.
    pub fn fork(&mut self) -> Result<Mm, Errno> {
        let mut child = Mm::new()?;
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        let vmas: Vec<Vma> = self.vmas.iter().copied().collect();
        for vma in vmas {
            child.vmas.insert(vma).expect("parent VMAs do not overlap");
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
                            let mapped = child.tables.map_pmd(va, pa, attrs).is_ok();
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
            if vma.prot.write {
                self.tables
                    .wrprotect(vma.start, pages(vma.start, vma.end))
                    .map_err(|_| ENOMEM)?;
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
                by_order[Folio::of(leaf.pa_of(va)).order()] += bytes;
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
        let vmas: Vec<(VirtAddr, VirtAddr)> = self.vmas.iter().map(|v| (v.start, v.end)).collect();
        for (start, end) in vmas {
            self.munmap(start, end);
        }
    }
}
