//! Faults on a user address space: classify (no VMA or a forbidden access is SIGSEGV;
//! a read of a missing entry maps the shared zero page, `zero`, and a write is a
//! demand-zero fault; a write to a read-only entry of a writable VMA is copy-on-write,
//! `cow`, or over the zero page `zero` again), and the demand-zero fault: of the mTHP orders
//! the policy allows for the VMA (`mthp`), the largest whose aligned range lies in the
//! VMA and is entirely unmapped, falling back one order at a time when allocation
//! fails; the folio is mapped with one batched call (contiguous blocks from 64 KiB up,
//! a PMD block for 2 MiB). Population (MAP_POPULATE, MADV_POPULATE_*) is faults in a
//! row. A debugger's access (/proc/self/mem, `access_forced`) faults pages in whatever
//! the VMA's protection, and breaks copy-on-write before it writes.

use core::sync::atomic::{AtomicU64, Ordering};

use super::aspace::{pte_attrs, Mm, MmEnv, PMD};
use super::folio::{self, Folio};
use super::mthp;
use super::pgtable::{FaultFix, MapError};
use super::reclaim;
use super::vma::{UffdId, VmProt, Vma};
use super::{PhysAddr, VirtAddr, PAGE_SIZE};

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
    /// A file mapping's page past the end of the file: SIGBUS.
    Bus,
    /// An unpopulated page of a VMA registered with this userfaultfd: the process
    /// layer hands the fault to it, waits with the `Mm` lock dropped, and retries
    /// (Linux's VM_FAULT_RETRY from `handle_userfault`; `proc::userfault`).
    Userfault(UffdId),
}

pub(super) fn map_error(e: MapError) -> FaultError {
    match e {
        MapError::NoMemory => FaultError::Oom,
        MapError::AlreadyMapped => unreachable!("fault path maps only empty entries"),
    }
}

/// Faults handled, resolved or not (Linux's `pgfault` in /proc/vmstat).
pub static PGFAULT: AtomicU64 = AtomicU64::new(0);

impl<E: MmEnv> Mm<E> {
    /// Resolve a fault at `va`; `Ok` means retry the access.
    pub fn handle_fault(&mut self, va: VirtAddr, access: Access) -> Result<(), FaultError> {
        PGFAULT.fetch_add(1, Ordering::Relaxed);
        let vma = self.vmas.find(va).cloned().ok_or(FaultError::Segv)?;
        let allowed = match access {
            Access::Read => vma.prot.read || vma.prot.write || vma.prot.exec,
            Access::Write => vma.prot.write,
            Access::Exec => vma.prot.exec,
        };
        if !allowed {
            return Err(FaultError::Segv);
        }
        if vma.hugetlb().is_some() {
            return self.hugetlb_fault(va, &vma, access);
        }
        let page = va.align_down(PAGE_SIZE);
        let fix = match access {
            Access::Write => self.tables.write_fault(page),
            Access::Read | Access::Exec => self.tables.access_flag_fault(page),
        };
        match fix {
            FaultFix::Fixed => Ok(()),
            // A file's page is missing only if its cache has none (`filemap`).
            FaultFix::NotMapped => match vma.flags.userfault {
                Some(uffd) if vma.file().is_none() => Err(FaultError::Userfault(uffd)),
                Some(_) => self.missing(page, vma, access == Access::Write),
                None => self.missing(page, vma, access == Access::Write),
            },
            // The file's page is every mapper's: writing it needs no copy.
            FaultFix::NotWritable(_) if vma.is_shared() => {
                self.tables.make_writable(page, 1).map_err(map_error)
            }
            FaultFix::NotWritable(leaf) => self.copy_on_write(page, leaf.pa_of(page), vma),
        }
    }

    /// A fault on the unmapped `page` of `vma`: from the file's page cache for a file
    /// mapping (`filemap`), else anonymous memory.
    fn missing(&mut self, page: VirtAddr, vma: Vma, write: bool) -> Result<(), FaultError> {
        if vma.hugetlb().is_some() {
            return self.hugetlb_missing(page, &vma, write);
        }
        if vma.file().is_some() {
            self.file_fault(page, &vma, write)
        } else {
            self.missing_page(page, vma, write)
        }
    }

