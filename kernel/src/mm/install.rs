//! Putting folios into the page tables and taking them out, with their accounting:
//! the layer every fault handler (`fault`, `anon`, `cow`, `zero`, `filemap`,
//! `hugetlb`) and fork's pinned copy share, below all of them.
//!
//! Every page-table entry holds one reference and one map count on its page's folio.
//! A new folio is marked exclusive before any entry maps it (*who may write a page*,
//! `aspace`); an unmap's records give their counts back folio by folio (`release`).

use alloc::vec::Vec;

use super::addr::{CONT_PMD_SIZE, PMD_SIZE};
use super::aspace::Mm;
use super::folio::{self, Folio};
use super::machine::MmMachine;
use super::pgtable::{MapError, Prot, PteAttrs, Unmapped};
use super::vma::{UffdId, VmProt};
use super::zero;
use super::{MemType, PhysAddr, VirtAddr, PAGE_SIZE};

/// Why a fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No VMA, or the VMA does not allow the access: SIGSEGV.
    Segv,
    /// No memory for the page or its tables.
    Oom,
    /// A file mapping's page past the end of the file, or a hugetlb pool that is
    /// empty: SIGBUS.
    Bus,
    /// An unpopulated page of a VMA registered with this userfaultfd: the process
    /// layer hands the fault to it, waits with the `Mm` lock dropped, and retries
    /// (Linux's VM_FAULT_RETRY from `handle_userfault`; `proc::userfault`).
    Userfault(UffdId),
}

/// A failed map of a fault's entries (they were unmapped: the fault path maps only
/// empty entries, so only memory can be missing).
pub(super) fn map_error(e: MapError) -> FaultError {
    match e {
        MapError::NoMemory => FaultError::Oom,
        MapError::AlreadyMapped => unreachable!("fault path maps only empty entries"),
    }
}

/// The entry attributes of a page of a VMA with protection `prot`.
pub(super) fn pte_attrs(prot: VmProt) -> PteAttrs {
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

/// Whether `n` pages at `va` are mapped by one block descriptor: a level-2 contiguous
/// block (32 MiB) or a PMD block (2 MiB), aligned to its size.
fn is_block(va: VirtAddr, n: usize) -> bool {
    let bytes = n * PAGE_SIZE;
    (bytes == PMD_SIZE || bytes == CONT_PMD_SIZE) && va.is_aligned(bytes)
}

/// Map the `n` consecutive pages from `pa` at `va` (nothing mapped there) with the
/// largest entries that fit: a level-2 contiguous block, a PMD block, else level-3
/// entries, dirty if `dirty` (the contiguous layer folds whole aligned 64 KiB blocks).
/// Every mapping of a folio's pages by a fault or a fill goes through here.
pub(super) fn map_run<E: MmMachine>(
    mm: &mut Mm<E>,
    va: VirtAddr,
    pa: PhysAddr,
    n: usize,
    attrs: PteAttrs,
    dirty: bool,
) -> Result<(), MapError> {
    if !is_block(va, n) {
        return if dirty {
            mm.tables.map_dirty(va, pa, n, attrs)
        } else {
            mm.tables.map(va, pa, n, attrs)
        };
    }
    if n * PAGE_SIZE == CONT_PMD_SIZE {
        mm.tables.map_l2c(va, pa, attrs)
    } else {
        mm.tables.map_pmd(va, pa, attrs)
    }
}

/// After `map_run` for a write that may write (`dirty`): a block descriptor is mapped
/// clean, so without hardware dirty state it is made writable now, which dirties it;
/// otherwise the faulting store would take a second fault just to mark it.
pub(super) fn dirty_block<E: MmMachine>(
    mm: &mut Mm<E>,
    va: VirtAddr,
    n: usize,
    dirty: bool,
) -> Result<(), FaultError> {
    if dirty && is_block(va, n) && !mm.env().features().hw_dirty {
        mm.tables.make_writable(va, n).map_err(map_error)?;
    }
    Ok(())
}

/// Map the new folio `f` whole at `va` and account it (`map_run`). On failure its
/// allocation reference, the only one, frees it. The pages are marked exclusive before
/// any entry maps them (who may write a page). Nobody else can reach a new folio but
/// through this `Mm`, so it is set up without its lock (folio protocol, rule 1's
/// exception). For a write fault the pages are mapped dirty.
pub(super) fn map_folio<E: MmMachine>(
    mm: &mut Mm<E>,
    va: VirtAddr,
    f: Folio,
    prot: VmProt,
    write: bool,
) -> Result<(), FaultError> {
    let n = f.nr_pages();
    f.mark_new_exclusive();
    let r = map_run(mm, va, f.head(), n, pte_attrs(prot), write);
    match r {
        Ok(()) => f.account_new_mapping(),
        // Nothing mapped it: the allocation's reference was the last.
        Err(_) => drop(Folio::lock(f.head()).put(1)),
    }
    r.map_err(map_error)?;
    dirty_block(mm, va, n, write && prot.write)
}

/// Map a copy of the page `old` at `page` in its place, with `prot`: one
/// break-before-make, exclusive before any entry maps it (copy-on-write of a page,
/// and fork's copy of a pinned page for the child). Replacing one page of a 2 MiB
/// block splits it, which needs a table.
pub(super) fn replace_with_copy<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    old: PhysAddr,
    prot: VmProt,
    dirty: bool,
) -> Result<(), FaultError> {
    let new = folio::alloc_anon_copy(mm.env(), 0, old).ok_or(FaultError::Oom)?;
    let nf = Folio::lock(new.head());
    nf.set_exclusive(0, 1, true);
    match mm
        .tables
        .replace_page(page, new.head(), pte_attrs(prot), dirty)
    {
        Ok(gone) => {
            nf.map(0, 1);
            drop(nf.put(1));
            release_one(gone);
            Ok(())
        }
        Err(e) => {
            drop(nf.put(1));
            Err(map_error(e))
        }
    }
}

