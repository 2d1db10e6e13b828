//! Faults on a user address space: classify, then hand on. No VMA or a forbidden
//! access is SIGSEGV. A missing entry: a hugetlb page (`hugetlb::map`), a file's page
//! (`filemap`), the shared zero page for a read (`zero`), a demand-zero folio for a
//! write (`anon`). A write to a read-only entry of a writable VMA: a shared file's page
//! is made writable where it is, anything else is copy-on-write (`cow`). Each of them
//! maps through `install`, below them all. Population (MAP_POPULATE, MADV_POPULATE_*)
//! is faults in a row. A debugger's access (/proc/self/mem, `access_forced`) faults
//! pages in whatever the VMA's protection, and breaks copy-on-write before it writes.

use core::sync::atomic::{AtomicU64, Ordering};

use super::addr::PMD_SIZE;
use super::anon;
use super::aspace::Mm;
use super::cow;
use super::filemap;
use super::folio::{self, Folio};
use super::hugetlb;
use super::install::{map_error, FaultError};
use super::machine::MmMachine;
use super::mthp;
use super::pgtable::FaultFix;
use super::vma::Vma;
use super::zero;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};

/// Which access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

/// Faults handled, resolved or not (Linux's `pgfault` in /proc/vmstat).
pub static PGFAULT: AtomicU64 = AtomicU64::new(0);

impl<E: MmMachine> Mm<E> {
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
        let page = va.align_down(PAGE_SIZE);
        let fix = match access {
            Access::Write => self.tables.write_fault(page),
            Access::Read | Access::Exec => self.tables.access_flag_fault(page),
        };
        match fix {
            FaultFix::Fixed => Ok(()),
            // userfaultfd: the handler's (a file's page only if its cache has none,
            // `filemap`).
            FaultFix::NotMapped => match vma.flags.userfault {
                Some(uffd) if vma.file().is_none() => Err(FaultError::Userfault(uffd)),
                _ => missing(self, page, vma, access == Access::Write),
            },
            // The file's page is every mapper's: writing it needs no copy (a hugetlb
            // page's entries all at once).
            FaultFix::NotWritable(_) if vma.is_shared() => {
                let unit = vma.hugetlb().map_or(PAGE_SIZE, |h| h.size.bytes());
                let base = page.align_down(unit);
                self.tables
                    .make_writable(base, unit / PAGE_SIZE)
                    .map_err(map_error)
            }
            FaultFix::NotWritable(leaf) => cow::copy_on_write(self, page, leaf.pa_of(page), vma),
        }
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
                anon::fault(self, page, vma, 0, false)?;
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
            let Ok(pa) = forced_page(self, page, buf.is_write()) else {
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
}

/// A fault on the unmapped `page` of `vma`: a hugetlb page, the file's page cache for
/// a file mapping, else anonymous memory.
fn missing<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    vma: Vma,
    write: bool,
) -> Result<(), FaultError> {
    if vma.hugetlb().is_some() {
        hugetlb::map::missing(mm, page, &vma, write)
    } else if vma.file().is_some() {
        filemap::fault(mm, page, &vma, write)
    } else {
        missing_anon(mm, page, vma, write)
    }
}

/// A fault on the unmapped `page` of the anonymous `vma`: a write allocates (`anon`),
/// a read maps the shared zero page (`zero`), or where a 2 MiB folio is allowed and
/// fits the huge zero page, as Linux's `do_huge_pmd_anonymous_page`: with
/// `use_zero_page` off it allocates the folio, and the small zero page when the huge
/// one cannot be had.
fn missing_anon<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    vma: Vma,
    write: bool,
) -> Result<(), FaultError> {
    let allowed = mm.thp_orders(vma.huge);
    if write {
        return anon::fault(mm, page, vma, allowed, true);
    }
    let base = page.align_down(PMD_SIZE);
    let pmd = mthp::fault_orders(allowed, page, vma.start, vma.end)
        .next()
        .is_some_and(|order| order == mthp::PMD_ORDER && mm.tables.is_unmapped(base, 512));
    if pmd {
        if !mthp::USE_ZERO_PAGE.load(Ordering::Relaxed) {
            return anon::fault(mm, page, vma, allowed, false);
        }
        if zero::map_huge(mm, base, &vma)? {
            return Ok(());
        }
    }
    zero::map(mm, page, &vma)
}

/// The frame of `page` for a forced access, faulted in (the VMA's mTHP orders, as
/// a fault; mapped as the VMA allows). For a write the page is first made
/// exclusive by the copy-on-write path unless it is (a writable entry maps an
/// exclusive page: *who may write a page*), its entry marked dirty where it is
/// writable, and its folio's lazyfree mark dropped: the data is wanted (Linux's
/// `set_page_dirty_lock` after the write).
fn forced_page<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    write: bool,
) -> Result<PhysAddr, FaultError> {
    let vma = mm.vmas.find(page).cloned().ok_or(FaultError::Segv)?;
    if mm.tables.get(page).is_none() {
        missing(mm, page, vma.clone(), write)?;
    }
    let leaf = mm.tables.get(page).expect("just mapped");
    let mut pa = leaf.pa_of(page);
    if !write || vma.is_shared() {
        // A shared file page is written where it is, as any mapper's store would.
        return Ok(pa);
    }
    if leaf.pte.is_writable() {
        mm.tables.write_fault(page);
    } else if folio::anon_exclusive(pa) != Some(true) {
        cow::copy_on_write(mm, page, pa, vma)?;
        pa = mm.tables.get(page).expect("copied").pa_of(page);
    }
    Folio::lock(pa).set_lazyfree(false);
    Ok(pa)
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
