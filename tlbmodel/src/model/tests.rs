//! The model against hand-computed cases (docs/tlb.md, "What the model is checked against").

use super::*;

const K4: u64 = 4 << 10;
const K64: u64 = 64 << 10;
const M2: u64 = 2 << 20;
const M64: u64 = 64 << 20;
/// Where the tests' user region starts (2 MiB aligned, as bench_mm's).
const BASE: u64 = 0x40_0000_0000;

/// How the region is mapped: 4 KiB pages, 64 KiB contiguous runs, 2 MiB blocks.
#[derive(Clone, Copy)]
enum Map {
    Pages,
    Contiguous,
    Blocks,
}

fn walk(map: Map) -> Option<Walk> {
    Some(match map {
        Map::Pages | Map::Contiguous => Walk {
            shift: 12,
            contiguous: matches!(map, Map::Contiguous),
            global: false,
            loads: 4,
        },
        Map::Blocks => Walk {
            shift: 21,
            contiguous: false,
            global: false,
            loads: 3,
        },
    })
}

/// An access whose walk (if any) maps the VA to itself.
fn access(tlb: &mut Tlb, va: u64, asid: u16, walk: impl FnOnce() -> Option<Walk>) -> Outcome {
    tlb.translate(va, asid, || walk().map(|w| (w, va))).0
}

fn pass(tlb: &mut Tlb, map: Map, asid: u16, vas: impl IntoIterator<Item = u64>) -> Counts {
    let mut c = Counts::default();
    for va in vas {
        c.add(access(tlb, va, asid, || walk(map)));
    }
    c
}

/// One load per 4 KiB page of 64 MiB, in order.
fn seq() -> impl Iterator<Item = u64> {
    (0..M64 / K4).map(|p| BASE + p * K4)
}

fn a76() -> Tlb {
    Tlb::new(Preset::cortex_a76())
}

#[test]
fn presets_have_the_published_geometry() {
    let p = Preset::named("cortex-a76").unwrap();
    assert_eq!(
        (p.l1.entries, p.l1.ways, p.l2.entries, p.l2.ways),
        (48, 48, 1280, 5)
    );
    assert_eq!(Preset::named("neoverse-n1").unwrap().l2, p.l2);
    let q = Preset::named("qemu").unwrap();
    assert!(!q.contiguous && q.l2 == p.l2);
    assert_eq!(Preset::named("cortex-a72").unwrap().l2.ways, 4);
    assert!(Preset::named("cortex-a53").is_none());
}

/// 64 MiB cold, one load per page: one walk per page (16384 x 4 loads), per 64 KiB run
/// (1024) with the bit honoured, per page again when it is ignored, per block (32 x 3).
#[test]
fn sequential_cold_pass_walks_once_per_entry() {
    let c = pass(&mut a76(), Map::Pages, 1, seq());
    assert_eq!(
        (c.accesses, c.l1_misses, c.walks, c.walk_loads),
        (16384, 16384, 16384, 65536)
    );
    let c = pass(&mut a76(), Map::Contiguous, 1, seq());
    assert_eq!((c.l1_misses, c.walks, c.walk_loads), (1024, 1024, 4096));
    let c = pass(&mut Tlb::new(Preset::qemu()), Map::Contiguous, 1, seq());
    assert_eq!((c.l1_misses, c.walks), (16384, 16384));
    let c = pass(&mut a76(), Map::Blocks, 1, seq());
    assert_eq!((c.l1_misses, c.walks, c.walk_loads), (32, 32, 96));
    assert_eq!(c.cycles(Preset::cortex_a76().cost), 96 * 20);
}

/// A second pass: 1024 runs of 64 KiB fill 4 of the 5 ways of each of the L2's 256
/// sets, so all stay (1024 L1 misses, no walk); 16384 pages need 64 per set, and LRU
/// over a cyclic pass evicts each before its reuse: every access walks again.
#[test]
fn sequential_warm_pass_fits_the_l2_only_when_contiguous() {
    let mut t = a76();
    pass(&mut t, Map::Contiguous, 1, seq());
    let c = pass(&mut t, Map::Contiguous, 1, seq());
    assert_eq!((c.l1_misses, c.walks), (1024, 0));
    assert_eq!(c.cycles(t.preset().cost), 1024 * 6);
    let mut t = a76();
    pass(&mut t, Map::Pages, 1, seq());
    let c = pass(&mut t, Map::Pages, 1, seq());
    assert_eq!((c.l1_misses, c.walks), (16384, 16384));
}