/// Unmap the `n` pages from `base` that the new folio `new` (a copy of what they
/// map, not mapped yet) is to replace; if that fails, `new`, whose allocation
/// reference is its only one, is freed (copy-on-write of a whole folio, fork's copy
/// of a pinned folio, hugetlb's copy of a page).
pub(super) fn unmap_for<E: MmMachine>(
    mm: &mut Mm<E>,
    base: VirtAddr,
    n: usize,
    new: Folio,
) -> Result<(), FaultError> {
    match mm.tables.unmap(base, n) {
        Ok(records) => {
            release(records);
            Ok(())
        }
        Err(e) => {
            drop(Folio::lock(new.head()).put(1));
            Err(map_error(e))
        }
    }
}

/// Drop what unmapping one record took (a copy-on-write's replaced page): its
/// pages' map counts and references, folio by folio.
pub(super) fn release_one(r: Unmapped) {
    super::lazyfree::unmapped_marked(release_run(r.pa, r.pages));
}

/// Drop what an unmap returned: one map count and one reference per page, folio by
/// folio. Records of consecutive frames are merged first (an unmap without contiguous
/// blocks returns one record per page), so a folio unmapped whole is accounted in one
/// step and never looks partially mapped on the way. The records are one batch's
/// (at most `batch::BATCH_PAGES`).
pub(super) fn release(records: Vec<Unmapped>) {
    let mut runs: Vec<(PhysAddr, usize)> = Vec::new();
    for r in records {
        match runs.last_mut() {
            Some((pa, n)) if pa.add(*n * PAGE_SIZE) == r.pa => *n += r.pages,
            _ => runs.push((r.pa, r.pages)),
        }
    }
    let marked = runs
        .into_iter()
        .map(|(pa, pages)| release_run(pa, pages))
        .sum();
    super::lazyfree::unmapped_marked(marked);
}

/// Drop the map counts and references of `pages` consecutive frames from `pa`; the
/// zero page's entries account nothing (`zero`). Returns how many of the mappings
/// were a lazyfree folio's first page: each may leave its list entry stale.
fn release_run(pa: PhysAddr, pages: usize) -> usize {
    let mut marked = 0;
    zero::account(pa, pages, false, |pa, pages| {
        folio::for_each_folio(pa, pages, |f, first, n| {
            marked += usize::from(first == 0 && f.is_lazyfree());
            f.unmap(first, n)
        })
    });
    marked
}
