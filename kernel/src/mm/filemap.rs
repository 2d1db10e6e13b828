//! Faults on a file mapping (`VmaKind::File`): the page the fault needs comes from the
//! file's page cache (`shmem`), allocated there at the folio sizes `shmem_enabled`
//! allows, then mapped as Linux 6.12's `finish_fault` does: the whole folio at once
//! where it lies inside the VMA and one page table and nothing is mapped there yet (a
//! 2 MiB folio 2 MiB-aligned as one block; from 64 KiB up, aligned, folded into
//! contiguous blocks by `pgtable`), else the one page.
//!
//! A shared mapping maps the file's folios writable where the VMA is (every mapper
//! sees every write: no copy-on-write, so a write to a read-only entry only makes it
//! writable). A private mapping maps them read-only; a write copies the page into an
//! anonymous one (`cow`; on an empty entry directly, as Linux's `do_cow_fault`).
//! Beyond the file's end the fault is SIGBUS; a file cut short is unmapped past its
//! new end in every address space (`unmap_file_from`, Linux's `unmap_mapping_range`
//! with `even_cows`), so what lies there is SIGBUS at once.

use super::addr::PMD_SIZE;
use super::aspace::Mm;
use super::folio::{self, Folio};
use super::install::{self, map_error, pte_attrs, FaultError};
use super::machine::MmMachine;
use super::reclaim;
use super::shmem::{self, Held, Shmem};
use super::vma::{FileMap, Vma};
use super::{VirtAddr, PAGE_SIZE};
use crate::uapi::Errno;
use alloc::sync::Arc;

const PAGE: u64 = PAGE_SIZE as u64;

/// A fault on the unmapped `page` of the file VMA `vma`.
pub(super) fn fault<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    vma: &Vma,
    write: bool,
) -> Result<(), FaultError> {
    let m = vma.file().expect("a file VMA");
    let index = m.index(page);
    let size = m.file.size();
    if index >= size.div_ceil(PAGE) {
        return Err(FaultError::Bus);
    }
    // userfaultfd (MISSING_SHMEM): a page the file does not have is the handler's.
    if let Some(uffd) = vma.flags.userfault {
        match m.file.lookup(index) {
            Some(h) => drop(Folio::lock(h.folio.head()).put(1)),
            None => return Err(FaultError::Userfault(uffd)),
        }
    }
    let orders = file_orders(mm, vma, m, index, size);
    reclaim::if_low(mm);
    let held = reclaim::alloc_or_reclaim(mm, 1, |mm| m.file.get(mm.env(), index, orders))
        .ok_or(FaultError::Oom)?;
    if write && !m.shared {
        // A private write: a copy of the file's page, this mapping's own.
        let pa = shmem::page_of(&held, index);
        let r = match folio::alloc_anon_copy(mm.env(), 0, pa) {
            Some(copy) => install::map_folio(mm, page, copy, vma.prot, true),
            None => Err(FaultError::Oom),
        };
        drop(Folio::lock(held.folio.head()).put(1));
        return r;
    }
    map_cached(mm, page, vma, m, held, write)
}

/// Map the held folio around `page`: all of it if it fits (module doc), else the
/// page; each mapped page takes its reference and map count, and the lookup's
/// reference goes (under the same folio lock).
pub(super) fn map_cached<E: MmMachine>(
    mm: &mut Mm<E>,
    page: VirtAddr,
    vma: &Vma,
    m: &FileMap,
    held: Held,
    write: bool,
) -> Result<(), FaultError> {
    let f = held.folio;
    let n = f.nr_pages();
    let base = m.va_of(held.first);
    let table = base.align_down(PMD_SIZE);
    // Never past the end of the file: an access there must stay SIGBUS, even where
    // the folio (a size `always` allows) reaches beyond it (Linux 6.18's "do not
    // populate page table entries beyond i_size").
    let in_file = held.first + n as u64 <= m.file.size().div_ceil(PAGE);
    let whole = n > 1
        && in_file
        && base >= vma.start
        && vma.end.offset_from(base) >= n * PAGE_SIZE
        && base.add(n * PAGE_SIZE) <= table.add(PMD_SIZE)
        && mm.tables.is_unmapped(base, n);
    let (va, first, count) = if whole {
        (base, 0, n)
    } else {
        (page, (m.index(page) - held.first) as usize, 1)
    };
    let prot = if m.shared {
        vma.prot
    } else {
        // Private: read-only until a write copies the page (`cow`).
        super::vma::VmProt {
            write: false,
            ..vma.prot
        }
    };
    let pa = f.page(first);
    let dirty = write && prot.write;
    let r = install::map_run(mm, va, pa, count, pte_attrs(prot), dirty);
    let locked = Folio::lock(pa);
    if r.is_ok() {
        locked.map(first, count);
    }
    drop(locked.put(1));
    r.map_err(map_error)?;
    install::dirty_block(mm, va, count, dirty)
}

