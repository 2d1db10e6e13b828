//! Host tests of the page-table layer over the software model.
//!
//! * this file: helpers (a CPU that runs accesses through the model and calls the fault
//!   helpers, a way to run hand-written store sequences inside an operation) and unit
//!   tests of the layer's behaviour and of the checker's rules;
//! * `bugs.rs`: one test per bug of `docs/notes/contpte.md`'s "Bugs the real kernels shipped",
//!   each with a deliberately broken variant that the checker or the model must catch;
//! * `props.rs`: property tests of random operation sequences against a reference model.

mod bugs;
mod props;

use super::check::OpKind;
use super::ctx::{Ctx, Write};
use super::cursor::{Slot, Table};
use super::model::{self, Access, AccessKind, El, Fault, ModelMachine, TlbOp, Walked};
use super::*;
use crate::mm::addr::{CONT_PTES, CONT_SIZE};

/// 1 GiB - 2 MiB: test windows straddle a level-1 boundary at 1 GiB.
const BASE: VirtAddr = VirtAddr(0x3fe0_0000);
const RW: PteAttrs = PteAttrs {
    prot: Prot::user(true, false),
    mem: MemType::Normal,
};
const RO: PteAttrs = PteAttrs {
    prot: Prot::user(false, false),
    mem: MemType::Normal,
};
const SW: Features = Features {
    hw_af: false,
    hw_dirty: false,
    range_tlbi: false,
    bbml2: false,
};
const HW: Features = Features {
    hw_af: true,
    hw_dirty: true,
    range_tlbi: true,
    bbml2: false,
};
const READ: Access = Access {
    el: El::El0,
    kind: AccessKind::Read,
};
const WRITE: Access = Access {
    el: El::El0,
    kind: AccessKind::Write,
};

type Asp = PageTable<ModelMachine>;

fn new_asp(mode: ContMode, features: Features) -> Asp {
    PageTable::new(ModelMachine::new(features, 32), 7, mode).expect("root table")
}

fn page(i: usize) -> VirtAddr {
    BASE.add(i * PAGE_SIZE)
}

fn stats(asp: &Asp) -> CounterSnapshot {
    asp.env().counters().snapshot()
}

fn walk(asp: &Asp, va: VirtAddr) -> Result<Walked, Fault> {
    model::walk(asp.env(), asp.root(), va)
}

/// The level-3 entries of the block containing `va`, raw.
fn block_at(asp: &Asp, va: VirtAddr) -> [Pte; CONT_PTES] {
    let first = va.align_down(CONT_SIZE);
    core::array::from_fn(|i| walk(asp, first.add(i * PAGE_SIZE)).map_or(Pte::INVALID, |w| w.pte))
}

/// Maps a new folio of `2^order` pages at `va`, whole.
fn map_folio(asp: &mut Asp, va: VirtAddr, order: u32, attrs: PteAttrs) -> PhysAddr {
    let pa = asp.env().alloc_folio(order);
    asp.map(va, pa, 1 << order, attrs).expect("map");
    pa
}

/// What happened to an access run through the CPU model with fault handling.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done(PhysAddr),
    /// A fault the handler did not fix.
    Denied(Fault),
    /// The handler said "fixed" and the same fault came back.
    NoProgress(Fault),
}

/// A fault handler: returns whether it fixed the fault.
type Handler = fn(&mut Asp, VirtAddr, Fault, Access) -> bool;

/// The kernel's fault path, reduced to what the page-table layer provides.
fn handle_fault(asp: &mut Asp, va: VirtAddr, fault: Fault, access: Access) -> bool {
    match fault {
        Fault::AccessFlag { .. } => asp.access_flag_fault(va) == FaultFix::Fixed,
        Fault::Permission { .. } if access.kind == AccessKind::Write => {
            asp.write_fault(va) == FaultFix::Fixed
        }
        _ => false,
    }
}

/// Runs an access as a CPU would: translate, fault, handle, retry.
fn run_access(asp: &mut Asp, va: VirtAddr, access: Access, handler: Handler) -> Outcome {
    let mut last = None;
    for _ in 0..4 {
        match model::translate(asp.env(), asp.root(), va, access) {
            Ok(w) => return Outcome::Done(w.pa),
            Err(fault) if last == Some(fault) => return Outcome::NoProgress(fault),
            Err(fault) if !handler(asp, va, fault, access) => return Outcome::Denied(fault),
            Err(fault) => last = Some(fault),
        }
    }
    Outcome::NoProgress(last.expect("a fault"))
}

/// Runs `f` as operation `kind` on `nr` pages from `va`, with the level-3 table of
/// `va`: the way tests write hand-made (and deliberately wrong) store sequences
/// through the single store function, under the checker.
#[track_caller]
fn with_table<R>(
    asp: &mut Asp,
    kind: OpKind,
    va: VirtAddr,
    nr: usize,
    f: impl FnOnce(&mut Ctx<'_, ModelMachine>, Table<'_>) -> R,
) -> R {
    let end = range_end(va, nr);
    asp.op(kind, va, end, |ctx, cursor| {
        let table = ctx::slot_alloc(ctx, cursor, va, desc::LAST_LEVEL)
            .expect("table")
            .table;
        f(ctx, table)
    })
}

fn slot<'a>(table: Table<'a>, va: VirtAddr) -> Slot<'a> {
    table.slot_of(va)
}

// ---- the contiguous layer ----

#[test]
fn aligned_folio_is_mapped_contiguous_directly() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = map_folio(&mut asp, page(16), 4, RW);
    assert!(block_at(&asp, page(16)).iter().all(|e| e.is_cont()));
    let s = stats(&asp);
    assert_eq!(
        (s.cont_maps, s.folds, s.converts, s.tlbi_page + s.tlbi_range),
        (1, 0, 0, 0)
    );
    assert_eq!(walk(&asp, page(17)).unwrap().pa, pa.add(PAGE_SIZE));
}

