//! Page tables of user address spaces: stage 1, EL1&0 regime, 4 KiB granule, 48-bit
//! virtual addresses, four levels (0..=3), one ASID per address space.
//!
//! ```text
//! PageTable (this file: the API)            map / unmap / protect / wrprotect /
//!   |                                          clear_young_dirty / make_writable /
//!   |                                          test_and_clear_young / unfold_edges /
//!   |                                          get / faults
//!   +-- cursor.rs   walk the tables (read only)
//!   +-- contpte.rs  level-3 entries: Contiguous bit, fold/unfold/convert, batches
//!   +-- pmd.rs      level-2 blocks: map, change, clear, split
//!   +-- contpmd.rs  level-2 contiguous blocks: 16 blocks of 2 MiB, 32 MiB (hugetlb)
//!   +-- fork.rs     fork's copy of a range into the child, one walk of the parent
//!   +-- collapse.rs in-place collapse: refold 64 KiB blocks, table -> 2 MiB block
//!   +-- remap.rs    mremap's move of entries to another range, blocks kept whole
//!   +-- ctx.rs      the single store function, TLB maintenance, op begin/finish,
//!   |               allocating and freeing tables
//!   |     +-- check.rs     the checker (observes every store, TLBI, DSB; a leaf: it
//!   |                      reads tables through the cursor, predicates from desc)
//!   |     +-- counters.rs  every fold, unfold, TLBI, write counted
//!   +-- desc.rs     descriptor bits
//!   +-- machine.rs  what the machine provides (PtMachine, Tlb, Features)
//!   +-- model.rs    host only: in-memory machine and software walk
//!   +-- tests/      host only: unit tests, one test per shipped bug, property tests
//! ```
//!
//! ## Locking and concurrency
//!
//! Every mutating operation takes `&mut PageTable`: the caller holds the
//! address-space lock (the kernel wraps the `PageTable` in it). Under the lock this
//! layer is the only writer of descriptors. The hardware walker of any CPU reads them
//! concurrently, and with FEAT_HAFDBS also sets AF and clears `AP[2]` (dirty); therefore
//! descriptors are `AtomicU64`, cleared with `swap` and changed with compare-and-swap
//! loops (`ctx::Write`), so that no hardware update is lost. The TLBIs are broadcast
//! (inner shareable) so that other CPUs running this ASID are covered.
//!
//! ## Operation protocol
//!
//! Each API call is one operation (`PageTable::op`): it checks its arguments, changes
//! entries through the single store function, records which ranges need a TLBI, and at
//! its end issues that TLBI, a DSB, frees the tables it emptied, and runs the checker.
//! When a call returns, no TLB holds a translation more permissive than the tables, nor
//! a stale one less permissive: making a valid entry writable (copy-on-write reuse,
//! the software dirty fault, mprotect), executable or EL0-accessible is invalidated
//! too, because the architecture lets a TLB keep an entry that generates a Permission
//! fault, and the access would fault on it again (see `check.rs` for the rule). Only
//! setting AF needs no TLBI: an entry with AF = 0 is never cached.

// The layer has no `unsafe`: keep it so (table memory comes from `PtMachine::table`).
#![forbid(unsafe_code)]

mod check;
mod collapse;
mod contpmd;
mod contpte;
mod counters;
mod ctx;
mod cursor;
mod desc;
mod fork;
mod machine;
#[cfg(any(test, feature = "model"))]
pub mod model;
mod pmd;
mod remap;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::panic::Location;
use core::sync::atomic::Ordering;

use crate::mm::addr::{PhysAddr, VirtAddr, CONT_SIZE, PAGE_SIZE, PMD_SIZE};

pub use check::Checker;
pub use counters::{CounterSnapshot, Counters};
pub use ctx::flush_all_asids;
pub use desc::{entry_size, KernelProt, Kind, Level, MemType, Prot, Pte, PteAttrs, MAIR_EL1};
pub use machine::{Asid, Features, FolioSpan, PtMachine, TableEntries, Tlb};
pub use remap::MoveBuf;

use check::OpKind;
use contpte::{ContBlock, PteRun};
use ctx::Ctx;
use cursor::{Cursor, Found};
use desc::Change;

/// The end of the user (TTBR0) address space: 48-bit virtual addresses.
pub const USER_VA_END: VirtAddr = VirtAddr(1 << 48);

/// How the contiguous layer uses the Contiguous bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContMode {
    /// Transparent fold/unfold with batched operations (the default).
    #[default]
    On,
    /// Never set the Contiguous bit.
    Off,
    /// Keep the bit, but every range operation is a loop of single-entry operations
    /// (unfold, change, refold): contpte before batching, for comparison.
    Naive,
}

