//! One test per bug of the list "bugs the real kernels shipped" (from the notes the
//! project grew from, kept here so the list and its tests stay together):
//!
//! 1. Misprogrammed contiguous blocks (attributes differ, PFNs not consecutive, VA/PA
//!    misaligned, block spanning two folios).
//! 2. AF/dirty lost on unfold because entries were read non-atomically or not OR-ed.
//! 3. Comparing the gathered (OR-ed) value and concluding "nothing to change": with
//!    software AF/dirty this loops on faults forever.
//! 4. Off-by-unit range end (`start + nr` instead of `start + nr * PAGE_SIZE`) in a
//!    batched clear: an out-of-bounds write into the next page table.
//! 5. A batch crossing a VMA, page-table or folio edge; a stale batch count reused.
//! 6. Batching over non-present entries; advancing the raw PTE value instead of the PFN.
//! 7. A missing TLBI after changing access flags.
//! 8. Write-protecting part of a block without unfolding it.
//! 9. Accounting drift: refcount/mapcount not matching the entries that map the folio
//!    (the seed 004 syzbot report is a page-table-check crash in a collapse path).
//!
//! Each bug has a *broken variant*: a short, hand-written store sequence run through
//! the single store function inside a real operation (`with_table`), doing what the
//! buggy kernel did. The test asserts that the checker (or the model, or the fault
//! harness) catches it, so removing the rule makes the test fail. Where the layer has
//! an API for the situation, a second test shows the real code handling it.

use std::collections::BTreeMap;

use super::*;

/// Writes 16 entries with the Contiguous bit from `entry(i)` into the empty block at
/// `page(first)`, TLB-correctly, as a buggy "fold" would.
fn write_cont_block(asp: &mut Asp, first: usize, entry: impl Fn(usize) -> Pte) {
    with_table(asp, OpKind::Map, page(first), CONT_PTES, |ctx, t| {
        for i in 0..CONT_PTES {
            ctx.store(
                slot(t, page(first + i)),
                Write::Swap(entry(i).with_cont(true)),
            );
        }
    });
}

// Bug 1: misprogrammed contiguous blocks.

#[test]
#[should_panic(expected = "misprogrammed contiguous block: attributes differ")]
fn bug1_attributes_differ() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = asp.env().alloc_folio(4);
    let attrs = |i| if i == 7 { RO } else { RW };
    write_cont_block(&mut asp, 0, |i| Pte::page(pa.add(i * PAGE_SIZE), attrs(i)));
}

#[test]
#[should_panic(expected = "misprogrammed contiguous block: output addresses not consecutive")]
fn bug1_frames_not_consecutive() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = asp.env().alloc_folio(4);
    write_cont_block(&mut asp, 0, |i| {
        Pte::page(pa.add(swap_3_and_4(i) * PAGE_SIZE), RW)
    });
}

fn swap_3_and_4(i: usize) -> usize {
    match i {
        3 => 4,
        4 => 3,
        i => i,
    }
}

#[test]
#[should_panic(expected = "misprogrammed contiguous block: output address not aligned")]
fn bug1_pa_misaligned() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = asp.env().alloc_folio(5);
    write_cont_block(&mut asp, 0, |i| Pte::page(pa.add((i + 4) * PAGE_SIZE), RW));
}

#[test]
#[should_panic(expected = "misprogrammed contiguous block: not all 16 entries")]
fn bug1_va_misaligned() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = asp.env().alloc_folio(4);
    with_table(&mut asp, OpKind::Map, page(8), CONT_PTES, |ctx, t| {
        for i in 0..CONT_PTES {
            let pte = Pte::page(pa.add(i * PAGE_SIZE), RW).with_cont(true);
            ctx.store(slot(t, page(8 + i)), Write::Swap(pte));
        }
    });
}