#[test]
fn naive_mode_folds_by_convert_and_off_mode_never_sets_the_bit() {
    let mut naive = new_asp(ContMode::Naive, SW);
    map_folio(&mut naive, page(16), 4, RW);
    assert!(block_at(&naive, page(16)).iter().all(|e| e.is_cont()));
    let s = stats(&naive);
    assert_eq!(
        (s.cont_maps, s.folds, s.converts, s.tlbi_page),
        (0, 1, 1, 16)
    );
    let mut off = new_asp(ContMode::Off, SW);
    map_folio(&mut off, page(16), 4, RW);
    assert!(block_at(&off, page(16))
        .iter()
        .all(|e| e.is_valid() && !e.is_cont()));
}

#[test]
fn entries_written_one_by_one_fold_when_the_last_is_written() {
    let mut asp = new_asp(ContMode::On, HW);
    let pa = asp.env().alloc_folio(4);
    asp.map(page(16), pa, 10, RW).unwrap();
    assert!(!block_at(&asp, page(16))[0].is_cont());
    asp.map(page(26), pa.add(10 * PAGE_SIZE), 6, RW).unwrap();
    assert!(block_at(&asp, page(16)).iter().all(|e| e.is_cont()));
    let s = stats(&asp);
    assert_eq!((s.folds, s.tlbi_range), (1, 1));
}

#[test]
fn misaligned_or_mixed_blocks_are_not_folded() {
    let mut asp = new_asp(ContMode::On, SW);
    // VA not 64 KiB aligned.
    map_folio(&mut asp, page(8), 4, RW);
    // PA not 64 KiB aligned: the second half of one order-5 folio and the first of another.
    let pa = asp.env().alloc_folio(5);
    asp.map(page(64), pa.add(8 * PAGE_SIZE), 16, RW).unwrap();
    // Different attributes.
    let pa = asp.env().alloc_folio(4);
    asp.map(page(96), pa, 8, RW).unwrap();
    asp.map(page(104), pa.add(8 * PAGE_SIZE), 8, RO).unwrap();
    for first in [8, 16, 64, 96] {
        assert!(
            block_at(&asp, page(first)).iter().all(|e| !e.is_cont()),
            "block at page {first}"
        );
    }
    assert_eq!(stats(&asp).folds + stats(&asp).cont_maps, 0);
}

#[test]
fn fork_and_lazyfree_and_reuse_of_whole_blocks_never_unfold() {
    for features in [SW, HW] {
        let mut asp = new_asp(ContMode::On, features);
        map_folio(&mut asp, page(0), 9, RW);
        assert_eq!(
            run_access(&mut asp, page(3), WRITE, handle_fault),
            Outcome::Done(walk(&asp, page(3)).unwrap().pa)
        );
        let before = stats(&asp);
        asp.wrprotect(page(0), 512).unwrap();
        asp.clear_young_dirty(page(0), 512).unwrap();
        asp.make_writable(page(0), 512).unwrap();
        let d = stats(&asp) - before;
        assert_eq!((d.unfolds, d.folds, d.converts), (0, 0, 0));
        assert_eq!(
            d.tlbi_page + d.tlbi_range + d.tlbi_asid,
            3,
            "one TLBI each for fork, lazyfree and the reuse (read-only to writable): {d:?}"
        );
        let leaf = asp.get(page(100)).unwrap();
        assert!(leaf.pte.is_cont() && leaf.pte.is_writable() && leaf.pte.is_dirty());
    }
}

#[test]
fn naive_mode_unfolds_and_refolds_per_entry() {
    let mut asp = new_asp(ContMode::Naive, HW);
    map_folio(&mut asp, page(0), 4, RW);
    let before = stats(&asp);
    asp.wrprotect(page(0), 16).unwrap();
    let d = stats(&asp) - before;
    assert_eq!((d.unfolds, d.folds), (1, 1));
    assert!(block_at(&asp, page(0))
        .iter()
        .all(|e| e.is_cont() && !e.is_writable()));
}

/// mprotect of one page and back: the block unfolds for the change, and refolds when
/// the change restoring it writes the block's last entry (Linux's `contpte_try_fold`
/// from `set_ptes`); a restore of any other page leaves it unfolded, as on Linux.
#[test]
fn protect_and_restore_of_the_last_page_refolds_the_block() {
    for features in [SW, HW] {
        let mut asp = new_asp(ContMode::On, features);
        map_folio(&mut asp, page(0), 4, RW);
        let rwx = Prot::user(true, true);
        let before = stats(&asp);
        asp.protect(page(15), 1, rwx).unwrap();
        assert!(block_at(&asp, page(0)).iter().all(|e| !e.is_cont()));
        asp.protect(page(15), 1, RW.prot).unwrap();
        let d = stats(&asp) - before;
        assert_eq!((d.unfolds, d.folds), (1, 1), "{d:?}");
        assert!(block_at(&asp, page(0)).iter().all(|e| e.is_cont()));
        asp.protect(page(5), 1, rwx).unwrap();
        asp.protect(page(5), 1, RW.prot).unwrap();
        let d = stats(&asp) - before;
        assert_eq!((d.unfolds, d.folds), (2, 1), "{d:?}");
    }
}

#[test]
fn unmap_unfolds_only_the_blocks_cut_at_the_ends() {
    let mut asp = new_asp(ContMode::On, HW);
    let pa = map_folio(&mut asp, page(0), 6, RW);
    let out = asp.unmap(page(8), 48).unwrap();
    assert_eq!(stats(&asp).unfolds, 2);
    assert_eq!(out.iter().map(|u| u.pages).sum::<usize>(), 48);
    assert!(out.iter().any(|u| (u.va, u.pa, u.pages, u.young, u.dirty)
        == (page(16), pa.add(16 * PAGE_SIZE), 16, true, false)));
    assert!(
        walk(&asp, page(7)).is_ok() && walk(&asp, page(8)).is_err() && walk(&asp, page(56)).is_ok()
    );
}