impl<E: MmMachine> Mm<E> {
    /// The truncation of `file` to `keep` pages: unmap every page of this address
    /// space that maps file page `keep` or later, in shared and private mappings of
    /// it alike (a private mapping's copies too, as Linux's `truncate_pagecache`).
    /// The caller holds this `Mm`'s lock (lock table L2) and no other.
    pub fn unmap_file_from(&mut self, file: &Arc<Shmem>, keep: u64) -> Result<(), Errno> {
        self.unmap_file_range(file, keep, u64::MAX, true)
    }

    /// Unmap what maps file pages `[first, end)` of `file` here: in shared mappings
    /// every page, in private ones the file's pages and, with `cows`, their private
    /// copies too (truncation: Linux's `even_cows`; a punched hole leaves a private
    /// copy alone). The caller holds this `Mm`'s lock (L2) and no other.
    pub fn unmap_file_range(
        &mut self,
        file: &Arc<Shmem>,
        first: u64,
        end: u64,
        cows: bool,
    ) -> Result<(), Errno> {
        let mut at = VirtAddr(0);
        while let Some(v) = self.vmas.next_from(at).cloned() {
            at = v.end;
            let Some(m) = v.file().filter(|m| Arc::ptr_eq(&m.file, file)) else {
                continue;
            };
            let (lo, hi) = (m.index(v.start), m.index(VirtAddr(v.end.as_u64() - PAGE)));
            if hi < first || lo >= end {
                continue;
            }
            let from = if lo >= first { v.start } else { m.va_of(first) };
            let to = if hi < end { v.end } else { m.va_of(end) };
            if m.shared || cows {
                self.unmap_pages(from, to)?;
            } else {
                self.unmap_file_pages(from, to)?;
            }
        }
        Ok(())
    }

    /// Unmap the pages of `[from, to)` (in one private file mapping) that map the
    /// file's own folios, leaving the private copies.
    fn unmap_file_pages(&mut self, from: VirtAddr, to: VirtAddr) -> Result<(), Errno> {
        let mut a = self.tables.next_populated(from, to);
        while a < to {
            let file_page = self
                .tables
                .get(a)
                .map(|l| l.pa_of(a))
                .is_some_and(|pa| !super::zero::is_zero(pa) && Folio::of(pa).is_file());
            if file_page {
                self.unmap_pages(a, a.add(PAGE_SIZE))?;
            }
            a = self.tables.next_populated(a.add(PAGE_SIZE), to);
        }
        Ok(())
    }
}

/// The folio orders the cache may allocate for `index` of a file of `size` bytes
/// mapped by `vma`: what `shmem_enabled` allows, of those the sizes whose aligned
/// block of the file lands on an equally aligned block inside the VMA (Linux's
/// `thp_vma_suitable_order`), none under PR_SET_THP_DISABLE.
fn file_orders<E: MmMachine>(mm: &Mm<E>, vma: &Vma, m: &FileMap, index: u64, size: u64) -> u16 {
    if mm.thp_disabled {
        return 0;
    }
    let mut mask = shmem::allowed_orders(vma.huge, size, index);
    if mask == 0 {
        return 0;
    }
    for order in super::mthp::MTHP_ORDERS {
        let n = 1u64 << order;
        let va = m.va_of(index & !(n - 1));
        let fits = va.is_aligned(PAGE_SIZE << order)
            && va >= vma.start
            && vma.end.as_u64().saturating_sub(va.as_u64()) >= n * PAGE;
        if !fits {
            mask &= !(1 << order);
        }
    }
    mask
}