#[test]
fn bug1_the_model_reports_misprogrammed_blocks_too() {
    let mut asp = new_asp(ContMode::On, SW);
    asp.checker_mut().set_enabled(false);
    let pa = asp.env().alloc_folio(4);
    write_cont_block(&mut asp, 0, |i| {
        Pte::page(pa.add(swap_3_and_4(i) * PAGE_SIZE), RW)
    });
    assert!(
        matches!(walk(&asp, page(3)), Err(Fault::ContiguousMisprogrammed { why, .. }) if why.contains("consecutive"))
    );
}

// Bug 2: AF/dirty lost on unfold (entries read non-atomically or not OR-ed).

#[test]
#[should_panic(expected = "dirty state lost")]
fn bug2_unfold_without_gathering_loses_dirty() {
    let mut asp = new_asp(ContMode::On, HW);
    map_folio(&mut asp, page(0), 4, RW);
    model::translate(asp.env(), asp.root(), page(5), WRITE).unwrap();
    // Broken unfold: each entry is read, cleared and written back with its own flags.
    with_table(&mut asp, OpKind::Protect, page(0), CONT_PTES, |ctx, t| {
        let old: Vec<Pte> = (0..CONT_PTES).map(|i| slot(t, page(i)).load()).collect();
        for i in 0..CONT_PTES {
            ctx.store(slot(t, page(i)), Write::Swap(Pte::INVALID));
        }
        ctx.invalidate_now(page(0), CONT_PTES);
        for (i, o) in old.iter().enumerate() {
            ctx.store(slot(t, page(i)), Write::Swap(o.with_cont(false)));
        }
    });
}

#[test]
fn bug2_real_unfold_gathers_af_and_dirty() {
    let mut asp = new_asp(ContMode::On, HW);
    map_folio(&mut asp, page(0), 4, RW);
    asp.clear_young_dirty(page(0), 16).unwrap();
    model::translate(asp.env(), asp.root(), page(5), WRITE).unwrap();
    asp.protect(page(0), 4, RO.prot).unwrap();
    assert!(block_at(&asp, page(0))
        .iter()
        .all(|e| e.is_dirty() && e.is_young() && !e.is_cont()));
}

// Bug 3: comparing the gathered value and concluding "nothing to change".

/// A block whose entries are all old except entry 5, under software AF.
fn block_with_one_young_entry() -> Asp {
    let mut asp = new_asp(ContMode::On, SW);
    map_folio(&mut asp, page(0), 4, RW);
    asp.clear_young_dirty(page(0), 16).unwrap();
    with_table(&mut asp, OpKind::AccessFlagFault, page(5), 1, |ctx, t| {
        ctx.store(slot(t, page(5)), Write::Update(Change::Mkyoung));
    });
    asp
}

/// The buggy handler: reads the gathered entry, sees AF set, does nothing.
fn gathered_compare_handler(asp: &mut Asp, va: VirtAddr, fault: Fault, access: Access) -> bool {
    if matches!(fault, Fault::AccessFlag { .. }) && asp.get(va).is_some_and(|l| l.pte.is_young()) {
        return true;
    }
    handle_fault(asp, va, fault, access)
}

#[test]
fn bug3_gathered_compare_loops_on_faults_and_the_real_handler_does_not() {
    let mut asp = block_with_one_young_entry();
    assert_eq!(
        run_access(&mut asp, page(0), READ, gathered_compare_handler),
        Outcome::NoProgress(Fault::AccessFlag { level: 3 })
    );
    let pa = walk(&asp, page(0)).unwrap().pa;
    assert_eq!(
        run_access(&mut asp, page(0), READ, handle_fault),
        Outcome::Done(pa)
    );
}

// Bug 4: off-by-unit range end in a batched clear (an out-of-bounds write into the
// next page table).