/// A 64 KiB stride over 64 MiB of pages: 1024 pages in 16 of the 256 sets (stride 16
/// pages), 64 per set against 5 ways: the warm pass walks as much as the cold one.
/// With 64 KiB runs the same 1024 entries spread over all sets and stay.
#[test]
fn strided_pass_aliases_in_the_l2_sets() {
    let stride = (0..M64 / K64).map(|i| BASE + i * K64);
    let mut t = a76();
    pass(&mut t, Map::Pages, 1, stride.clone());
    assert_eq!(pass(&mut t, Map::Pages, 1, stride.clone()).walks, 1024);
    let mut t = a76();
    pass(&mut t, Map::Contiguous, 1, stride.clone());
    assert_eq!(pass(&mut t, Map::Contiguous, 1, stride).walks, 0);
}

/// Random loads (fixed-seed xorshift) within 1 MiB: its 256 pages take one way of
/// each L2 set, so a page walks on its first touch only.
#[test]
fn random_pass_walks_once_per_distinct_page() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let vas: Vec<u64> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            BASE + (x % (1 << 20))
        })
        .collect();
    let mut pages: Vec<u64> = vas.iter().map(|va| va / K4).collect();
    pages.sort_unstable();
    pages.dedup();
    assert_eq!(pages.len(), 256, "5000 draws over 256 pages touch them all");
    let c = pass(&mut a76(), Map::Pages, 1, vas.iter().copied());
    assert_eq!(c.walks, 256);
    let c = pass(&mut a76(), Map::Contiguous, 1, vas.iter().copied());
    assert_eq!(c.walks, 16);
}

/// TLBI by VA in the middle of a warm pass: the named page walks again, nothing else;
/// with 64 KiB runs the whole run that covers it goes (its first access, page 8 in the
/// rest of the pass, walks); another ASID's entry for the VA stays.
#[test]
fn tlbi_by_va_drops_the_entry_that_covers_it() {
    let region = |n: u64| (0..n).map(|p| BASE + p * K4);
    for (map, expect) in [(Map::Pages, (0, 0, 1)), (Map::Contiguous, (0, 1, 0))] {
        let mut t = a76();
        pass(&mut t, map, 1, region(32));
        pass(&mut t, map, 2, region(32));
        let first = pass(&mut t, map, 1, region(8));
        t.tlbi(Tlbi::Va {
            va: BASE + 5 * K4,
            asid: Some(1),
            last_level: true,
        });
        let rest = pass(&mut t, map, 1, (8..32).map(|p| BASE + p * K4));
        let again = pass(&mut t, map, 1, region(8));
        assert_eq!((first.walks, rest.walks, again.walks), expect);
        assert_eq!(pass(&mut t, map, 2, region(32)).walks, 0, "ASID 2 kept");
    }
    // VAAE1: every ASID's entry for the VA.
    let mut t = a76();
    pass(&mut t, Map::Pages, 1, region(4));
    pass(&mut t, Map::Pages, 2, region(4));
    t.tlbi(Tlbi::Va {
        va: BASE,
        asid: None,
        last_level: false,
    });
    assert_eq!(pass(&mut t, Map::Pages, 1, region(4)).walks, 1);
    assert_eq!(pass(&mut t, Map::Pages, 2, region(4)).walks, 1);
}

/// TLBI by range: the pages in the range walk again; a 64 KiB run the range only
/// touches goes whole.
#[test]
fn tlbi_by_range_drops_what_overlaps() {
    let region = |n: u64| (0..n).map(|p| BASE + p * K4);
    let mut t = a76();
    pass(&mut t, Map::Pages, 1, region(64));
    t.tlbi(Tlbi::Range {
        va: BASE + 10 * K4,
        len: 8 * K4,
        asid: Some(1),
        last_level: true,
    });
    assert_eq!(t.occupancy().1, 56);
    assert_eq!(pass(&mut t, Map::Pages, 1, region(64)).walks, 8);
    let mut t = a76();
    pass(&mut t, Map::Contiguous, 1, region(64));
    // Pages 15..17 straddle the first and second runs.
    t.tlbi(Tlbi::Range {
        va: BASE + 15 * K4,
        len: 2 * K4,
        asid: Some(1),
        last_level: true,
    });
    assert_eq!(pass(&mut t, Map::Contiguous, 1, region(64)).walks, 2);
}

/// TLBI ASIDE1 removes that ASID's non-global entries only; VMALLE1 everything.
#[test]
fn tlbi_by_asid_keeps_global_and_other_asids() {
    let mut t = a76();
    let global = || {
        Some(Walk {
            shift: 12,
            contiguous: false,
            global: true,
            loads: 4,
        })
    };
    let kernel = 0xffff_0000_4000_0000u64;
    access(&mut t, kernel, 1, global);
    pass(&mut t, Map::Pages, 1, (0..8).map(|p| BASE + p * K4));
    pass(&mut t, Map::Pages, 2, (0..8).map(|p| BASE + p * K4));
    assert_eq!(t.occupancy().1, 17);
    t.tlbi(Tlbi::Asid(1));
    assert_eq!(t.occupancy().1, 9);
    assert_eq!(access(&mut t, kernel, 1, global), Outcome::L1Hit);
    assert_eq!(
        pass(&mut t, Map::Pages, 2, (0..8).map(|p| BASE + p * K4)).walks,
        0
    );
    t.tlbi(Tlbi::All);
    assert_eq!(t.occupancy(), (0, 0));
}