/// The boot-option spelling: `on`, `off`, `naive`.
impl core::fmt::Display for ContMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ContMode::On => "on",
            ContMode::Off => "off",
            ContMode::Naive => "naive",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No memory for a page table.
    NoMemory,
    /// Something is already mapped in the range (nothing was changed).
    AlreadyMapped,
}

/// What a fault helper did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultFix {
    /// The entry now allows the access (or already did: a spurious fault); retry.
    Fixed,
    /// Nothing is mapped at the address: a translation fault for the caller.
    NotMapped,
    /// The entry is not logically writable: copy-on-write or SIGSEGV, for the caller,
    /// who gets the leaf the walk found (so it need not walk again).
    NotWritable(Leaf),
}

/// One leaf entry, as [`PageTable::get`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The descriptor, with AF and dirty gathered over its contiguous block.
    pub pte: Pte,
    /// 3 for a page, 2 for a 2 MiB block.
    pub level: Level,
}

impl Leaf {
    /// The physical address that `va` (inside this leaf) translates to.
    pub fn pa_of(&self, va: VirtAddr) -> PhysAddr {
        let size = entry_size(self.level) as u64;
        self.pte
            .output_addr()
            .add((va.as_u64() & (size - 1)) as usize)
    }
}

/// Frames that an unmap removed: `pages` pages from `pa`, mapped at `va`. One record
/// per contiguous block or 2 MiB block cleared whole, one per page otherwise. The
/// caller drops its folio references and writes back dirty data from these, after the
/// TLBI that `unmap` has already completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unmapped {
    pub va: VirtAddr,
    pub pa: PhysAddr,
    pub pages: usize,
    /// Accessed (AF), gathered over the record's entries.
    pub young: bool,
    /// Dirty, gathered over the record's entries.
    pub dirty: bool,
    /// The record's first entry as it was (a 2 MiB block's descriptor), AF and dirty
    /// gathered over the record: what a move stores again at the destination.
    pub entry: Pte,
}

impl Unmapped {
    fn new(va: VirtAddr, old: Pte, pages: usize) -> Self {
        Unmapped {
            va,
            pa: old.output_addr(),
            pages,
            young: old.is_young(),
            dirty: old.is_dirty(),
            entry: old,
        }
    }
}

/// A fault on an entry that already allows the access: the entry changed between
/// the access and the walk (another CPU of the same address space finished a
/// break-before-make, or the hardware set AF or dirty), and the retry is all it needs.
/// Counted (`spurious_faults`): threads make these common.
fn note_spurious<E: PtMachine>(ctx: &Ctx<'_, E>, fault: bool, entry: Pte, change: Change) {
    if fault && entry.is_valid() && change.apply(entry) == entry {
        Counters::bump(&counters::here(ctx.env).spurious_faults, 1);
    }
}

/// `nr` pages from `va`: the one place where a page count becomes an address.
fn range_end(va: VirtAddr, nr: usize) -> VirtAddr {
    let end = va.add(nr * PAGE_SIZE);
    assert!(
        va.is_aligned(PAGE_SIZE) && nr > 0 && end <= USER_VA_END,
        "bad range {va:?} + {nr} pages"
    );
    end
}

/// The page tables of one user address space.
pub struct PageTable<E: PtMachine> {
    env: E,
    root: PhysAddr,
    asid: Asid,
    mode: ContMode,
    checker: Checker,
    /// Set while an operation runs: still set afterwards only if it panicked.
    in_op: bool,
}

impl<E: PtMachine> PageTable<E> {
    /// An empty address space with its own root table.
    pub fn new(env: E, asid: Asid, mode: ContMode) -> Result<Self, MapError> {
        let features = env.features();
        assert!(
            !features.hw_dirty || features.hw_af,
            "hardware dirty state without hardware AF"
        );
        let root = env.alloc_table().ok_or(MapError::NoMemory)?;
        counters::Counters::bump(&counters::here(&env).tables_allocated, 1);
        Ok(PageTable {
            env,
            root,
            asid,
            mode,
            checker: Checker::new(cfg!(test)),
            in_op: false,
        })
    }

    pub fn env(&self) -> &E {
        &self.env
    }

    pub fn root(&self) -> PhysAddr {
        self.root
    }

    pub fn asid(&self) -> Asid {
        self.asid
    }

    pub fn mode(&self) -> ContMode {
        self.mode
    }

    /// The TTBR0_EL1 value for this address space: ASID in bits 63:48, root table below.
    pub fn ttbr0(&self) -> u64 {
        (u64::from(self.asid) << 48) | self.root.as_u64()
    }