#[test]
#[should_panic(expected = "store outside the operation's range")]
fn bug4_range_end_in_the_wrong_unit_writes_into_the_next_table() {
    let mut asp = new_asp(ContMode::On, SW);
    map_folio(&mut asp, page(496), 4, RW);
    map_folio(&mut asp, page(512), 4, RW);
    let (start, nr) = (page(496), 16);
    asp.op(
        OpKind::ClearYoungDirty,
        start,
        range_end(start, nr),
        |ctx, cursor| {
            let end = start.add(nr * CONT_SIZE);
            for_each_segment(ctx, cursor, start, end, |ctx, seg| match seg {
                Segment::Ptes(run) => contpte::change_ptes(ctx, run, Change::MkoldClean),
                Segment::Block(_) => unreachable!("no 2 MiB blocks here"),
            });
        },
    );
}

#[test]
fn bug4_real_batched_clear_stays_in_its_range() {
    let mut asp = new_asp(ContMode::On, HW);
    map_folio(&mut asp, page(496), 4, RW);
    map_folio(&mut asp, page(512), 4, RW);
    model::translate(asp.env(), asp.root(), page(512), WRITE).unwrap();
    asp.clear_young_dirty(page(496), 16).unwrap();
    assert!(asp.get(page(512)).unwrap().pte.is_dirty());
    assert!(!asp.get(page(496)).unwrap().pte.is_young());
}

// Bug 5: a batch crossing a VMA, page-table or folio edge; a stale batch count.

#[test]
#[should_panic(expected = "misprogrammed contiguous block: spans two folios")]
fn bug5_block_across_a_folio_edge() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = asp.env().alloc_folio(3);
    assert_eq!(asp.env().alloc_folio(3), pa.add(8 * PAGE_SIZE));
    write_cont_block(&mut asp, 0, |i| Pte::page(pa.add(i * PAGE_SIZE), RW));
}

#[test]
#[should_panic(expected = "store outside the operation's range")]
fn bug5_stale_batch_count_reused() {
    let mut asp = new_asp(ContMode::On, SW);
    let big = asp.env().alloc_folio(5);
    asp.map(page(0), big, 32, RW).unwrap();
    let small = asp.env().alloc_folio(4);
    let stale_nr = 32;
    asp.op(
        OpKind::Map,
        page(32),
        range_end(page(32), 16),
        |ctx, cursor| {
            for_each_table_alloc(
                ctx,
                cursor,
                page(32),
                range_end(page(32), stale_nr),
                |ctx, run| {
                    contpte::set_ptes(ctx, run, Pte::page(small, RW));
                    Ok(())
                },
            )
        },
    )
    .unwrap();
}

#[test]
#[should_panic(expected = "index < PTRS_PER_TABLE")]
fn bug5_run_across_a_page_table_edge() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = asp.env().alloc_folio(6);
    with_table(&mut asp, OpKind::Map, page(480), 64, |ctx, table| {
        let run = PteRun {
            table,
            start: page(480),
            end: page(544),
        };
        contpte::set_ptes(ctx, run, Pte::page(pa, RW));
    });
}

#[test]
fn bug5_real_batches_split_at_table_and_folio_edges() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = asp.env().alloc_folio(6);
    asp.map(page(480), pa, 64, RW).unwrap();
    assert_eq!(stats(&asp).cont_maps, 4);
    let a = asp.env().alloc_folio(3);
    asp.env().alloc_folio(3);
    asp.map(page(16), a, 16, RW).unwrap();
    assert!(block_at(&asp, page(16))
        .iter()
        .all(|e| e.is_valid() && !e.is_cont()));
    for i in (0..64).chain(16..32) {
        let va = if i < 64 { page(480 + i) } else { page(i) };
        assert!(walk(&asp, va).is_ok(), "page at {va:?}");
    }
}

// Bug 6: batching over non-present entries; advancing the raw PTE value.

#[test]
#[should_panic(expected = "misprogrammed contiguous block")]
fn bug6_advancing_the_raw_value_instead_of_the_frame() {
    let mut asp = new_asp(ContMode::On, SW);
    let first = Pte::page(asp.env().alloc_folio(4), RW);
    write_cont_block(&mut asp, 0, |i| Pte::from_raw(first.raw() + i as u64));
}