#[test]
fn a_read_gathers_af_and_dirty_over_the_block() {
    let mut asp = new_asp(ContMode::On, HW);
    map_folio(&mut asp, page(0), 4, RW);
    asp.clear_young_dirty(page(0), 16).unwrap();
    assert!(!asp.get(page(0)).unwrap().pte.is_young());
    model::translate(asp.env(), asp.root(), page(5), WRITE).unwrap();
    let leaf = asp.get(page(0)).unwrap();
    assert!(leaf.pte.is_young() && leaf.pte.is_dirty());
    assert!(
        !block_at(&asp, page(0))[0].is_dirty(),
        "the hardware dirtied entry 5 only"
    );
    assert!(asp.test_and_clear_young(page(9)));
    assert!(block_at(&asp, page(0)).iter().all(|e| !e.is_young()));
    assert!(!asp.test_and_clear_young(page(9)));
}

#[test]
fn software_af_and_dirty_faults_fix_the_whole_block_without_unfolding() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = map_folio(&mut asp, page(0), 4, RW);
    asp.clear_young_dirty(page(0), 16).unwrap();
    let before = stats(&asp);
    assert_eq!(
        run_access(&mut asp, page(3), READ, handle_fault),
        Outcome::Done(pa.add(3 * PAGE_SIZE))
    );
    assert!(block_at(&asp, page(0))
        .iter()
        .all(|e| e.is_young() && e.is_cont() && !e.is_dirty()));
    let d = stats(&asp) - before;
    assert_eq!(
        (d.unfolds, d.tlbi_page + d.tlbi_range),
        (0, 0),
        "AF is free"
    );
    let before = stats(&asp);
    assert_eq!(
        run_access(&mut asp, page(4), WRITE, handle_fault),
        Outcome::Done(pa.add(4 * PAGE_SIZE))
    );
    assert!(block_at(&asp, page(0))
        .iter()
        .all(|e| e.is_dirty() && e.is_hw_writable() && e.is_cont()));
    let d = stats(&asp) - before;
    // The block became hardware-writable: its read-only TLB entry is invalidated, all
    // 16 pages of it (no range TLBI on this CPU).
    assert_eq!((d.unfolds, d.tlbi_page, d.tlbi_range), (0, 16, 0));
    asp.wrprotect(page(0), 16).unwrap();
    assert!(matches!(asp.write_fault(page(4)), FaultFix::NotWritable(_)));
    assert_eq!(asp.write_fault(page(40)), FaultFix::NotMapped);
    assert_eq!(asp.access_flag_fault(page(40)), FaultFix::NotMapped);
}

#[test]
fn unfold_uses_one_range_tlbi_or_sixteen_page_tlbis_and_none_with_bbml2() {
    for (features, page_tlbis, range_tlbis) in [
        (SW, 16, 0),
        (HW, 0, 1),
        (Features { bbml2: true, ..HW }, 0, 0),
    ] {
        let mut asp = new_asp(ContMode::On, features);
        map_folio(&mut asp, page(0), 4, RW);
        asp.env().tlb().take_log();
        let before = stats(&asp);
        asp.protect(page(0), 1, RO.prot).unwrap();
        let d = stats(&asp) - before;
        // The unfold's own TLBIs, plus one page TLBI for the write-protected entry.
        assert_eq!(
            (d.unfolds, d.tlbi_page, d.tlbi_range),
            (1, page_tlbis + 1, range_tlbis),
            "{features:?}"
        );
        let log = asp.env().tlb().take_log();
        assert_eq!(log.last(), Some(&TlbOp::Dsb));
    }
}

#[test]
fn large_invalidations_become_one_tlbi_by_asid() {
    let mut asp = new_asp(ContMode::On, SW);
    map_folio(&mut asp, page(0), 9, RW);
    map_folio(&mut asp, page(512), 4, RW);
    let before = stats(&asp);
    asp.unmap(page(0), 528).unwrap();
    let d = stats(&asp) - before;
    assert_eq!((d.tlbi_asid, d.tlbi_range), (1, 0));
}

/// Through the layer, at the range-TLBI boundary: 2^21 - 1 pages are one range
/// invalidation, 2^21 and 2^21 + 1 one TLBI by ASID (not 2^21 single TLBIs).
#[test]
fn range_tlbi_boundary_through_the_layer() {
    let mut asp = new_asp(ContMode::On, HW);
    for (pages, want) in [
        (
            (1 << 21) - 1,
            TlbOp::Range {
                asid: 7,
                va: page(0),
                pages: (1 << 21) - 1,
            },
        ),
        (1 << 21, TlbOp::Asid(7)),
        ((1 << 21) + 1, TlbOp::Asid(7)),
    ] {
        with_table(&mut asp, OpKind::Unmap, page(0), 1, |ctx, _| {
            ctx.invalidate_now(page(0), pages)
        });
        // Leave out the walk-cache TLBIs of the table the operation allocated and freed.
        let log: Vec<TlbOp> = asp
            .env()
            .tlb()
            .take_log()
            .into_iter()
            .filter(|op| {
                !matches!(
                    op,
                    TlbOp::Dsb
                        | TlbOp::Page {
                            last_level: false,
                            ..
                        }
                )
            })
            .collect();
        assert_eq!(log, [want], "{pages} pages");
    }
}

// ---- 2 MiB blocks and tables ----