    /// A fault on the unmapped `page` of `vma`: a write allocates (`anon_fault`), a
    /// read maps the shared zero page (`zero`), or where a 2 MiB folio is allowed and
    /// fits the huge zero page, as Linux's `do_huge_pmd_anonymous_page`: with
    /// `use_zero_page` off it allocates the folio, and the small zero page when the
    /// huge one cannot be had.
    fn missing_page(&mut self, page: VirtAddr, vma: Vma, write: bool) -> Result<(), FaultError> {
        let allowed = self.thp_orders(vma.huge);
        if write {
            return self.anon_fault(page, vma, allowed, true);
        }
        let base = page.align_down(PMD as usize);
        let pmd = mthp::fault_orders(allowed, page, vma.start, vma.end)
            .next()
            .is_some_and(|order| order == mthp::PMD_ORDER && self.range_is_empty(base, 512));
        if pmd {
            if !mthp::USE_ZERO_PAGE.load(Ordering::Relaxed) {
                return self.anon_fault(page, vma, allowed, false);
            }
            if self.map_huge_zero_page(base, vma.clone())? {
                return Ok(());
            }
        }
        self.map_zero_page(page, vma)
    }

    /// Map the new folio `f` whole at `va` (a PMD block for a 2 MiB folio) and account
    /// it; on failure its allocation reference, the only one, frees it. The pages are
    /// marked exclusive before any entry maps them (who may write a page). Nobody else
    /// can reach a new folio but through this `Mm`, so it is set up without its lock
    /// (folio protocol, rule 1's exception). For a write fault the pages are mapped
    /// dirty: without hardware dirty state the faulting store would otherwise take a
    /// second fault just to mark them.
    pub(super) fn map_folio(
        &mut self,
        va: VirtAddr,
        f: Folio,
        prot: VmProt,
        write: bool,
    ) -> Result<(), FaultError> {
        let n = f.nr_pages();
        f.mark_new_exclusive();
        let pmd = n == 512 && va.is_aligned(PMD as usize);
        let r = if pmd {
            self.tables.map_pmd(va, f.head(), pte_attrs(prot))
        } else if write {
            self.tables.map_dirty(va, f.head(), n, pte_attrs(prot))
        } else {
            self.tables.map(va, f.head(), n, pte_attrs(prot))
        };
        match r {
            Ok(()) => f.account_new_mapping(),
            // Nothing mapped it: the allocation's reference was the last.
            Err(_) => drop(Folio::lock(f.head()).put(1)),
        }
        r.map_err(map_error)?;
        if pmd && write && prot.write && !self.env().features().hw_dirty {
            self.tables.make_writable(va, n).map_err(map_error)?;
        }
        Ok(())
    }

    fn range_is_empty(&self, start: VirtAddr, n: usize) -> bool {
        self.tables.is_unmapped(start, n)
    }

