//! What the page-table layer needs from the machine: table memory, frames' folio
//! boundaries, TLB maintenance, CPU features and the counters.
//!
//! The layer is generic over [`PtMachine`] (static dispatch). The kernel implements it
//! with the linear map, the frame allocator, the folio metadata and real TLBI/DSB
//! instructions; host tests implement it with `model::ModelMachine`.

use core::sync::atomic::AtomicU64;

use crate::mm::addr::{PhysAddr, VirtAddr, CONT_SIZE, PAGE_SIZE, PTRS_PER_TABLE};

use super::counters::Counters;

/// An address-space identifier (TTBR0_EL1.ASID, 16 bits with TCR_EL1.AS = 1).
pub type Asid = u16;

/// One translation table: 512 descriptors, updated atomically because the hardware
/// walker may set AF and dirty in them concurrently.
pub type TableEntries = [AtomicU64; PTRS_PER_TABLE];

/// The pages of one folio: the layer folds a contiguous block only inside one folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolioSpan {
    /// Physical address of the folio's first page.
    pub head: PhysAddr,
    /// Number of 4 KiB pages in the folio.
    pub nr_pages: usize,
}

/// Whether the 64 KiB from `pa` lie inside one folio.
pub(crate) fn block_in_one_folio<E: PtMachine>(env: &E, pa: PhysAddr) -> bool {
    env.folio_of(pa).contains(pa, CONT_SIZE)
}

impl FolioSpan {
    /// Whether `[pa, pa + bytes)` lies inside the folio. Inline: the fold test runs it
    /// per entry (`contpte=naive`), and where it lands among codegen units must not
    /// decide whether that is a call.
    #[inline]
    pub fn contains(&self, pa: PhysAddr, bytes: usize) -> bool {
        let end = self.head.add(self.nr_pages * PAGE_SIZE);
        self.head <= pa && pa.add(bytes) <= end
    }
}

/// CPU features the layer adapts to, read from the ID registers at boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Hardware Access-flag management enabled (FEAT_HAFDBS, TCR_EL1.HA).
    pub hw_af: bool,
    /// Hardware dirty-state management enabled (FEAT_HAFDBS level 2, TCR_EL1.HD).
    /// This layer uses it only together with `hw_af`, as Linux does.
    pub hw_dirty: bool,
    /// TLBI range instructions (FEAT_TLBIRANGE: TLBI RVALE1IS).
    pub range_tlbi: bool,
    /// Changing the Contiguous bit of live entries without a TLBI is safe
    /// (FEAT_BBM level 2 on a CPU known not to raise TLB conflict aborts). Off by
    /// default: a runtime switch for the kernel, read on every operation.
    pub bbml2: bool,
}

/// TLB maintenance and barriers. The kernel implements these with broadcast,
/// ASID-tagged instructions; the host model records them.
///
/// The layer calls this interface only through its own counted and checked wrapper
/// (`Ctx::tlbi_*`), so every TLBI is counted and seen by the checker exactly once.
pub trait Tlb {
    /// TLBI VALE1IS (`last_level`) or VAE1IS (also walk-cache entries) for one page.
    fn page(&self, asid: Asid, va: VirtAddr, last_level: bool);
    /// TLBI RVALE1IS: last-level entries for `pages` pages from `va`. Only called when
    /// [`Features::range_tlbi`] is set.
    fn range(&self, asid: Asid, va: VirtAddr, pages: usize);
    /// TLBI ASIDE1IS: everything tagged with `asid`.
    fn asid(&self, asid: Asid);
    /// TLBI VMALLE1IS: everything.
    fn all(&self);
    /// DSB ISH: waits for the TLBIs (and descriptor stores) before it to complete.
    fn dsb(&self);
}

/// The machine as seen by the page-table layer.
pub trait PtMachine {
    type Tlb: Tlb;

    /// The table at `pa`. Only called with addresses from [`PtMachine::alloc_table`] that
    /// have not been freed.
    fn table(&self, pa: PhysAddr) -> &TableEntries;
    /// A zeroed 4 KiB table, or `None` when out of memory.
    fn alloc_table(&self) -> Option<PhysAddr>;
    /// Returns a table to the allocator. The layer frees only zeroed tables, and only
    /// after the TLBI that removed them from the walk caches has completed.
    fn free_table(&self, pa: PhysAddr);
    /// The folio that the frame at `pa` belongs to (a single page if none).
    fn folio_of(&self, pa: PhysAddr) -> FolioSpan;
    /// Whether the environment answers [`PtMachine::anon_exclusive`] at all: when false
    /// (the default) the checker skips the invariant and its walk.
    fn tracks_anon_exclusive(&self) -> bool {
        false
    }
    /// For the checker (test builds): whether the page at `pa` is anon-exclusive,
    /// mapped by one address space only, which may therefore write it without copying.
    /// `None`: not known, no check. The checker asks after every operation about every
    /// writable or DBM user entry in the operation's range, the first page of a 2 MiB
    /// block standing for the block (Linux keeps the flag on a PMD-mapped folio's head).
    fn anon_exclusive(&self, pa: PhysAddr) -> Option<bool> {
        let _ = pa;
        None
    }
    /// For the checker (test builds, with [`PtMachine::anon_exclusive`]): the first of the
    /// `n` pages from `pa` (one entry's) that is pinned but not anon-exclusive, which
    /// no mapping may leave (`mm::pin`'s rule 2). `None`: none, or not known.
    fn pinned_shared(&self, pa: PhysAddr, n: usize) -> Option<PhysAddr> {
        let _ = (pa, n);
        None
    }
    fn tlb(&self) -> &Self::Tlb;
    fn features(&self) -> Features;
    /// Where the layer counts its work.
    fn counters(&self) -> &Counters;
    /// The index of the CPU running this code (its slot in the counters); a machine
    /// with one CPU answers 0.
    fn cpu(&self) -> usize {
        0
    }
}