/// 16 pages of one folio mapped with a hole at entry 6.
fn block_with_hole(asp: &mut Asp) -> PhysAddr {
    let pa = asp.env().alloc_folio(4);
    asp.map(page(0), pa, 6, RW).unwrap();
    asp.map(page(7), pa.add(7 * PAGE_SIZE), 9, RW).unwrap();
    pa
}

#[test]
#[should_panic(expected = "mapping created by an operation that only changes entries")]
fn bug6_batch_over_a_hole_creates_a_mapping() {
    let mut asp = new_asp(ContMode::On, SW);
    let pa = block_with_hole(&mut asp);
    with_table(&mut asp, OpKind::Wrprotect, page(0), 16, |ctx, t| {
        let first = slot(t, page(0)).load().wrprotect();
        for i in 0..CONT_PTES {
            ctx.store(
                slot(t, page(i)),
                Write::Swap(first.with_output_addr(pa.add(i * PAGE_SIZE))),
            );
        }
        ctx.invalidate_now(page(0), CONT_PTES);
    });
}

#[test]
fn bug6_real_batch_leaves_holes_alone() {
    let mut asp = new_asp(ContMode::On, SW);
    block_with_hole(&mut asp);
    asp.wrprotect(page(0), 16).unwrap();
    asp.make_writable(page(0), 16).unwrap();
    assert_eq!(
        walk(&asp, page(6)).unwrap_err(),
        Fault::Translation { level: 3 }
    );
}

// Bug 7: a missing TLBI after changing access flags.

#[test]
#[should_panic(expected = "missing TLBI")]
fn bug7_write_protect_without_tlbi() {
    let (mut asp, _) = mapped_block(SW);
    with_table(&mut asp, OpKind::Wrprotect, page(0), 16, |ctx, t| {
        for i in 0..CONT_PTES {
            ctx.store(slot(t, page(i)), Write::Update(Change::Wrprotect));
        }
    });
}

#[test]
#[should_panic(expected = "missing TLBI")]
fn bug7_clear_access_flag_without_tlbi() {
    let (mut asp, _) = mapped_block(SW);
    with_table(
        &mut asp,
        OpKind::TestAndClearYoung,
        page(0),
        16,
        |ctx, t| {
            for i in 0..CONT_PTES {
                ctx.store(slot(t, page(i)), Write::Update(Change::Mkold));
            }
        },
    );
}

#[test]
#[should_panic(expected = "missing DSB after TLBI")]
fn bug7_tlbi_without_dsb() {
    let (mut asp, _) = mapped_block(SW);
    with_table(&mut asp, OpKind::Unmap, page(0), 1, |ctx, t| {
        ctx.store(slot(t, page(0)), Write::Swap(Pte::INVALID));
        ctx.tlbi_page(page(0), true);
    });
}

// Bug 7, the other way: no TLBI after a read-only entry became writable. The TLB may
// keep an entry that generated a Permission fault (Arm ARM D8.16, R_SQBCS), so the
// write that faulted can fault again on the stale read-only entry.

#[test]
#[should_panic(expected = "missing TLBI")]
fn bug7_copy_on_write_reuse_without_tlbi() {
    let (mut asp, _) = mapped_block(SW);
    asp.wrprotect(page(0), 16).unwrap();
    // Broken reuse: the block is made writable and dirty in place, nothing invalidated.
    with_table(&mut asp, OpKind::MakeWritable, page(0), 16, |ctx, t| {
        for i in 0..CONT_PTES {
            ctx.store(slot(t, page(i)), Write::Update(Change::MkwriteDirty));
        }
    });
}

#[test]
#[should_panic(expected = "missing TLBI")]
fn bug7_software_dirty_fault_without_tlbi() {
    let mut asp = new_asp(ContMode::On, SW);
    map_folio(&mut asp, page(3), 0, RW);
    // Broken write fault: the writable-clean entry becomes hardware-writable (`AP[2]`
    // cleared), nothing invalidated.
    with_table(&mut asp, OpKind::WriteFault, page(3), 1, |ctx, t| {
        ctx.store(slot(t, page(3)), Write::Update(Change::MkyoungDirty));
    });
}