    /// A fault on an unmapped page of `vma`: the largest folio of the `allowed` orders
    /// (a bit mask) that fits, else a base page.
    pub(super) fn anon_fault(
        &mut self,
        va: VirtAddr,
        vma: Vma,
        allowed: u16,
        write: bool,
    ) -> Result<(), FaultError> {
        reclaim::if_low(self);
        for order in mthp::fault_orders(allowed, va, vma.start, vma.end) {
            let n = 1usize << order;
            let base = va.align_down(n * PAGE_SIZE);
            if !self.range_is_empty(base, n) {
                continue;
            }
            // Reclaim (lazyfree folios, deferred splits) before falling back an order.
            let allocated = folio::alloc_anon(self.env(), order).or_else(|| {
                reclaim::direct(self, n)
                    .then(|| folio::alloc_anon(self.env(), order))
                    .flatten()
            });
            // No folio, or no table to map it (nothing mapped, the folio went back):
            // the page below reclaims for both.
            let mapped = allocated.map(|f| self.map_folio(base, f, vma.prot, write));
            match mapped {
                Some(Err(FaultError::Oom)) if self.range_is_empty(base, n) => {}
                None => {}
                Some(r) => {
                    r?;
                    mthp::stats(order)
                        .anon_fault_alloc
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
            mthp::stats(order)
                .anon_fault_fallback
                .fetch_add(1, Ordering::Relaxed);
        }
        // Out of memory for the page or for a table to map it: give back lazyfree
        // folios and what partially mapped folios hold, and retry, until reclaim has
        // nothing more to give (a table that cannot be had is ENOMEM too, never early).
        let page = va.align_down(PAGE_SIZE);
        reclaim::alloc_or_reclaim(self, 1, |mm| {
            let f = folio::alloc_anon(mm.env(), 0)?;
            match mm.map_folio(page, f, vma.prot, write) {
                Err(FaultError::Oom) if mm.range_is_empty(page, 1) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(FaultError::Oom))
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
                let vma = self.vmas.find(page).cloned().ok_or(FaultError::Segv)?;
                self.anon_fault(page, vma, 0, false)?;
            }
            let pa = self.tables.get(page).expect("just mapped").pa_of(page);
            let off = (at.as_u64() - page.as_u64()) as usize;
            let n = (PAGE_SIZE - off).min(data.len() - done);
            self.env().write_page(pa.add(off), &data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Copy between `buf` and this address space from `va` as a debugger does
    /// (Linux's `access_remote_vm` with FOLL_FORCE, for /proc/self/mem), page by page:
    /// any VMA may be read or written whatever its protection. Stops at the first page
    /// outside every VMA (or one that cannot be allocated); returns the bytes copied.
    pub fn access_forced(&mut self, va: VirtAddr, buf: Transfer<'_>) -> usize {
        let len = buf.len();
        let mut done = 0;
        let mut buf = buf;
        while done < len {
            let Some(at) = va.as_u64().checked_add(done as u64).map(VirtAddr) else {
                break;
            };
            let page = at.align_down(PAGE_SIZE);
            let Ok(pa) = self.forced_page(page, buf.is_write()) else {
                break;
            };
            let off = (at.as_u64() - page.as_u64()) as usize;
            let n = (PAGE_SIZE - off).min(len - done);
            match &mut buf {
                Transfer::Read(b) => self.env().read_page(pa.add(off), &mut b[done..done + n]),
                Transfer::Write(b) => self.env().write_page(pa.add(off), &b[done..done + n]),
            }
            done += n;
        }
        done
    }

    /// The frame of `page` for a forced access, faulted in (the VMA's mTHP orders, as
    /// a fault; mapped as the VMA allows). For a write the page is first made
    /// exclusive by the copy-on-write path unless it is (a writable entry maps an
    /// exclusive page: *who may write a page*), its entry marked dirty where it is
    /// writable, and its folio's lazyfree mark dropped: the data is wanted (Linux's
    /// `set_page_dirty_lock` after the write).
    fn forced_page(&mut self, page: VirtAddr, write: bool) -> Result<PhysAddr, FaultError> {
        let vma = self.vmas.find(page).cloned().ok_or(FaultError::Segv)?;
        if self.tables.get(page).is_none() {
            self.missing(page, vma.clone(), write)?;
        }
        let leaf = self.tables.get(page).expect("just mapped");
        let mut pa = leaf.pa_of(page);
        if !write || vma.is_shared() {
            // A shared file page is written where it is, as any mapper's store would.
            return Ok(pa);
        }
        if leaf.pte.is_writable() {
            self.tables.write_fault(page);
        } else if folio::anon_exclusive(pa) != Some(true) {
            self.copy_on_write(page, pa, vma)?;
            pa = self.tables.get(page).expect("copied").pa_of(page);
        }
        Folio::lock(pa).set_lazyfree(false);
        Ok(pa)
    }
}

/// The direction and buffer of a forced access (`Mm::access_forced`).
pub enum Transfer<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Transfer<'_> {
    fn len(&self) -> usize {
        match self {
            Transfer::Read(b) => b.len(),
            Transfer::Write(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_write(&self) -> bool {
        matches!(self, Transfer::Write(_))
    }
}