/// An ASID switch: the same VA under another ASID misses; a global entry does not.
#[test]
fn asid_switch_misses_non_global_entries() {
    let mut t = a76();
    assert!(matches!(
        access(&mut t, BASE, 1, || walk(Map::Pages)),
        Outcome::Walked { loads: 4 }
    ));
    assert_eq!(access(&mut t, BASE, 1, || walk(Map::Pages)), Outcome::L1Hit);
    assert!(matches!(
        access(&mut t, BASE, 2, || walk(Map::Pages)),
        Outcome::Walked { .. }
    ));
    let global = || {
        Some(Walk {
            shift: 21,
            contiguous: false,
            global: true,
            loads: 3,
        })
    };
    access(&mut t, BASE + M2, 1, global);
    assert_eq!(
        access(&mut t, BASE + M2, 2, || unreachable!()),
        Outcome::L1Hit
    );
}

/// A fold between passes (the kernel's convert: TLBI the 64 KiB range, then the 16
/// entries carry the bit): 16 walks before, 1 after. An unfold the other way round.
#[test]
fn fold_and_unfold_between_passes() {
    let run = || (0..16).map(|p| BASE + p * K4);
    let mut t = a76();
    assert_eq!(pass(&mut t, Map::Pages, 1, run()).walks, 16);
    t.tlbi(Tlbi::Range {
        va: BASE,
        len: K64,
        asid: Some(1),
        last_level: true,
    });
    assert_eq!(pass(&mut t, Map::Contiguous, 1, run()).walks, 1);
    assert_eq!(t.occupancy(), (1, 1));
    t.tlbi(Tlbi::Range {
        va: BASE,
        len: K64,
        asid: Some(1),
        last_level: true,
    });
    assert_eq!(pass(&mut t, Map::Pages, 1, run()).walks, 16);
    assert_eq!(t.occupancy(), (16, 16));
}

/// A faulting access fills nothing.
#[test]
fn a_fault_fills_nothing() {
    let mut t = a76();
    assert_eq!(access(&mut t, BASE, 1, || None), Outcome::Fault);
    assert_eq!(t.occupancy(), (0, 0));
}

/// With a walk cache, a walk whose level-3 table is cached loads the leaf only; a
/// last-level TLBI keeps the cached table, a TLBI of all levels does not.
#[test]
fn walk_cache_saves_the_table_loads() {
    let mut t = Tlb::new(Preset {
        walk_cache: 16,
        ..Preset::cortex_a76()
    });
    let c = pass(&mut t, Map::Pages, 1, (0..512).map(|p| BASE + p * K4));
    assert_eq!((c.walks, c.walk_loads), (512, 4 + 511));
    t.tlbi(Tlbi::Va {
        va: BASE,
        asid: Some(1),
        last_level: true,
    });
    assert_eq!(
        access(&mut t, BASE, 1, || walk(Map::Pages)),
        Outcome::Walked { loads: 1 }
    );
    t.tlbi(Tlbi::Va {
        va: BASE,
        asid: Some(1),
        last_level: false,
    });
    assert_eq!(
        access(&mut t, BASE, 1, || walk(Map::Pages)),
        Outcome::Walked { loads: 4 }
    );
}

/// A hit gives the output address from the entry: for a contiguous run, the run's base
/// (from the walk that filled it) plus the offset, whatever the other 15 pages say.
#[test]
fn hits_translate_from_the_entry() {
    let mut t = a76();
    let pa = 0x8000_0000u64;
    let contiguous = Walk {
        shift: 12,
        contiguous: true,
        global: false,
        loads: 4,
    };
    let filled = t.translate(BASE + 3 * K4 + 5, 1, || Some((contiguous, pa + 3 * K4 + 5)));
    assert_eq!(
        filled,
        (Outcome::Walked { loads: 4 }, Some(pa + 3 * K4 + 5))
    );
    let hit = t.translate(BASE + 9 * K4 + 7, 1, || unreachable!());
    assert_eq!(hit, (Outcome::L1Hit, Some(pa + 9 * K4 + 7)));
    let mut q = Tlb::new(Preset::qemu());
    q.translate(BASE, 1, || Some((contiguous, pa)));
    assert!(matches!(
        q.translate(BASE + K4, 1, || Some((contiguous, pa + K4))).0,
        Outcome::Walked { .. }
    ));
}