#[test]
#[should_panic(expected = "missing TLBI")]
fn bug7_mprotect_to_writable_without_tlbi_with_hardware_dirty() {
    // With hardware dirty state, DBM alone lets the hardware write: a read-only to
    // writable-clean mprotect relaxes the permission.
    let mut asp = new_asp(ContMode::On, HW);
    map_folio(&mut asp, page(3), 0, RO);
    with_table(&mut asp, OpKind::Protect, page(3), 1, |ctx, t| {
        ctx.store(slot(t, page(3)), Write::Update(Change::Protect(RW.prot)));
    });
}

#[test]
fn bug7_setting_the_access_flag_alone_needs_no_tlbi() {
    let (mut asp, _) = mapped_block(SW);
    asp.clear_young_dirty(page(0), 16).unwrap();
    asp.env().tlb().take_log();
    with_table(&mut asp, OpKind::AccessFlagFault, page(0), 16, |ctx, t| {
        for i in 0..CONT_PTES {
            ctx.store(slot(t, page(i)), Write::Update(Change::Mkyoung));
        }
    });
    assert!(asp.env().tlb().take_log().is_empty());
    assert_eq!(asp.access_flag_fault(page(5)), FaultFix::Fixed);
    assert!(
        asp.env().tlb().take_log().is_empty(),
        "the real AF fault is free"
    );
}

/// The TLBIs of an operation on pages `[first, first + nr)`: whether they cover every
/// one of those pages (a range, a TLBI per page, or by ASID).
fn tlbis_cover(log: &[TlbOp], first: usize, nr: usize) -> bool {
    (first..first + nr).all(|i| {
        let va = page(i);
        log.iter().any(|op| match *op {
            TlbOp::Page { va: t, .. } => t == va,
            TlbOp::Range { va: t, pages, .. } => t <= va && va < t.add(pages * PAGE_SIZE),
            TlbOp::Asid(_) | TlbOp::All => true,
            TlbOp::Dsb => false,
        })
    })
}

#[test]
fn bug7_real_upgrades_invalidate_the_stale_read_only_entry() {
    for features in [SW, HW] {
        // Copy-on-write reuse of a whole contiguous block: the whole block is covered,
        // and the block stays folded.
        let (mut asp, _) = mapped_block(features);
        asp.wrprotect(page(0), 16).unwrap();
        asp.env().tlb().take_log();
        asp.make_writable(page(0), 16).unwrap();
        let log = asp.env().tlb().take_log();
        assert!(tlbis_cover(&log, 0, 16), "{features:?}: {log:?}");
        assert_eq!(log.last(), Some(&TlbOp::Dsb));
        assert!(block_at(&asp, page(0))
            .iter()
            .all(|e| e.is_cont() && e.is_hw_writable()));
        // One page of a block: unfolded (its own TLBIs), and the page covered.
        asp.wrprotect(page(0), 16).unwrap();
        asp.env().tlb().take_log();
        asp.make_writable(page(5), 1).unwrap();
        assert!(tlbis_cover(&asp.env().tlb().take_log(), 5, 1));
        // mprotect of a 2 MiB block to writable: its one block entry is covered.
        let mut asp = new_asp(ContMode::On, features);
        let big = asp.env().alloc_folio(9);
        asp.map_pmd(page(512), big, RO).unwrap();
        asp.make_writable(page(512), 512).unwrap();
        asp.env().tlb().take_log();
        asp.protect(page(512), 512, RO.prot).unwrap();
        asp.env().tlb().take_log();
        asp.protect(page(512), 512, RW.prot).unwrap();
        let log = asp.env().tlb().take_log();
        assert!(tlbis_cover(&log, 512, 1), "{features:?}: {log:?}");
    }
    // The software dirty fault on a single page: one TLBI of that page.
    let mut asp = new_asp(ContMode::On, SW);
    map_folio(&mut asp, page(3), 0, RW);
    asp.env().tlb().take_log();
    assert_eq!(asp.write_fault(page(3)), FaultFix::Fixed);
    let log = asp.env().tlb().take_log();
    assert_eq!(
        log,
        [
            TlbOp::Page {
                asid: 7,
                va: page(3),
                last_level: true
            },
            TlbOp::Dsb
        ]
    );
}

