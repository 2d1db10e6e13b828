//! A user address space (`Mm`): its page tables, its VMAs and its heap (brk). What
//! happens to it is split by the path a reader follows:
//!
//! ```text
//! aspace.rs   Mm, the invariants below, shared helpers (batches, release)
//! fault.rs    a fault: classify, demand-zero mTHP folios, populate; a debugger's access
//! cow.rs      a write to a shared folio: whole-folio reuse, page or folio copy
//! map.rs      mmap, munmap, mprotect, madvise, mincore, brk
//! mremap.rs   mremap: shrink, grow in place, move (folios whole)
//! fork.rs     the child's copy (MADV_DONTFORK, MADV_WIPEONFORK)
//! mlock.rs    mlock, munlock, mlockall: locked VMAs, populated, never discarded
//! report.rs   /proc/self/thpmaps
//! ```
//!
//! `Mm` is generic over the machine it runs on ([`MmEnv`]: the page-table environment
//! plus page contents and the tables' owner), as `pgtable` is over `PtEnv`: the kernel
//! runs it on `KernelPt` (the default, monomorphised: no dynamic dispatch), host tests
//! on `host::HostMm`, a simulated RAM walked by the software model (`mm/tests`).
//!
//! Every page-table entry holds one reference and one map count on its page's folio.
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

use alloc::vec::Vec;

use super::addr::{PMD_SIZE, PTRS_PER_TABLE};
use super::pgtable::{Prot, PteAttrs, Unmapped};
use super::vma::{VmProt, VmaFlags, VmaSet};
use super::{folio, zero};
use super::{MemType, PhysAddr, VirtAddr, PAGE_SIZE};

pub use super::env::MmEnv;
pub use crate::uapi::Errno;
use crate::uapi::ENOMEM;

/// Top of the initial stack, and its reserved size.
pub const STACK_TOP: u64 = 0x0000_ffff_f000_0000;
pub const STACK_SIZE: u64 = 8 << 20;
/// mmap searches downwards from here (below the stack and a gap).
pub const MMAP_BASE: u64 = STACK_TOP - STACK_SIZE - (256 << 20);
/// Lowest address mmap hands out (the first 64 KiB stay unmapped: NULL dereferences).
pub const MMAP_MIN: u64 = 0x1_0000;
pub(super) const PMD: u64 = PMD_SIZE as u64;
/// Pages per batch of range work (2 MiB, aligned): bounds what one step collects.
pub(super) const BATCH_PAGES: usize = PTRS_PER_TABLE;
/// Pages per page-table operation of work that collects nothing (64 MiB, aligned):
/// bounds only what the checker records of one operation in test builds (a block's
/// entries per 64 KiB touched, 1024 blocks), and costs one operation per 32 tables.
pub(super) const WIDE_BATCH_PAGES: usize = 16 * 1024;

/// An address space on the machine `E`: the kernel's (`arch::aarch64::mm::machine`
/// names it `Mm` there) or the simulated RAM of host tests.
pub struct Mm<E: MmEnv> {
    pub tables: E::Tables,
    pub vmas: VmaSet,
    pub brk_start: VirtAddr,
    pub brk: VirtAddr,
    /// prctl(PR_SET_THP_DISABLE): no large folio is allocated or collapsed here,
    /// whatever the policy and the VMA's hint (Linux's MMF_DISABLE_THP). The process
    /// layer carries it across fork and exec.
    pub thp_disabled: bool,
    /// mlockall(MCL_FUTURE): the lock flags every new VMA gets (Linux's `def_flags`).
    /// A new address space (exec, fork's child) starts without, as on Linux.
    pub def_flags: VmaFlags,
}

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

pub(super) fn pages(start: VirtAddr, end: VirtAddr) -> usize {
    ((end.as_u64() - start.as_u64()) / PAGE_SIZE as u64) as usize
}

/// `[start, end)` cut at 2 MiB boundaries: pieces of at most `BATCH_PAGES` pages, none
/// cutting a block that the range does not cut itself.
pub(super) fn batches(
    start: VirtAddr,
    end: VirtAddr,
) -> impl Iterator<Item = (VirtAddr, VirtAddr)> {
    batches_of(start, end, BATCH_PAGES)
}

/// `[start, end)` cut at multiples of `batch` pages (a multiple of 512): pieces of at
/// most `batch` pages, none cutting a block that the range does not cut itself.
pub(super) fn batches_of(
    start: VirtAddr,
    end: VirtAddr,
    batch: usize,
) -> impl Iterator<Item = (VirtAddr, VirtAddr)> {
    let step = batch * PAGE_SIZE;
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

/// Drop what unmapping one record took (a copy-on-write's replaced page): its
/// pages' map counts and references, folio by folio.
pub(super) fn release_one(r: Unmapped) {
    super::lazyfree::unmapped_marked(release_run(r.pa, r.pages));
}

/// Drop what an unmap returned: one map count and one reference per page, folio by
/// folio. Records of consecutive frames are merged first (an unmap without contiguous
/// blocks returns one record per page), so a folio unmapped whole is accounted in one
/// step and never looks partially mapped on the way. The records are one batch's
/// (at most `BATCH_PAGES`).
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

impl<E: MmEnv> Mm<E> {
    /// An empty address space on the machine `env`.
    pub fn new_in(env: &E) -> Result<Self, Errno> {
        Ok(Mm {
            tables: env.new_tables().map_err(|_| ENOMEM)?,
            vmas: VmaSet::new(),
            brk_start: VirtAddr(0),
            brk: VirtAddr(0),
            thp_disabled: false,
            def_flags: VmaFlags::default(),
        })
    }

    /// The folio orders a fault in a VMA with this hint may allocate.
    pub fn thp_orders(&self, hint: super::vma::HugeHint) -> u16 {
        if self.thp_disabled {
            0
        } else {
            super::mthp::POLICY.allowed_orders(hint)
        }
    }

    /// The machine this address space runs on.
    pub(super) fn env(&self) -> &E {
        self.tables.env()
    }
}

impl<E: MmEnv> Drop for Mm<E> {
    fn drop(&mut self) {
        while let Some(v) = self.vmas.next_from(VirtAddr(0)).cloned() {
            // Whole VMAs: their edges cut no block, so this needs no memory.
            self.munmap(v.start, v.end)
                .expect("unmapping a whole VMA splits nothing");
        }
        super::lazyfree::forget_owner(self.tables.root());
    }
}