/// Copy-on-write's replace: the block around the page is unfolded, the old entry is
/// cleared and invalidated before the new one is written (the checker verifies the
/// break), the neighbours keep their frames, and the new entry is dirty. Inside a
/// 2 MiB block it is split first. Every mode, both feature sets.
#[test]
fn replace_page_breaks_before_make_and_keeps_the_neighbours() {
    for mode in [ContMode::On, ContMode::Naive, ContMode::Off] {
        for features in [SW, HW] {
            let mut asp = new_asp(mode, features);
            let pa = map_folio(&mut asp, page(0), 4, RO);
            let new = asp.env().alloc_folio(0);
            let before = stats(&asp);
            let gone = asp.replace_page(page(5), new, RW, true).unwrap();
            assert_eq!(
                (gone.va, gone.pa, gone.pages),
                (page(5), pa.add(5 * PAGE_SIZE), 1)
            );
            let w = walk(&asp, page(5)).unwrap();
            assert!(w.pa == new && w.pte.is_dirty() && w.pte.is_writable() && !w.pte.is_cont());
            assert_eq!(walk(&asp, page(6)).unwrap().pa, pa.add(6 * PAGE_SIZE));
            assert!(
                !walk(&asp, page(6)).unwrap().pte.is_cont(),
                "the block is unfolded"
            );
            let tlbis = stats(&asp).tlbi_page + stats(&asp).tlbi_range;
            assert!(
                tlbis > before.tlbi_page + before.tlbi_range,
                "the old entry was invalidated"
            );
            model::translate(asp.env(), asp.root(), page(5), WRITE).unwrap();

            let big = asp.env().alloc_folio(9);
            asp.map_pmd(page(512), big, RO).unwrap();
            let gone = asp.replace_page(page(512 + 77), new, RW, false).unwrap();
            assert_eq!(gone.pa, big.add(77 * PAGE_SIZE));
            assert_eq!(stats(&asp).pmd_splits, 1);
            assert_eq!(
                walk(&asp, page(512 + 78)).unwrap().pa,
                big.add(78 * PAGE_SIZE)
            );
            assert!(!walk(&asp, page(512 + 77)).unwrap().pte.is_dirty());
        }
    }
}

/// `is_unmapped` sees single entries, contiguous blocks and 2 MiB blocks, and skips
/// holes at every level (what a fault's choice of folio size relies on).
#[test]
fn is_unmapped_sees_every_kind_of_mapping() {
    let mut asp = new_asp(ContMode::On, HW);
    assert!(asp.is_unmapped(page(0), 4096), "an empty address space");
    map_folio(&mut asp, page(16), 4, RW);
    let one = asp.env().alloc_folio(0);
    asp.map(page(40), one, 1, RW).unwrap();
    let big = asp.env().alloc_folio(9);
    asp.map_pmd(page(1024), big, RW).unwrap();
    assert!(asp.is_unmapped(page(0), 16));
    assert!(!asp.is_unmapped(page(8), 16), "the contiguous block at 16");
    assert!(asp.is_unmapped(page(32), 8));
    assert!(!asp.is_unmapped(page(36), 8), "the page at 40");
    assert!(asp.is_unmapped(page(41), 512 - 41 + 512));
    assert!(!asp.is_unmapped(page(1000), 100), "the 2 MiB block at 1024");
    assert!(
        asp.is_unmapped(page(1536), 1 << 18),
        "past everything, across tables"
    );
}

#[test]
fn pmd_block_maps_splits_into_contiguous_blocks_and_unmaps() {
    for mode in [ContMode::On, ContMode::Naive, ContMode::Off] {
        let mut asp = new_asp(mode, HW);
        let pa = asp.env().alloc_folio(9);
        asp.map_pmd(page(0), pa, RW).unwrap();
        assert_eq!(walk(&asp, page(5)).unwrap().level, 2);
        assert_eq!(asp.map(page(3), pa, 1, RW), Err(MapError::AlreadyMapped));
        model::translate(asp.env(), asp.root(), page(77), WRITE).unwrap();
        asp.protect(page(40), 8, RO.prot).unwrap();
        assert_eq!(stats(&asp).pmd_splits, 1);
        let w = walk(&asp, page(77)).unwrap();
        assert_eq!(
            (w.level, w.pa, w.pte.is_cont()),
            (3, pa.add(77 * PAGE_SIZE), mode != ContMode::Off)
        );
        assert!(
            asp.get(page(300)).unwrap().pte.is_dirty(),
            "dirty state of the block kept by the split"
        );
        assert!(!walk(&asp, page(41)).unwrap().pte.is_writable());
        let out = asp.unmap(page(0), 512).unwrap();
        assert_eq!(out.iter().map(|u| u.pages).sum::<usize>(), 512);
        assert_eq!(asp.env().tables_in_use(), 1, "tables freed when empty");
    }
}

/// `unfold_edges` splits the 2 MiB block and unfolds the contiguous blocks the range
/// cuts, nothing else: ends inside blocks 96..112 and 288..304 leave the other 30
/// blocks folded; ends on block boundaries only split the 2 MiB block; a 64 KiB folio
/// cut in half is unfolded. Frames, AF and dirty are kept, in every mode.
#[test]
fn unfold_edges_unfolds_only_the_blocks_the_range_cuts() {
    for mode in [ContMode::On, ContMode::Naive, ContMode::Off] {
        for (lo, hi, cut) in [(100, 300, [96, 288]), (112, 288, [usize::MAX; 2])] {
            let mut asp = new_asp(mode, HW);
            let pa = asp.env().alloc_folio(9);
            asp.map_pmd(page(0), pa, RW).unwrap();
            model::translate(asp.env(), asp.root(), page(77), WRITE).unwrap();
            let before = stats(&asp);
            asp.unfold_edges(page(lo), hi - lo).unwrap();
            let after = stats(&asp);
            assert_eq!(after.pmd_splits - before.pmd_splits, 1);
            let unfolds = if mode == ContMode::Off || lo % 16 == 0 {
                0
            } else {
                2
            };
            assert_eq!(after.unfolds - before.unfolds, unfolds, "{mode:?}");
            for i in 0..512 {
                let w = walk(&asp, page(i)).unwrap();
                let cont = mode != ContMode::Off && !cut.contains(&(i & !15));
                assert_eq!((w.level, w.pa), (3, pa.add(i * PAGE_SIZE)));
                assert_eq!(w.pte.is_cont(), cont, "{mode:?} page {i}");
            }
            assert!(asp.get(page(300)).unwrap().pte.is_dirty(), "dirty kept");
        }
        let mut asp = new_asp(mode, HW);
        map_folio(&mut asp, page(0), 4, RW);
        asp.unfold_edges(page(8), 8).unwrap();
        assert!(block_at(&asp, page(0)).iter().all(|e| !e.is_cont()));
    }
}