// Bug 8: write-protecting part of a block without unfolding it.

#[test]
#[should_panic(expected = "misprogrammed contiguous block: attributes differ")]
fn bug8_partial_write_protect_in_place() {
    let (mut asp, _) = mapped_block(SW);
    with_table(&mut asp, OpKind::Wrprotect, page(0), 8, |ctx, t| {
        for i in 0..8 {
            ctx.store(slot(t, page(i)), Write::Update(Change::Wrprotect));
        }
        ctx.flush_later(page(0), 8 * PAGE_SIZE);
    });
}

#[test]
fn bug8_real_partial_write_protect_unfolds() {
    let (mut asp, _) = mapped_block(SW);
    asp.wrprotect(page(0), 8).unwrap();
    assert_eq!(stats(&asp).unfolds, 1);
    let block = block_at(&asp, page(0));
    assert!(block
        .iter()
        .enumerate()
        .all(|(i, e)| !e.is_cont() && e.is_writable() == (i >= 8)));
}

// Bug 9: accounting drift (mapcount against the entries that map the folio). The
// folio-accounting hook will consume `Unmapped` records; this ledger checks that the
// records account for every entry exactly once.

/// Pages mapped per folio, by the entries in the tables (a scan through the model).
fn mapped_per_folio(asp: &Asp, pages: core::ops::Range<usize>) -> BTreeMap<PhysAddr, usize> {
    let mut count = BTreeMap::new();
    for w in pages.filter_map(|i| walk(asp, page(i)).ok()) {
        *count.entry(asp.env().folio_of(w.pa).head).or_insert(0) += 1;
    }
    count
}

/// The caller's ledger: + on map, - per unmapped record.
#[derive(Default)]
struct Ledger(BTreeMap<PhysAddr, usize>);

impl Ledger {
    fn map(&mut self, asp: &Asp, pa: PhysAddr, nr: usize) {
        *self.0.entry(asp.env().folio_of(pa).head).or_insert(0) += nr;
    }

    fn unmap(&mut self, asp: &Asp, records: &[Unmapped]) {
        for r in records {
            let n = self
                .0
                .get_mut(&asp.env().folio_of(r.pa).head)
                .expect("record of a mapped folio");
            *n -= r.pages;
        }
        self.0.retain(|_, n| *n > 0);
    }

    fn drift(&self, asp: &Asp) -> Option<String> {
        let scan = mapped_per_folio(asp, 0..1024);
        (scan != self.0).then(|| format!("mapcount drift: ledger {:?} vs tables {scan:?}", self.0))
    }
}

/// Maps, splits and unmaps across block and folio edges; `lose` drops one record.
fn accounting_run(lose_a_record: bool) -> Option<String> {
    let mut asp = new_asp(ContMode::On, HW);
    let mut ledger = Ledger::default();
    let big = asp.env().alloc_folio(9);
    asp.map_pmd(page(512), big, RW).unwrap();
    ledger.map(&asp, big, 512);
    let pa = asp.env().alloc_folio(6);
    asp.map(page(8), pa, 64, RW).unwrap();
    ledger.map(&asp, pa, 64);
    for (first, nr) in [(20, 30), (600, 100), (0, 1024)] {
        let mut records = asp.unmap(page(first), nr).unwrap();
        if lose_a_record {
            records.pop();
        }
        ledger.unmap(&asp, &records);
        if let Some(drift) = ledger.drift(&asp) {
            return Some(drift);
        }
    }
    None
}

#[test]
fn bug9_unmap_records_account_for_every_entry_once() {
    assert_eq!(accounting_run(false), None);
    assert!(accounting_run(true).is_some_and(|d| d.contains("mapcount drift")));
}