    /// The checker, to switch it on or off (it is on in tests, off otherwise).
    pub fn checker_mut(&mut self) -> &mut Checker {
        &mut self.checker
    }

    /// Runs one operation on `[start, end)`: see the module docs.
    #[track_caller]
    fn op<R>(
        &mut self,
        kind: OpKind,
        start: VirtAddr,
        end: VirtAddr,
        body: impl FnOnce(&mut Ctx<'_, E>, &mut Cursor) -> R,
    ) -> R {
        let caller = Location::caller();
        self.in_op = true;
        let mut ctx = Ctx::begin(
            &self.env,
            self.root,
            self.asid,
            self.mode,
            &mut self.checker,
            kind,
            (start, end),
            caller,
        );
        let mut cursor = Cursor::new(self.root);
        let result = body(&mut ctx, &mut cursor);
        ctx.finish();
        self.in_op = false;
        result
    }

    /// Maps `nr` pages from `pa` at `va` (Linux's `set_ptes`): consecutive frames, all
    /// of the range empty. Blocks that are 64 KiB aligned in VA and PA and lie inside
    /// one folio become contiguous. On error nothing is mapped.
    #[track_caller]
    pub fn map(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        nr: usize,
        attrs: PteAttrs,
    ) -> Result<(), MapError> {
        self.map_entries(va, pa, nr, Pte::page(pa, attrs))
    }

    /// [`PageTable::map`] with the entries dirty, so hardware-writable where `attrs`
    /// allow write (Linux's `pte_mkdirty` in `do_anonymous_page`): a write fault's new
    /// folio, whose store would otherwise fault again without FEAT_HAFDBS just to
    /// mark them.
    #[track_caller]
    pub fn map_dirty(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        nr: usize,
        attrs: PteAttrs,
    ) -> Result<(), MapError> {
        self.map_entries(va, pa, nr, Pte::page(pa, attrs).mkdirty())
    }

    /// `map` from the entry `first` for `va` (its output address advanced per page).
    #[track_caller]
    fn map_entries(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        nr: usize,
        first: Pte,
    ) -> Result<(), MapError> {
        let end = range_end(va, nr);
        assert!(pa.is_aligned(PAGE_SIZE));
        self.op(OpKind::Map, va, end, |ctx, cursor| {
            for_each_table_alloc(ctx, cursor, va, end, |_, run| {
                let first = run.table.index_of(run.start);
                let n = run.end.offset_from(run.start) / PAGE_SIZE;
                let any_live = run.table.entries[first..first + n]
                    .iter()
                    .any(|e| Pte::from_raw(e.load(Ordering::Relaxed)).is_valid());
                if any_live {
                    Err(MapError::AlreadyMapped)
                } else {
                    Ok(())
                }
            })?;
            for_each_table_alloc(ctx, cursor, va, end, |ctx, run| {
                let at = first.with_output_addr(pa.add(run.start.offset_from(va)));
                contpte::set_ptes(ctx, run, at);
                Ok(())
            })
        })
    }

    /// Maps an order-9 folio at `pa` as one level-2 block at `va` (both 2 MiB aligned).
    #[track_caller]
    pub fn map_pmd(&mut self, va: VirtAddr, pa: PhysAddr, attrs: PteAttrs) -> Result<(), MapError> {
        let end = range_end(va, PMD_SIZE / PAGE_SIZE);
        assert!(
            va.is_aligned(PMD_SIZE) && pa.is_aligned(PMD_SIZE),
            "map_pmd needs 2 MiB alignment"
        );
        self.op(OpKind::MapPmd, va, end, |ctx, cursor| {
            let slot = ctx::slot_alloc(ctx, cursor, va, 2)?;
            if slot.load().is_valid() {
                return Err(MapError::AlreadyMapped);
            }
            pmd::map_l2(ctx, slot, Pte::block(pa, 2, attrs));
            Ok(())
        })
    }

    /// Unmaps `nr` pages from `va` and returns what was mapped (Linux's
    /// `get_and_clear_full_ptes`, for munmap and exit). Whole contiguous blocks are
    /// cleared without unfolding; a 2 MiB block cut by the range is split first (the
    /// only way this fails, before anything is unmapped). Tables left empty are freed.
    #[track_caller]
    pub fn unmap(&mut self, va: VirtAddr, nr: usize) -> Result<Vec<Unmapped>, MapError> {
        let end = range_end(va, nr);
        self.op(OpKind::Unmap, va, end, |ctx, cursor| {
            split_cut_blocks(ctx, cursor, va, end)?;
            let mut out = Vec::new();
            for_each_segment(ctx, cursor, va, end, |ctx, seg| match seg {
                Segment::Ptes(run) => contpte::get_and_clear_ptes(ctx, run, &mut out),
                Segment::Block(slot) => out.push(pmd::clear_l2(ctx, slot)),
            });
            Ok(out)
        })
    }

    /// Moves the entries of `nr` pages from `src` (inside one 2 MiB region) to `dst`
    /// (mremap; the ranges do not overlap and `dst` maps nothing): 2 MiB blocks and
    /// contiguous blocks move whole where the destination's alignment allows, every
    /// entry keeps its attributes, AF and dirty state, and the source is invalidated
    /// before the destination is written (`remap.rs`); a whole 2 MiB region's level-3
    /// table moves as one entry where the destination is 2 MiB aligned and has no
    /// table. Fails, before changing anything, only for want of a table. The source's
    /// emptied tables stay until [`PageTable::free_empty_tables`], so that moving
    /// the entries back never needs one.
    /// `buf` holds the entries in between (one for all the batches of a move).
    #[track_caller]
    pub fn move_range(
        &mut self,
        src: VirtAddr,
        dst: VirtAddr,
        nr: usize,
        buf: &mut MoveBuf,
    ) -> Result<(), MapError> {
        let end = range_end(src, nr);
        let dst_end = range_end(dst, nr);
        assert!(
            src.align_down(PMD_SIZE) == VirtAddr(end.as_u64() - 1).align_down(PMD_SIZE),
            "move_range of {src:?} + {nr} pages crosses a 2 MiB boundary"
        );
        assert!(dst_end <= src || end <= dst, "move_range onto itself");
        self.op(OpKind::Move, src, end, |ctx, cursor| {
            ctx.widen(dst, dst_end);
            ctx.keep_tables(src, end);
            split_cut_blocks(ctx, cursor, src, end)?;
            remap::move_batch(ctx, cursor, src, end, dst, buf)
        })
    }

    /// Moves the level-3 tables of up to `regions` whole 2 MiB regions from `src` to
    /// the same regions from `dst` (both 2 MiB aligned, the ranges apart, `dst`
    /// mapping nothing), in one operation, while each source region is one level-3
    /// table and its destination slot is empty: at most `remap::MAX_TABLES`. Returns
    /// how many moved; the rest is left to [`PageTable::move_range`] (which also
    /// reports the want of a table).
    #[track_caller]
    pub fn move_tables(&mut self, src: VirtAddr, dst: VirtAddr, regions: usize) -> usize {
        let n = regions.min(remap::MAX_TABLES);
        let end = range_end(src, n * PMD_SIZE / PAGE_SIZE);
        let dst_end = range_end(dst, n * PMD_SIZE / PAGE_SIZE);
        assert!(dst_end <= src || end <= dst, "move_tables onto itself");
        self.op(OpKind::Move, src, end, |ctx, cursor| {
            ctx.widen(dst, dst_end);
            ctx.keep_tables(src, end);
            remap::move_tables(ctx, cursor, src, dst, n)
        })
    }

    /// Frees the tables of `[va, va + nr pages)` that map nothing (after a move).
    #[track_caller]
    pub fn free_empty_tables(&mut self, va: VirtAddr, nr: usize) {
        let end = range_end(va, nr);
        self.op(OpKind::Unmap, va, end, |ctx, _| {
            ctx.note_maybe_empty(va);
            ctx.note_maybe_empty(VirtAddr(end.as_u64() - 1));
        });
    }

    /// Maps the page `pa` at `va` in place of the page mapped there, and returns what
    /// that was (copy-on-write, Linux's `ptep_clear_flush` + `set_pte_at`): the old
    /// entry is cleared (its contiguous block unfolded, a 2 MiB block around it split
    /// first), invalidated with a TLBI and a DSB, and only then is the new entry
    /// written, dirty if `dirty`: break-before-make, since the output address changes
    /// (Arm ARM, "Using break-before-make when updating translation table entries";
    /// the checker verifies the sequence). Fails, before changing anything, only if a
    /// split needs a table.
    #[track_caller]
    pub fn replace_page(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        attrs: PteAttrs,
        dirty: bool,
    ) -> Result<Unmapped, MapError> {
        let va = va.align_down(PAGE_SIZE);
        let end = range_end(va, 1);
        let new = if dirty {
            Pte::page(pa, attrs).mkdirty()
        } else {
            Pte::page(pa, attrs)
        };
        self.op(OpKind::Replace, va, end, |ctx, cursor| {
            split_cut_blocks(ctx, cursor, va, end)?;
            let Found::Ptes(table) = cursor.find(ctx.env, va) else {
                panic!("replace_page at {va:?}: nothing mapped");
            };
            Ok(contpte::replace_pte(ctx, table, va, new))
        })
    }

    /// Splits the 2 MiB block that `va` falls inside (not at its start), if any, into
    /// a table of contiguous blocks mapping the same pages: what a VMA boundary at `va`
    /// needs before anything else changes (the only way this fails is a table
    /// allocation, and then nothing changed).
    #[track_caller]
    pub fn split_at(&mut self, va: VirtAddr) -> Result<(), MapError> {
        let va = va.align_down(PAGE_SIZE);
        if va >= USER_VA_END || va.is_aligned(PMD_SIZE) {
            return Ok(());
        }
        self.op(OpKind::SplitAt, va, range_end(va, 1), |ctx, cursor| {
            pmd::split_l2_at(ctx, cursor, va)
        })
    }

    /// Splits the 2 MiB block and unfolds the contiguous block that either end of the
    /// range falls inside (not at its start), so that afterwards no block maps pages on
    /// both sides of an end; blocks wholly inside or outside the range stay. This is what
    /// a folio split at those ends needs first (lazyfree of part of a folio): a block
    /// must map pages of one folio (`check.rs`, "spans two folios"), because the
    /// hardware sets AF and dirty in whichever entry of a block it used, so the state
    /// of two folios in one block could not be told apart. Works in every `ContMode`
    /// (the unfold is one convert, never refolded). The only way this fails is a table
    /// allocation for a 2 MiB split, before anything is unfolded.
    #[track_caller]
    pub fn unfold_edges(&mut self, va: VirtAddr, nr: usize) -> Result<(), MapError> {
        let end = range_end(va, nr);
        self.op(OpKind::UnfoldEdges, va, end, |ctx, cursor| {
            split_cut_blocks(ctx, cursor, va, end)?;
            for edge in [va, end] {
                if edge.is_aligned(CONT_SIZE) {
                    continue;
                }
                if let Found::Ptes(table) = cursor.find(ctx.env, edge) {
                    contpte::unfold_l3c(ctx, ContBlock::containing(table, edge));
                }
            }
            Ok(())
        })
    }

    /// Sets the permissions of the mapped pages in the range (mprotect); holes stay
    /// holes, AF and dirty are kept. Whole contiguous blocks change in place.
    #[track_caller]
    pub fn protect(&mut self, va: VirtAddr, nr: usize, prot: Prot) -> Result<(), MapError> {
        self.change_range(OpKind::Protect, va, nr, Change::Protect(prot))
    }

    /// mprotect to a writable protection where only some pages may be written: the
    /// mapped pages of the range get `rw` where `exclusive(pa, pages)` says that the
    /// `pages` pages from `pa` (a 2 MiB block, a whole contiguous block, or one page)
    /// belong to this address space alone, `ro` elsewhere, in one walk. A contiguous
    /// block cut by the range is unfolded, a whole one changed in place.
    #[track_caller]
    pub fn protect_exclusive(
        &mut self,
        va: VirtAddr,
        nr: usize,
        ro: Prot,
        rw: Prot,
        mut exclusive: impl FnMut(PhysAddr, usize) -> bool,
    ) -> Result<(), MapError> {
        let end = range_end(va, nr);
        self.op(OpKind::Protect, va, end, |ctx, cursor| {
            split_cut_blocks(ctx, cursor, va, end)?;
            for_each_segment(ctx, cursor, va, end, |ctx, seg| match seg {
                Segment::Ptes(run) => contpte::protect_ptes(ctx, run, ro, rw, &mut exclusive),
                Segment::Block(slot) => {
                    let pages = entry_size(slot.level()) / PAGE_SIZE;
                    let prot = if exclusive(slot.load().output_addr(), pages) {
                        rw
                    } else {
                        ro
                    };
                    pmd::change_l2(ctx, slot, Change::Protect(prot));
                }
            });
            Ok(())
        })
    }

    /// Write-protects the mapped pages in the range (fork), keeping dirty state.
    #[track_caller]
    pub fn wrprotect(&mut self, va: VirtAddr, nr: usize) -> Result<(), MapError> {
        self.change_range(OpKind::Wrprotect, va, nr, Change::Wrprotect)
    }

    /// Clears AF and dirty of the mapped pages in the range (MADV_FREE, lazyfree).
    #[track_caller]
    pub fn clear_young_dirty(&mut self, va: VirtAddr, nr: usize) -> Result<(), MapError> {
        self.change_range(OpKind::ClearYoungDirty, va, nr, Change::MkoldClean)
    }

    /// Makes the mapped pages in the range writable and dirty (copy-on-write reuse of
    /// an exclusive folio). A whole contiguous block stays contiguous.
    #[track_caller]
    pub fn make_writable(&mut self, va: VirtAddr, nr: usize) -> Result<(), MapError> {
        self.change_range(OpKind::MakeWritable, va, nr, Change::MkwriteDirty)
    }

    #[track_caller]
    fn change_range(
        &mut self,
        kind: OpKind,
        va: VirtAddr,
        nr: usize,
        change: Change,
    ) -> Result<(), MapError> {
        let end = range_end(va, nr);
        self.op(kind, va, end, |ctx, cursor| {
            if nr == 1 {
                // One page outside any block (a copy-on-write reuse of a 4 KiB folio,
                // mprotect of one page): one walk, no block to split or unfold.
                if let Found::Ptes(table) = cursor.find(ctx.env, va) {
                    if contpte::change_single(ctx, table, va, change) {
                        return Ok(());
                    }
                }
            }
            split_cut_blocks(ctx, cursor, va, end)?;
            for_each_segment(ctx, cursor, va, end, |ctx, seg| match seg {
                Segment::Ptes(run) => contpte::change_ptes(ctx, run, change),
                Segment::Block(slot) => {
                    pmd::change_l2(ctx, slot, change);
                }
            });
            Ok(())
        })
    }

    /// Clears AF of the entry at `va` (of its whole contiguous block or 2 MiB block)
    /// and says whether it was set (reclaim aging).
    #[track_caller]
    pub fn test_and_clear_young(&mut self, va: VirtAddr) -> bool {
        self.change_af_dirty(OpKind::TestAndClearYoung, va, Change::Mkold)
            .is_some_and(|old| old.is_young())
    }

    /// Access-flag fault at `va` (no FEAT_HAFDBS): sets AF on the entry, or on its whole
    /// contiguous block without unfolding.
    #[track_caller]
    pub fn access_flag_fault(&mut self, va: VirtAddr) -> FaultFix {
        match self.change_af_dirty(OpKind::AccessFlagFault, va, Change::Mkyoung) {
            Some(_) => FaultFix::Fixed,
            None => FaultFix::NotMapped,
        }
    }

    /// Permission fault on a write at `va`. If the entry is writable-clean (software
    /// dirty tracking), marks it (its whole contiguous block) young and dirty, which
    /// makes it hardware-writable. A read-only entry is left to the caller (CoW).
    #[track_caller]
    pub fn write_fault(&mut self, va: VirtAddr) -> FaultFix {
        match self.get(va) {
            None => FaultFix::NotMapped,
            Some(leaf) if !leaf.pte.is_writable() => FaultFix::NotWritable(leaf),
            Some(_) => {
                self.change_af_dirty(OpKind::WriteFault, va, Change::MkyoungDirty);
                FaultFix::Fixed
            }
        }
    }

    /// Applies an AF/dirty-only change at `va`; returns the old (gathered) entry.
    #[track_caller]
    fn change_af_dirty(&mut self, kind: OpKind, va: VirtAddr, change: Change) -> Option<Pte> {
        let va = va.align_down(PAGE_SIZE);
        let fault = kind != OpKind::TestAndClearYoung;
        self.op(kind, va, range_end(va, 1), |ctx, cursor| {
            match cursor.find(ctx.env, va) {
                Found::Hole { .. } => None,
                Found::Block(slot) => {
                    note_spurious(ctx, fault, slot.load(), change);
                    Some(pmd::change_l2(ctx, slot, change)).filter(|old| old.is_valid())
                }
                Found::Ptes(table) => {
                    note_spurious(ctx, fault, table.slot_of(va).load(), change);
                    Some(contpte::change_af_dirty_pte(ctx, table, va, change))
                        .filter(|old| old.is_valid())
                }
            }
        })
    }

    /// Every leaf mapping in `[start, end)` in address order, with the address it maps
    /// (a block's first address); empty tables are skipped whole. Level-3 leaves carry
    /// AF and dirty gathered over their contiguous block, as `get` returns them.
    pub fn for_each_leaf(&self, start: VirtAddr, end: VirtAddr, mut f: impl FnMut(VirtAddr, Leaf)) {
        let next = |va: VirtAddr, size: usize| va.align_down(size).add(size);
        let mut cursor = Cursor::new(self.root);
        let mut va = start;
        while va < end {
            match cursor.find(&self.env, va) {
                Found::Hole { level } => va = next(va, entry_size(level)),
                Found::Block(slot) => {
                    let size = entry_size(slot.level());
                    f(
                        va.align_down(size),
                        Leaf {
                            pte: slot.load(),
                            level: slot.level(),
                        },
                    );
                    va = next(va, size);
                }
                Found::Ptes(table) => {
                    // One read of each 64 KiB block serves all its pages (reading
                    // the block per page, for its AF and dirty, was 16 times that).
                    let table_end = table.end().min(end);
                    while va < table_end {
                        let (base, entries) = contpte::get_block(table, va);
                        let block_end = base.add(CONT_SIZE).min(table_end);
                        while va < block_end {
                            let pte = desc::view(&entries, va.offset_from(base) / PAGE_SIZE);
                            if pte.is_valid() {
                                f(
                                    va,
                                    Leaf {
                                        pte,
                                        level: desc::LAST_LEVEL,
                                    },
                                );
                            }
                            va = va.add(PAGE_SIZE);
                        }
                    }
                }
            }
        }
    }

    /// Every mapping in `[start, end)` in address order, a block at a time:
    /// `f(va, leaf, pages)` for a 2 MiB block (512 pages), a contiguous block lying
    /// whole in the range (16 pages, AF and dirty gathered over it) or a single
    /// level-3 entry (1 page), `va` being its first address. Empty tables are skipped
    /// whole. Where `for_each_leaf` calls once per page, this calls once per block.
    ///
    /// It walks as `for_each_leaf` does, written out again: one walk shared through a
    /// closure cost copy-on-write's reuse (which calls this per fault) 1 to 2.4% more
    /// instructions in the benchmark suite (`reuse`, every folio size).
    pub fn for_each_block(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        mut f: impl FnMut(VirtAddr, Leaf, usize),
    ) {
        let next = |va: VirtAddr, size: usize| va.align_down(size).add(size);
        let mut cursor = Cursor::new(self.root);
        let mut va = start;
        while va < end {
            match cursor.find(&self.env, va) {
                Found::Hole { level } => va = next(va, entry_size(level)),
                Found::Block(slot) => {
                    let size = entry_size(slot.level());
                    let leaf = Leaf {
                        pte: slot.load(),
                        level: slot.level(),
                    };
                    f(va.align_down(size), leaf, size / PAGE_SIZE);
                    va = next(va, size);
                }
                Found::Ptes(table) => {
                    let table_end = table.end().min(end);
                    let leaf = |pte| Leaf {
                        pte,
                        level: desc::LAST_LEVEL,
                    };
                    while va < table_end {
                        let base = va.align_down(CONT_SIZE);
                        let block_end = base.add(CONT_SIZE);
                        let first = table.slot_of(base).load();
                        if first.is_cont() {
                            if va == base && block_end <= table_end {
                                let pte = contpte::get_pte(table, base);
                                f(va, leaf(pte), CONT_SIZE / PAGE_SIZE);
                                va = block_end;
                            } else {
                                // Cut by the range: page by page, as a read sees them.
                                f(va, leaf(contpte::get_pte(table, va)), 1);
                                va = va.add(PAGE_SIZE);
                            }
                            continue;
                        }
                        // Not contiguous: each entry is what a read sees.
                        while va < block_end.min(table_end) {
                            let pte = table.slot_of(va).load();
                            if pte.is_valid() {
                                f(va, leaf(pte), 1);
                            }
                            va = va.add(PAGE_SIZE);
                        }
                    }
                }
            }
        }
    }

    /// Whether nothing is mapped in `[va, va + nr pages)` (a fault choosing its folio
    /// size): one walk, the level-3 entries tested straight from the table.
    pub fn is_unmapped(&self, va: VirtAddr, nr: usize) -> bool {
        let end = range_end(va, nr);
        let mut cursor = Cursor::new(self.root);
        let mut at = va;
        while let Some((here, found)) = first_populated(&mut cursor, &self.env, at, end) {
            let Found::Ptes(table) = found else {
                return false;
            };
            let stop = table.end().min(end);
            let first = table.index_of(here);
            let n = stop.offset_from(here) / PAGE_SIZE;
            let live = table.entries[first..first + n]
                .iter()
                .any(|e| Pte::from_raw(e.load(Ordering::Relaxed)).is_valid());
            if live {
                return false;
            }
            at = stop;
        }
        true
    }

    /// The first address of `[va, end)` that a level-3 table or a block covers (`end`
    /// if none): holes are skipped a whole entry at a time, at whatever level they are,
    /// so that range work over a sparse range (the unmap of a reservation never
    /// touched, of a range whose tables a move took) costs a descent per hole rather
    /// than per 2 MiB. An empty table is not skipped: its unmap frees it.
    pub fn next_populated(&self, va: VirtAddr, end: VirtAddr) -> VirtAddr {
        first_populated(&mut Cursor::new(self.root), &self.env, va, end).map_or(end, |(at, _)| at)
    }

    /// The leaf entry mapping `va`, with AF and dirty gathered over its contiguous block.
    pub fn get(&self, va: VirtAddr) -> Option<Leaf> {
        let mut cursor = Cursor::new(self.root);
        let leaf = match cursor.find(&self.env, va) {
            Found::Hole { .. } => return None,
            Found::Block(slot) => Leaf {
                pte: slot.load(),
                level: slot.level(),
            },
            Found::Ptes(table) => Leaf {
                pte: contpte::get_pte(table, va),
                level: desc::LAST_LEVEL,
            },
        };
        leaf.pte.is_valid().then_some(leaf)
    }
}

impl<E: PtMachine> Drop for PageTable<E> {
    /// Unmaps whatever is left (callers unmap their VMAs first: records of anything left
    /// here are dropped), frees the root and invalidates the ASID. The tables of an
    /// address space whose operation panicked half-way are leaked, not walked again.
    fn drop(&mut self) {
        if self.in_op {
            return;
        }
        let nr = USER_VA_END.offset_from(VirtAddr(0)) / PAGE_SIZE;
        self.unmap(VirtAddr(0), nr)
            .expect("whole-space unmap splits nothing");
        ctx::flush_asid(&self.env, self.asid);
        self.env.free_table(self.root);
        counters::Counters::bump(&counters::here(&self.env).tables_freed, 1);
    }
}

/// A piece of a range, as the range operations see it.
enum Segment<'a> {
    /// Level-3 entries inside one table.
    Ptes(PteRun<'a>),
    /// A level-2 block wholly inside the range.
    Block(cursor::Slot<'a>),
}

/// Splits the 2 MiB blocks that the range `[start, end)` cuts at either end.
fn split_cut_blocks<E: PtMachine>(
    ctx: &mut Ctx<'_, E>,
    cursor: &mut Cursor,
    start: VirtAddr,
    end: VirtAddr,
) -> Result<(), MapError> {
    // A range inside one level-3 table cuts no 2 MiB block: one walk, which the
    // operation's own walk then reuses (the cursor keeps the path).
    if let Found::Ptes(table) = cursor.find(ctx.env, start) {
        if end <= table.end() {
            return Ok(());
        }
    }
    pmd::split_l2_at(ctx, cursor, start)?;
    if end < USER_VA_END {
        pmd::split_l2_at(ctx, cursor, end)?;
    }
    Ok(())
}

/// The first address of `[at, end)` a walk finds no hole at, with what it found there:
/// holes are skipped a whole entry at a time, at whatever level they are.
fn first_populated<'a, E: PtMachine>(
    cursor: &mut Cursor,
    env: &'a E,
    mut at: VirtAddr,
    end: VirtAddr,
) -> Option<(VirtAddr, Found<'a>)> {
    while at < end {
        match cursor.find(env, at) {
            Found::Hole { level } => {
                let size = entry_size(level);
                at = at.align_down(size).add(size);
            }
            found => return Some((at, found)),
        }
    }
    None
}

/// Calls `f` for each mapped piece of `[start, end)`, skipping holes a whole entry at
/// a time. Blocks cut by the range must have been split (`split_cut_blocks`).
fn for_each_segment<'a, E: PtMachine>(
    ctx: &mut Ctx<'a, E>,
    cursor: &mut Cursor,
    start: VirtAddr,
    end: VirtAddr,
    mut f: impl FnMut(&mut Ctx<'a, E>, Segment<'a>),
) {
    let mut va = start;
    while va < end {
        va = match cursor.find(ctx.env, va) {
            Found::Hole { level } => va.align_down(entry_size(level)).add(entry_size(level)),
            Found::Block(slot) => {
                let next = slot.va().add(entry_size(slot.level()));
                assert!(
                    slot.va() >= start && next <= end,
                    "block cut by the range was not split"
                );
                f(ctx, Segment::Block(slot));
                next
            }
            Found::Ptes(table) => {
                let next = table.end().min(end);
                f(
                    ctx,
                    Segment::Ptes(PteRun {
                        table,
                        start: va,
                        end: next,
                    }),
                );
                next
            }
        };
    }
}

/// Calls `f` for each level-3 run of `[start, end)`, allocating the tables.
fn for_each_table_alloc<'a, E: PtMachine>(
    ctx: &mut Ctx<'a, E>,
    cursor: &mut Cursor,
    start: VirtAddr,
    end: VirtAddr,
    mut f: impl FnMut(&mut Ctx<'a, E>, PteRun<'a>) -> Result<(), MapError>,
) -> Result<(), MapError> {
    let mut va = start;
    while va < end {
        let table = ctx::slot_alloc(ctx, cursor, va, desc::LAST_LEVEL)?.table;
        let next = table.end().min(end);
        f(
            ctx,
            PteRun {
                table,
                start: va,
                end: next,
            },
        )?;
        va = next;
    }
    Ok(())
}