/// A move of a whole 2 MiB region to a 2 MiB aligned destination without a table
/// moves the level-3 table as one level-2 entry (Linux's `move_normal_pmd`): two
/// level-2 descriptor stores, no fold or unfold, one TLBI of the old range's leaves and one
/// of its walk caches; every frame, folded block, AF and dirty state arrives as it
/// was, and nothing is reachable at the old addresses. With an (empty) table at the
/// destination the entries move one by one instead, with the same result.
#[test]
fn whole_table_moves_as_one_level_2_entry() {
    for mode in [ContMode::On, ContMode::Naive, ContMode::Off] {
        for features in [SW, HW] {
            for table_there in [false, true] {
                let mut asp = new_asp(mode, features);
                let folio = map_folio(&mut asp, page(0), 4, RW);
                let single = map_folio(&mut asp, page(100), 0, RW);
                let dirty = if features.hw_dirty { WRITE } else { READ };
                model::translate(asp.env(), asp.root(), page(3), dirty).unwrap();
                // 1 GiB + 2 MiB: another level-2 table than the source's.
                let dst = page(1024);
                if table_there {
                    asp.map(dst, asp.env().alloc_folio(0), 1, RW).unwrap();
                    asp.move_range(dst, page(2048), 1, &mut MoveBuf::default())
                        .unwrap();
                }
                let before = stats(&asp);
                asp.move_range(page(0), dst, 512, &mut MoveBuf::default())
                    .unwrap();
                let d = stats(&asp) - before;
                let what = format!("{mode:?} {features:?} table there: {table_there}");
                if table_there {
                    assert_eq!(d.tables_moved, 0, "{what}");
                } else {
                    assert_eq!(d.tables_moved, 1, "{what}");
                    // The destination's level-2 table (above 1 GiB) is new: its link too.
                    assert_eq!(d.tables_allocated, 1, "{what}");
                    assert_eq!(d.entries_written, 3, "{what}");
                    assert_eq!((d.folds, d.unfolds), (0, 0), "{what}");
                    let (range, asid) = (features.range_tlbi as u64, !features.range_tlbi as u64);
                    assert_eq!((d.tlbi_range, d.tlbi_asid, d.tlbi_page), (range, asid, 1));
                }
                for i in 0..16 {
                    let w = walk(&asp, dst.add(i * PAGE_SIZE)).unwrap();
                    assert_eq!(w.pa, folio.add(i * PAGE_SIZE), "{what}");
                    assert_eq!(w.pte.is_cont(), mode != ContMode::Off, "{what}");
                    assert!(
                        walk(&asp, page(i)).is_err(),
                        "{what}: old address still maps"
                    );
                }
                assert_eq!(walk(&asp, dst.add(100 * PAGE_SIZE)).unwrap().pa, single);
                assert_eq!(
                    asp.get(dst.add(3 * PAGE_SIZE)).unwrap().pte.is_dirty(),
                    features.hw_dirty,
                    "{what}"
                );
                asp.free_empty_tables(page(0), 512);
                asp.unmap(dst, 512).unwrap();
                asp.unmap(page(2048), 1).unwrap();
                assert_eq!(asp.env().tables_in_use(), 1, "{what}");
            }
        }
    }
}

/// A run of whole level-3 tables and 2 MiB blocks moves in one operation: one range
/// TLBI for the run's leaves and one DSB, a TLBI by VA per table for the walk caches
/// (none for the block). The run stops at the first region that is neither (a hole),
/// which is left for `move_range`.
#[test]
fn runs_of_tables_move_in_one_operation() {
    let mut asp = new_asp(ContMode::On, HW);
    let frames: Vec<PhysAddr> = (0..3)
        .map(|r| map_folio(&mut asp, page(r * 512 + 7), 0, RW))
        .collect();
    let block = asp.env().alloc_folio(9);
    asp.map_pmd(page(3 * 512), block, RW).unwrap();
    let dst = page(8 * 512);
    let before = stats(&asp);
    assert_eq!(asp.move_tables(page(0), dst, 6), 4);
    let d = stats(&asp) - before;
    assert_eq!(
        (d.tables_moved, d.tlbi_range, d.tlbi_page, d.dsb),
        (3, 1, 3, 1)
    );
    for (r, &pa) in frames.iter().enumerate() {
        assert_eq!(
            walk(&asp, dst.add((r * 512 + 7) * PAGE_SIZE)).unwrap().pa,
            pa
        );
        assert!(walk(&asp, page(r * 512 + 7)).is_err());
    }
    let w = walk(&asp, dst.add(3 * PMD_SIZE + 5 * PAGE_SIZE)).unwrap();
    assert_eq!(
        (w.level, w.pa),
        (2, block.add(5 * PAGE_SIZE)),
        "the block, one entry"
    );
    assert!(walk(&asp, page(3 * 512)).is_err());
    assert_eq!(
        asp.move_tables(page(4 * 512), dst.add(4 * PMD_SIZE), 2),
        0,
        "a hole"
    );
    assert_eq!(asp.move_tables(dst, page(0), 4), 4, "and back");
    asp.free_empty_tables(dst, 4 * 512);
    asp.unmap(page(0), 4 * 512).unwrap();
    assert_eq!(asp.env().tables_in_use(), 1);
}

/// A move keeps the source's tables even where its own split made one (a 2 MiB block
/// moved to another offset inside 2 MiB): moving back, as mremap does when a later
/// batch finds no table, allocates nothing. (The operation's finish freed the
/// emptied split table, with every other emptied table between the destination and
/// the source: mremap's `expect("moving back needs no table")` could fail, and the
/// `hostile` user program at -smp 4 had the checker find a store outside the
/// operation's range, freeing an earlier batch's source table.)
#[test]
fn a_move_keeps_the_source_tables_its_split_made() {
    for features in [SW, HW] {
        let mut asp = new_asp(ContMode::On, features);
        let pa = asp.env().alloc_folio(9);
        asp.map_pmd(page(0), pa, RW).unwrap();
        let dst = page(1025);
        asp.move_range(page(0), dst, 512, &mut MoveBuf::default())
            .unwrap();
        assert_eq!(stats(&asp).pmd_splits, 1);
        let before = stats(&asp);
        asp.move_range(dst, page(0), 511, &mut MoveBuf::default())
            .unwrap();
        asp.move_range(page(1536), page(511), 1, &mut MoveBuf::default())
            .unwrap();
        assert_eq!((stats(&asp) - before).tables_allocated, 0, "{features:?}");
        for i in [0, 100, 511] {
            assert_eq!(walk(&asp, page(i)).unwrap().pa, pa.add(i * PAGE_SIZE));
        }
        asp.free_empty_tables(dst, 512);
        asp.unmap(page(0), 512).unwrap();
        assert_eq!(asp.env().tables_in_use(), 1, "{features:?}");
    }
}

/// The checker's rule for a moved table: linking it at the destination before the
/// TLBI and DSB of its old link have completed is caught (its frames would be
/// reachable through both ranges).
#[test]
#[should_panic(expected = "linked before the TLBI and DSB of its old link")]
fn table_linked_twice_is_caught() {
    let mut asp = new_asp(ContMode::On, HW);
    map_folio(&mut asp, page(0), 4, RW);
    let dst = page(1024);
    asp.op(OpKind::Move, page(0), page(512), |ctx, cursor| {
        ctx.widen(dst, dst.add(PMD_SIZE));
        let Found::Ptes(_) = cursor.find(ctx.env, page(0)) else {
            unreachable!("mapped above")
        };
        let from = cursor.table_at(ctx.env, 2).slot_of(page(0));
        let (link, _) = ctx.store(from, Write::Swap(Pte::INVALID));
        let to = ctx::slot_alloc(ctx, &mut Cursor::new(ctx.root), dst, 2).unwrap();
        ctx.store(to, Write::Swap(link));
    });
}

#[test]
fn empty_tables_are_freed_and_the_root_is_kept() {
    let mut asp = new_asp(ContMode::On, SW);
    map_folio(&mut asp, page(500), 4, RW);
    assert_eq!(asp.env().tables_in_use(), 6, "root, L1, 2 x L2, 2 x L3");
    assert_eq!(
        asp.map(page(510), PhysAddr(0x9000_0000), 4, RW),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(
        asp.env().tables_in_use(),
        6,
        "nothing allocated by a failed map"
    );
    asp.unmap(page(500), 8).unwrap();
    assert_eq!(asp.env().tables_in_use(), 6);
    asp.unmap(page(508), 4).unwrap();
    assert_eq!(asp.env().tables_in_use(), 4, "L3 and L2 below 1 GiB freed");
    asp.unmap(page(512), 4).unwrap();
    assert_eq!(asp.env().tables_in_use(), 1);
    assert_eq!(asp.map_pmd(page(512), asp.env().alloc_folio(9), RW), Ok(()));
}

#[test]
fn out_of_table_memory_maps_nothing() {
    let mut asp = PageTable::new(ModelMachine::new(SW, 3), 1, ContMode::On).unwrap();
    let pa = asp.env().alloc_folio(4);
    assert_eq!(asp.map(page(0), pa, 16, RW), Err(MapError::NoMemory));
    assert_eq!(asp.env().tables_in_use(), 1);
}

#[test]
fn ttbr0_carries_the_asid() {
    let asp = new_asp(ContMode::On, SW);
    assert_eq!(asp.ttbr0() >> 48, 7);
    assert_eq!(asp.ttbr0() & ((1 << 48) - 1), asp.root().as_u64());
}

// ---- the checker's rules, one by one ----

fn mapped_block(features: Features) -> (Asp, PhysAddr) {
    let mut asp = new_asp(ContMode::On, features);
    let pa = map_folio(&mut asp, page(0), 4, RW);
    (asp, pa)
}

// ---- the anon-exclusive invariant (PtMachine::anon_exclusive) ----

#[test]
#[should_panic(expected = "writable entry over a page that is not anon-exclusive")]
fn checker_rejects_a_writable_entry_over_a_page_not_exclusive() {
    let mut asp = new_asp(ContMode::On, SW);
    asp.env().track_anon_exclusive();
    // Mapped writable before being marked exclusive: the order the kernel's callers
    // must not use.
    let pa = asp.env().alloc_folio(4);
    asp.map(page(0), pa, 16, RW).unwrap();
}

#[test]
#[should_panic(expected = "writable entry over a page that is not anon-exclusive")]
fn checker_rejects_copy_on_write_reuse_of_a_shared_page() {
    let mut asp = new_asp(ContMode::On, HW);
    asp.env().track_anon_exclusive();
    let pa = asp.env().alloc_folio(0);
    asp.env().set_anon_exclusive(pa, 1, true);
    asp.map(page(7), pa, 1, RW).unwrap();
    // fork: shared, then write-protected.
    asp.env().set_anon_exclusive(pa, 1, false);
    asp.wrprotect(page(7), 1).unwrap();
    // Reused without being marked exclusive again.
    asp.make_writable(page(7), 1).unwrap();
}

#[test]
#[should_panic(expected = "level-2 entry")]
fn checker_rejects_a_writable_2mib_block_over_a_shared_folio() {
    let mut asp = new_asp(ContMode::On, HW);
    asp.env().track_anon_exclusive();
    let big = asp.env().alloc_folio(9);
    asp.map_pmd(page(512), big, RO).unwrap();
    asp.protect(page(512), 512, RW.prot).unwrap();
}

#[test]
fn checker_accepts_exclusive_writable_and_shared_read_only_pages() {
    for features in [SW, HW] {
        let mut asp = new_asp(ContMode::On, features);
        asp.env().track_anon_exclusive();
        let pa = asp.env().alloc_folio(4);
        asp.env().set_anon_exclusive(pa, 16, true);
        asp.map(page(0), pa, 16, RW).unwrap();
        assert_eq!(asp.write_fault(page(3)), FaultFix::Fixed);
        // fork: the pages become shared while being write-protected; read-only entries
        // over shared pages are fine.
        asp.env().set_anon_exclusive(pa, 16, false);
        asp.wrprotect(page(0), 16).unwrap();
        asp.protect(page(0), 16, RO.prot).unwrap();
        // copy-on-write reuse: exclusive again first, then writable.
        asp.env().set_anon_exclusive(pa, 16, true);
        asp.make_writable(page(0), 16).unwrap();
        let big = asp.env().alloc_folio(9);
        asp.env().set_anon_exclusive(big, 1, true);
        asp.map_pmd(page(512), big, RW).unwrap();
        // A read-only mapping needs no exclusive page.
        let other = asp.env().alloc_folio(0);
        asp.map(page(40), other, 1, RO).unwrap();
    }
}

#[test]
#[should_panic(expected = "live entry replaced without break-before-make")]
fn checker_rejects_replacing_a_live_output_address() {
    let (mut asp, pa) = mapped_block(SW);
    with_table(&mut asp, OpKind::Protect, page(0), 16, |ctx, t| {
        let new = Pte::page(pa.add(PAGE_SIZE), RW).with_cont(true);
        ctx.store(slot(t, page(0)), Write::Swap(new));
    });
}

#[test]
#[should_panic(expected = "entry made before the TLBI and DSB of its break")]
fn checker_rejects_a_make_before_the_tlbi() {
    let mut asp = new_asp(ContMode::Off, SW);
    let pa = map_folio(&mut asp, page(0), 0, RW);
    with_table(&mut asp, OpKind::Map, page(0), 1, |ctx, t| {
        ctx.store(slot(t, page(0)), Write::Swap(Pte::INVALID));
        ctx.store(
            slot(t, page(0)),
            Write::Swap(Pte::page(pa.add(PAGE_SIZE), RW)),
        );
    });
}

#[test]
#[should_panic(expected = "entry made before the TLBI and DSB of its break")]
fn checker_rejects_a_make_between_tlbi_and_dsb() {
    let mut asp = new_asp(ContMode::Off, SW);
    let pa = map_folio(&mut asp, page(0), 0, RW);
    with_table(&mut asp, OpKind::Map, page(0), 1, |ctx, t| {
        ctx.store(slot(t, page(0)), Write::Swap(Pte::INVALID));
        ctx.tlbi_page(page(0), true);
        ctx.store(
            slot(t, page(0)),
            Write::Swap(Pte::page(pa.add(PAGE_SIZE), RW)),
        );
    });
}

/// Changes the Contiguous bit of a live block in place, with no break at all.
fn set_cont_in_place(asp: &mut Asp) {
    with_table(asp, OpKind::Protect, page(0), 16, |ctx, t| {
        for i in 0..CONT_PTES {
            let s = slot(t, page(i));
            ctx.store(s, Write::Swap(s.load().with_cont(false)));
        }
    });
}

#[test]
#[should_panic(expected = "live entry replaced without break-before-make")]
fn checker_requires_bbm_for_the_contiguous_bit() {
    set_cont_in_place(&mut mapped_block(SW).0);
}

/// A fold under BBM level 2 skips the convert's TLBI; when the gathered dirty state
/// makes clean entries hardware-writable (software dirty state), the block still gets
/// its TLBI: the clean entries' read-only translations may be cached.
#[test]
fn fold_under_bbml2_invalidates_entries_the_gathered_dirty_state_made_writable() {
    let mut asp = new_asp(ContMode::On, Features { bbml2: true, ..SW });
    let pa = asp.env().alloc_folio(4);
    asp.map(page(0), pa, 15, RW).unwrap();
    assert_eq!(asp.write_fault(page(3)), FaultFix::Fixed);
    asp.env().tlb().take_log();
    asp.map(page(15), pa.add(15 * PAGE_SIZE), 1, RW).unwrap();
    assert_eq!(stats(&asp).folds, 1);
    assert!(block_at(&asp, page(0))
        .iter()
        .all(|e| e.is_cont() && e.is_hw_writable()));
    let log = asp.env().tlb().take_log();
    for i in 0..CONT_PTES {
        assert!(
            log.contains(&TlbOp::Page {
                asid: 7,
                va: page(i),
                last_level: true
            }),
            "page {i} not invalidated: {log:?}"
        );
    }
    // With hardware dirty state the same fold needs none: DBM already let them write.
    let mut asp = new_asp(ContMode::On, Features { bbml2: true, ..HW });
    let pa = asp.env().alloc_folio(4);
    asp.map(page(0), pa, 15, RW).unwrap();
    model::translate(asp.env(), asp.root(), page(3), WRITE).unwrap();
    asp.env().tlb().take_log();
    asp.map(page(15), pa.add(15 * PAGE_SIZE), 1, RW).unwrap();
    assert_eq!(stats(&asp).folds, 1);
    let log = asp.env().tlb().take_log();
    assert!(
        !log.iter().any(|op| matches!(
            op,
            TlbOp::Range { .. }
                | TlbOp::Page {
                    last_level: true,
                    ..
                }
        )),
        "{log:?}"
    );
}

#[test]
fn checker_allows_contiguous_bit_changes_without_tlbi_under_bbml2() {
    let (mut asp, _) = mapped_block(Features { bbml2: true, ..HW });
    set_cont_in_place(&mut asp);
    assert!(block_at(&asp, page(0))
        .iter()
        .all(|e| e.is_valid() && !e.is_cont()));
}

#[test]
#[should_panic(expected = "entry made before the TLBI and DSB of its break")]
fn checker_rejects_bbml2_for_anything_but_the_contiguous_bit() {
    let (mut asp, pa) = mapped_block(Features { bbml2: true, ..HW });
    with_table(&mut asp, OpKind::Protect, page(0), 16, |ctx, t| {
        for i in 0..CONT_PTES {
            ctx.store(slot(t, page(i)), Write::Swap(Pte::INVALID));
        }
        for i in 0..CONT_PTES {
            let pte = Pte::page(pa.add((i ^ 1) * PAGE_SIZE), RW);
            ctx.store(slot(t, page(i)), Write::Swap(pte));
        }
        ctx.invalidate_now(page(0), CONT_PTES);
    });
}

#[test]
#[should_panic(expected = "store outside the operation's range")]
fn checker_rejects_stores_outside_the_operation() {
    let (mut asp, _) = mapped_block(SW);
    map_folio(&mut asp, page(16), 4, RW);
    with_table(&mut asp, OpKind::Wrprotect, page(0), 16, |ctx, t| {
        ctx.store(slot(t, page(16)), Write::Update(Change::Wrprotect));
    });
}

#[test]
#[should_panic(expected = "freed while walk caches may hold it")]
fn checker_rejects_freeing_a_table_before_its_tlbi() {
    let (mut asp, _) = mapped_block(SW);
    asp.op(OpKind::Unmap, page(0), page(16), |ctx, cursor| {
        let Found::Ptes(table) = cursor.find(ctx.env, page(0)) else {
            panic!("no table")
        };
        for i in 0..CONT_PTES {
            ctx.store(slot(table, page(i)), Write::Swap(Pte::INVALID));
        }
        ctx.invalidate_now(page(0), CONT_PTES);
        let mut parent = Table::new(ctx.env, ctx.root, 0, page(0));
        for level in 1..=2 {
            let Kind::Table(next) = parent.slot_of(page(0)).load().kind(level - 1) else {
                panic!("no table")
            };
            parent = Table::new(ctx.env, next, level, page(0));
        }
        ctx.store(parent.slot_of(page(0)), Write::Swap(Pte::INVALID));
        ctx.free_table(table.pa);
    });
}

#[test]
fn checker_can_be_switched_off() {
    let (mut asp, _) = mapped_block(SW);
    asp.checker_mut().set_enabled(false);
    set_cont_in_place(&mut asp);
    assert!(!asp.checker_mut().is_enabled());
}

#[test]
fn leaf_walk_reports_what_get_sees_and_skips_holes() {
    let mut asp = new_asp(ContMode::On, HW);
    let pmd_va = BASE.add(PMD_SIZE);
    let pmd_pa = asp.env().alloc_folio(9);
    asp.map_pmd(pmd_va, pmd_pa, RW).unwrap();
    map_folio(&mut asp, page(16), 4, RW);
    map_folio(&mut asp, page(40), 0, RO);
    map_folio(&mut asp, page(100), 2, RW);
    let (start, end) = (BASE, pmd_va.add(PMD_SIZE + 8 * PAGE_SIZE));
    let mut seen = Vec::new();
    asp.for_each_leaf(start, end, |va, leaf| seen.push((va, leaf)));
    let mut expected = Vec::new();
    let mut va = start;
    while va < end {
        match asp.get(va) {
            Some(leaf) if leaf.level == 2 => {
                expected.push((va, leaf));
                va = va.add(PMD_SIZE);
            }
            Some(leaf) => {
                expected.push((va, leaf));
                va = va.add(PAGE_SIZE);
            }
            None => va = va.add(PAGE_SIZE),
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(
        seen.len(),
        1 + 16 + 1 + 4,
        "one PMD block, 16 + 1 + 4 pages"
    );
}

/// A 32 MiB-aligned address for level-2 contiguous blocks (`contpmd.rs`).
const L2C: VirtAddr = VirtAddr(0x1_0000_0000);

/// A 32 MiB folio maps as 16 level-2 blocks with the Contiguous bit; whole-group
/// write-protect, protect and unmap keep the group consistent, every 2 MiB of it
/// translates through the model's walk (which checks the group), and the unmap
/// returns 8192 pages.
#[test]
fn a_level_2_contiguous_block_maps_changes_and_unmaps_whole() {
    use crate::mm::addr::{CONT_PMDS, CONT_PMD_SIZE, PMD_SIZE};
    let mut asp = new_asp(ContMode::On, HW);
    let pa = asp.env().alloc_folio(13);
    asp.map_l2c(L2C, pa, RW).unwrap();
    assert_eq!(asp.map_l2c(L2C, pa, RW), Err(MapError::AlreadyMapped));
    let pages = CONT_PMD_SIZE / PAGE_SIZE;
    for i in 0..CONT_PMDS {
        let va = L2C.add(i * PMD_SIZE + 5 * PAGE_SIZE);
        let w = model::translate(asp.env(), asp.root(), va, WRITE).unwrap();
        assert_eq!((w.level, w.pte.is_cont()), (2, true));
        assert_eq!(w.pa, pa.add(i * PMD_SIZE + 5 * PAGE_SIZE));
    }
    asp.wrprotect(L2C, pages).unwrap();
    let w = walk(&asp, L2C.add(7 * PMD_SIZE)).unwrap();
    assert!(w.pte.is_cont() && !w.pte.is_writable());
    asp.protect(L2C, pages, RW.prot).unwrap();
    asp.make_writable(L2C, pages).unwrap();
    model::translate(asp.env(), asp.root(), L2C.add(CONT_PMD_SIZE - 1), WRITE).unwrap();
    let out = asp.unmap(L2C, pages).unwrap();
    assert_eq!(out.iter().map(|u| u.pages).sum::<usize>(), pages);
    assert!(
        out.iter().any(|u| u.dirty),
        "the hardware's dirty state is kept"
    );
    assert!(asp.is_unmapped(L2C, pages));
}

/// Unmapping 2 MiB of a level-2 contiguous block leaves 15 entries with the bit and
/// one hole: the checker fails the operation.
#[test]
#[should_panic(expected = "misprogrammed level-2 contiguous block")]
fn unmapping_part_of_a_level_2_contiguous_block_is_caught() {
    let mut asp = new_asp(ContMode::On, HW);
    let pa = asp.env().alloc_folio(13);
    asp.map_l2c(L2C, pa, RW).unwrap();
    let _ = asp.unmap(L2C.add(2 << 20), 512);
}

/// A level-2 contiguous block over two folios is refused by the checker.
#[test]
#[should_panic(expected = "spans two folios")]
fn a_level_2_contiguous_block_over_two_folios_is_caught() {
    let mut asp = new_asp(ContMode::On, HW);
    let pa = asp.env().alloc_folio(12);
    asp.env().alloc_folio(12);
    let pa = pa.align_up(32 << 20);
    asp.map_l2c(L2C, pa, RW).unwrap();
}
