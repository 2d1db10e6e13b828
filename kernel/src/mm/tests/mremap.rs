//! mremap (issue 23): moves keep every folio whole, 2 MiB blocks move as one entry and
//! folded 64 KiB blocks as blocks where the destination keeps their offset; shrink,
//! growth in place, DONTUNMAP, after fork and after MADV_FREE (the lazyfree reverse
//! map follows); Linux's errors. Each test runs on every `ContMode` with software and
//! hardware dirty state; the checker runs inside every page-table operation, the
//! folio audit at every `check_pages`, and at the end every frame must be back.

use super::collapse::{all_back, check_pages, check_pages_among, leaf, only, region, write_pages};
use super::lazyfree::{each_cleaning_machine, each_machine, folio_at};
use super::*;
use crate::mm::addr::{CONT_SIZE, PMD_SIZE};
use crate::mm::lazyfree::{self, STATS};
use crate::mm::pgtable::PtMachine;
use crate::uapi::{EFAULT, EINVAL, ENOMEM};

const MOVE: u64 = MREMAP_MAYMOVE | MREMAP_FIXED;
const P: usize = PAGE_SIZE;

/// A destination 32 MiB above the test region, `offset` bytes past 2 MiB alignment.
fn dst(offset: usize) -> VirtAddr {
    VirtAddr(WINDOW + (32 << 20) + offset as u64)
}

fn mremap(
    mm: &mut Mm<HostMachine>,
    old: VirtAddr,
    old_len: usize,
    new_len: usize,
    flags: u64,
    to: VirtAddr,
) -> Result<VirtAddr, i32> {
    mm.mremap(
        old.as_u64(),
        old_len as u64,
        new_len as u64,
        flags,
        to.as_u64(),
    )
}

/// 4 MiB of each folio size moved to a destination with the same offset inside 2 MiB,
/// with another offset inside 64 KiB (4 KiB), and with the same offset inside 64 KiB
/// but not inside 2 MiB: the data follows, no folio is split, a 2 MiB block arrives
/// as a block where the offset inside 2 MiB is kept (no PMD split, no unfold), a folded
/// block arrives folded where the offset inside 64 KiB is kept (no unfold).
#[test]
fn every_folio_size_moves_whole() {
    for order in [0, 2, 4, 6, 9] {
        for offset in [0, P, CONT_SIZE] {
            each_machine(|env| {
                let orders = [order];
                only(if order == 0 { &[] } else { &orders });
                let mut mm = Mm::new_in(&env).unwrap();
                let len = 2 * PMD_SIZE;
                let n = len / P;
                let va = region(&mut mm, len, PMD_SIZE);
                write_pages(&mut mm, va, 0..n);
                let orders: Vec<usize> = (0..n).map(|i| folio_at(&mm, va, i).order()).collect();
                assert!(
                    orders.iter().all(|&o| o == order),
                    "order {order}: {orders:?}"
                );
                let before = env.counters().snapshot();
                let to = dst(offset);
                assert_eq!(mremap(&mut mm, va, len, len, MOVE, to), Ok(to));
                let moved = env.counters().snapshot() - before;
                check_pages(&mm, to, n, |_| true);
                assert!(mm.tables.get(va).is_none() && mm.vmas.find(va).is_none());
                for i in 0..n {
                    assert_eq!(folio_at(&mm, to, i).order(), order, "page {i}: split");
                }
                let what = format!("order {order}, offset {offset:#x}, {env:?}");
                // Whole 2 MiB regions of smaller folios keep their offset: the two
                // level-3 tables move, no entry below level 2 is written.
                let tables = if order < 9 && offset == 0 { 2 } else { 0 };
                assert_eq!(moved.tables_moved, tables, "{what}");
                if order == 9 && offset == 0 {
                    assert_eq!(leaf(&mm, to).level, 2, "{what}");
                    assert_eq!(leaf(&mm, to.add(PMD_SIZE)).level, 2, "{what}");
                    assert_eq!(moved.pmd_splits, 0, "{what}");
                }
                let kept_64k = offset.is_multiple_of(CONT_SIZE);
                let block = order == 9 && offset == 0;
                if order >= 4 && kept_64k && !block && env.mode != ContMode::Off {
                    let folded = (0..len / CONT_SIZE)
                        .all(|k| leaf(&mm, to.add(k * CONT_SIZE)).pte.is_cont());
                    assert!(folded, "{what}");
                    if env.mode == ContMode::On {
                        assert_eq!(moved.unfolds, 0, "{what}");
                        // Each folded block arrives folded at once: no convert (a
                        // 2 MiB block is split into folded blocks first: as many
                        // written before).
                        if offset != 0 {
                            let writes = if order == 9 { 2 } else { 1 };
                            let blocks = (writes * len / CONT_SIZE) as u64;
                            assert_eq!(moved.converts, 0, "{what}");
                            assert_eq!(moved.cont_maps, blocks, "{what}");
                        }
                    }
                }
                if !kept_64k {
                    assert!(!leaf(&mm, to).pte.is_cont(), "{what}");
                }
                all_back([mm]);
            });
        }
    }
}

/// Whole 2 MiB regions moved to a destination with the same offset inside 2 MiB go as
/// level-3 tables, for every folio size below 2 MiB, with everything that names their
/// address: MADV_FREE'd folios (marked before a fork, so the child's mapping has an
/// entry of its own, which stays) have their entries follow, a collapse hint for a
/// moved region follows it, and the range's tail, which covers a table only in part,
/// moves entry by entry. The folios stay whole and shared with the child; the range
/// is moved on once more, and once the child is gone MADV_PAGEOUT discards the marked
/// folios at their last address. The checker runs in every operation, the audit
/// (every marked folio's entries) at every check.
#[test]
fn whole_tables_move_with_what_names_their_address() {
    for order in [0, 2, 4, 6] {
        each_cleaning_machine(|env| {
            let orders = [order];
            only(if order == 0 { &[] } else { &orders });
            let mut mm = Mm::new_in(&env).unwrap();
            let len = 2 * PMD_SIZE + 4 * CONT_SIZE;
            let n = len / P;
            let va = region(&mut mm, len, PMD_SIZE);
            write_pages(&mut mm, va, 0..n);
            let marked = 4 * CONT_SIZE / P;
            mm.madvise(va, va.add(4 * CONT_SIZE), MADV_FREE).unwrap();
            let child = mm.fork().unwrap();
            let owner = mm.tables.root();
            let entries = |owner| -> Vec<VirtAddr> {
                let mut v: Vec<VirtAddr> = lazyfree::list_entries()
                    .iter()
                    .filter(|e| e.owner == owner)
                    .map(|e| e.va)
                    .collect();
                v.sort_unstable();
                v
            };
            let child_entries = entries(child.tables.root());
            let heads = |at: VirtAddr| -> Vec<VirtAddr> {
                let step = P << order;
                (0..4 * CONT_SIZE / step)
                    .map(|k| at.add(k * step))
                    .collect()
            };
            assert_eq!(entries(owner), heads(va), "order {order}, {env:?}");
            while crate::mm::collapse::take_hint().is_some() {}
            crate::mm::collapse::hint(&mm, va.add(PMD_SIZE));
            let mut from = va;
            for to in [dst(0), dst(0).add(8 << 20)] {
                let before = env.counters().snapshot();
                assert_eq!(mremap(&mut mm, from, len, len, MOVE, to), Ok(to));
                let moved = env.counters().snapshot() - before;
                let what = format!("order {order}, to {to:?}, {env:?}");
                assert_eq!(moved.tables_moved, 2, "{what}");
                check_pages_among(&mm, &[&mm, &child], to, n, |_| true);
                check_pages_among(&child, &[&mm, &child], va, n, |_| true);
                assert!(
                    (0..n).all(|i| folio_at(&mm, to, i).order() == order),
                    "{what}"
                );
                assert_eq!(entries(owner), heads(to), "{what}");
                assert_eq!(entries(child.tables.root()), child_entries, "{what}");
                // The oldest hint is ours, followed; the rest are the edges the call
                // cut (the queue is drained, to find ours first next time).
                let hints: Vec<_> = core::iter::from_fn(crate::mm::collapse::take_hint).collect();
                assert_eq!(hints.first(), Some(&(owner, to.add(PMD_SIZE))), "{what}");
                assert!(!hints.contains(&(owner, from.add(PMD_SIZE))), "{what}");
                crate::mm::collapse::hint(&mm, to.add(PMD_SIZE));
                from = to;
            }
            while crate::mm::collapse::take_hint().is_some() {}
            drop(child);
            let freed = STATS
                .pglazyfreed
                .load(core::sync::atomic::Ordering::Relaxed);
            mm.madvise(from, from.add(4 * CONT_SIZE), MADV_PAGEOUT)
                .unwrap();
            let now = STATS
                .pglazyfreed
                .load(core::sync::atomic::Ordering::Relaxed);
            assert_eq!(now - freed, marked as u64, "order {order}, {env:?}");
            check_pages(&mm, from, n, |i| i >= marked);
            all_back([mm]);
        });
    }
}

/// Shrinking through a folded block unfolds that block only, and a large folio cut in
/// two keeps its pages (the cut-off part is gone); growth in place extends the VMA
/// when the range after it is free, else needs MREMAP_MAYMOVE, which moves it.
#[test]
fn shrink_through_a_folded_block_and_grow_in_place_or_move() {
    each_machine(|env| {
        only(&[4]);
        let mut mm = Mm::new_in(&env).unwrap();
        let va = region(&mut mm, 4 * CONT_SIZE, PMD_SIZE);
        write_pages(&mut mm, va, 0..64);
        let before = env.counters().snapshot();
        let short = 4 * CONT_SIZE - 8 * P;
        assert_eq!(
            mremap(&mut mm, va, 4 * CONT_SIZE, short, 0, VirtAddr(0)),
            Ok(va)
        );
        let cut = env.counters().snapshot() - before;
        check_pages(&mm, va, 64, |i| i < 56);
        if env.mode == ContMode::On {
            assert_eq!(cut.unfolds, 1, "only the cut block unfolds");
            assert!((0..3).all(|k| leaf(&mm, va.add(k * CONT_SIZE)).pte.is_cont()));
        }
        // Growth in place: one VMA, the new pages fault in as usual.
        let long = 8 * CONT_SIZE;
        assert_eq!(mremap(&mut mm, va, short, long, 0, VirtAddr(0)), Ok(va));
        assert_eq!(mm.vmas.len(), 1);
        assert_eq!(mm.vmas.find(va).unwrap().end, va.add(long));
        write_pages(&mut mm, va, 100..101);
        check_pages(&mm, va, 128, |i| i < 56 || i == 100);
        // Something right after: growth needs a move.
        let next = va.add(long);
        mm.mmap(next.as_u64(), P as u64, VmProt::READ, MAP_FIXED)
            .unwrap();
        let longer = 2 * long;
        assert_eq!(
            mremap(&mut mm, va, long, longer, 0, VirtAddr(0)),
            Err(ENOMEM)
        );
        let to = mremap(&mut mm, va, long, longer, MREMAP_MAYMOVE, VirtAddr(0)).unwrap();
        assert!(to != va && mm.vmas.find(va).is_none());
        check_pages(&mm, to, 256, |i| i < 56 || i == 100);
        all_back([mm]);
    });
}

/// After fork the folios are shared: the parent's move keeps them shared and read-only
/// (a write copies, the child keeps its data), the child's mapping is untouched.
#[test]
fn a_move_after_fork_keeps_the_folios_shared() {
    each_machine(|env| {
        only(&[4, 9]);
        let mut mm = Mm::new_in(&env).unwrap();
        let len = PMD_SIZE + 2 * CONT_SIZE;
        let va = region(&mut mm, len, PMD_SIZE);
        let n = len / P;
        write_pages(&mut mm, va, 0..n);
        let child = mm.fork().unwrap();
        for (k, offset) in [0, CONT_SIZE].into_iter().enumerate() {
            let to = dst(offset).add(k * (8 << 20));
            let from = mm.vmas.iter().next().unwrap().start;
            assert_eq!(mremap(&mut mm, from, len, len, MOVE, to), Ok(to));
            check_pages_among(&mm, &[&mm, &child], to, n, |_| true);
            check_pages_among(&child, &[&mm, &child], va, n, |_| true);
            assert!(!leaf(&mm, to).pte.is_writable(), "shared, read-only");
        }
        let to = dst(CONT_SIZE).add(8 << 20);
        write_pages(&mut mm, to, 0..1);
        assert_ne!(
            leaf(&mm, to).pa_of(to),
            leaf(&child, va).pa_of(va),
            "copied"
        );
        check_pages_among(&child, &[&mm, &child], va, n, |_| true);
        all_back([mm, child]);
    });
}

/// MADV_FREE'd folios keep their mark across a move: their lazyfree entries follow
/// (the audit checks every marked folio's entry), and MADV_PAGEOUT at the new address
/// then discards them whole.
#[test]
fn lazyfree_entries_follow_a_move_and_reclaim_still_discards() {
    each_machine(|env| {
        if env.mode == ContMode::Naive {
            return; // a contiguous block never becomes clean there (lazyfree.rs)
        }
        only(&[4]);
        let mut mm = Mm::new_in(&env).unwrap();
        let va = region(&mut mm, 4 * CONT_SIZE, PMD_SIZE);
        write_pages(&mut mm, va, 0..64);
        mm.madvise(va, va.add(4 * CONT_SIZE), MADV_FREE).unwrap();
        assert_eq!(lazyfree::list_entries().len(), 4);
        for (k, offset) in [CONT_SIZE, P].into_iter().enumerate() {
            let to = dst(offset).add(k * (8 << 20));
            let from = mm.vmas.iter().next().unwrap().start;
            assert_eq!(
                mremap(&mut mm, from, 4 * CONT_SIZE, 4 * CONT_SIZE, MOVE, to),
                Ok(to)
            );
            check_pages(&mm, to, 64, |_| true);
            let vas: Vec<VirtAddr> = lazyfree::list_entries().iter().map(|e| e.va).collect();
            let want: Vec<VirtAddr> = (0..4).map(|k| to.add(k * CONT_SIZE)).collect();
            assert_eq!(vas, want, "{env:?}");
            assert!((0..64).all(|i| folio_at(&mm, to, i).is_lazyfree()));
        }
        let freed = STATS
            .pglazyfreed
            .load(core::sync::atomic::Ordering::Relaxed);
        let to = dst(P).add(8 << 20);
        mm.madvise(to, to.add(4 * CONT_SIZE), MADV_PAGEOUT).unwrap();
        let now = STATS
            .pglazyfreed
            .load(core::sync::atomic::Ordering::Relaxed);
        assert_eq!(now - freed, 64, "{env:?}");
        check_pages(&mm, to, 64, |_| false);
        all_back([mm]);
    });
}

/// MREMAP_DONTUNMAP: the pages move, the source stays as an empty VMA that faults in
/// fresh zero pages; a size change is EINVAL.
#[test]
fn dontunmap_leaves_an_empty_source() {
    each_machine(|env| {
        only(&[4, 9]);
        let mut mm = Mm::new_in(&env).unwrap();
        let len = PMD_SIZE;
        let va = region(&mut mm, len, PMD_SIZE);
        write_pages(&mut mm, va, 0..512);
        let flags = MREMAP_MAYMOVE | MREMAP_DONTUNMAP;
        assert_eq!(
            mremap(&mut mm, va, len, 2 * len, flags, VirtAddr(0)),
            Err(EINVAL)
        );
        let to = mremap(&mut mm, va, len, len, flags, VirtAddr(0)).unwrap();
        assert_ne!(to, va);
        check_pages(&mm, to, 512, |_| true);
        assert!(mm.vmas.find(va).is_some(), "the source VMA stays");
        check_pages(&mm, va, 512, |_| false);
        assert_eq!(leaf(&mm, to).level, 2, "the block moved whole");
        write_pages(&mut mm, va, 3..4);
        check_pages(&mm, va, 512, |i| i == 3);
        all_back([mm]);
    });
}

/// Linux 6.12's errors, and nothing changed by a refused call (a pure move across
/// VMAs, EFAULT on 6.12, is `a_pure_move_takes_every_vma_of_the_range`'s).
#[test]
fn bad_arguments_get_linuxs_errors() {
    let _m = host::machine();
    only(&[4]);
    let mut mm = Mm::new_in(&super::collapse::env()).unwrap();
    let va = region(&mut mm, 4 * CONT_SIZE, PMD_SIZE);
    write_pages(&mut mm, va, 0..64);
    let len = 4 * CONT_SIZE;
    // Right after it, unlike it: no growth in place, and a range past its end
    // crosses into another VMA.
    let other = va.add(len);
    mm.mmap(other.as_u64(), P as u64, VmProt::READ, MAP_FIXED)
        .unwrap();
    let a = va.as_u64();
    let cases: &[(u64, u64, u64, u64, u64, i32)] = &[
        (a, len as u64, len as u64, 8, 0, EINVAL), // unknown flag
        (
            a,
            len as u64,
            len as u64,
            MREMAP_FIXED,
            dst(0).as_u64(),
            EINVAL,
        ), // FIXED alone
        (a, len as u64, 2 * len as u64, MREMAP_DONTUNMAP, 0, EINVAL), // DONTUNMAP alone
        (
            a,
            len as u64,
            2 * len as u64,
            MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
            0,
            EINVAL,
        ),
        (a + 1, len as u64, len as u64, 0, 0, EINVAL), // unaligned
        (a, len as u64, 0, 0, 0, EINVAL),              // new_len 0
        (a, len as u64, u64::MAX, MREMAP_MAYMOVE, 0, EINVAL), // wraps to 0
        (a, 0, len as u64, MREMAP_MAYMOVE, 0, EINVAL), // private dup
        (a, len as u64, len as u64, MOVE, a + P as u64, EINVAL), // overlapping
        (a, len as u64, len as u64, MOVE, dst(0).as_u64() + 1, EINVAL), // unaligned dst
        (
            a,
            len as u64,
            len as u64,
            MOVE,
            (1 << 48) - P as u64,
            EINVAL,
        ), // past the top
        (a, len as u64, 1 << 50, MREMAP_MAYMOVE, 0, ENOMEM), // no room
        (
            WINDOW - PMD_SIZE as u64,
            P as u64,
            2 * P as u64,
            MREMAP_MAYMOVE,
            0,
            EFAULT,
        ),
        (a, 2 * len as u64, 4 * len as u64, MREMAP_MAYMOVE, 0, EFAULT), // across VMAs
        (
            a + len as u64 - P as u64,
            P as u64,
            2 * P as u64,
            0,
            0,
            ENOMEM,
        ), // no move
    ];
    for &(old, old_len, new_len, flags, new, errno) in cases {
        let r = mm.mremap(old, old_len, new_len, flags, new);
        assert_eq!(
            r,
            Err(errno),
            "mremap({old:#x}, {old_len:#x}, {new_len:#x}, {flags}, {new:#x})"
        );
        check_pages(&mm, va, 64, |_| true);
    }
    // old_len == new_len without a move is a no-op whatever the range.
    assert_eq!(mm.mremap(a, 1 << 40, 1 << 40, 0, 0), Ok(va));
    all_back([mm]);
}

/// A pure move (FIXED, the same length; Linux 6.17+'s `remap_move`) of a range over
/// several VMAs of each folio size: a read-only piece, a 64 KiB hole, a one-page hole
/// cutting a folio, a hole at the end; starting inside the first VMA. Each piece goes
/// to the same offset from the destination, whatever was mapped at the images of the
/// holes stays (a read-only placeholder there), the pieces keep their protection and
/// data, no folio is split; the source is gone, or with DONTUNMAP its pieces stay as
/// empty VMAs. A start in a hole is EFAULT and changes nothing.
#[test]
fn a_pure_move_takes_every_vma_of_the_range() {
    const N: usize = 2 * PMD_SIZE / P;
    const FIRST: usize = 8;
    // The range moved: pages FIRST..N of the region and 64 pages of hole after it.
    const END: usize = N + 64;
    let hole = |i: usize| (16..32).contains(&i) || i == 517 || i >= N;
    let read_only = |i: usize| (256..300).contains(&i);
    for order in [0, 4, 9] {
        for offset in [0, P, CONT_SIZE] {
            for dontunmap in [false, true] {
                each_machine(|env| {
                    let orders = [order];
                    only(if order == 0 { &[] } else { &orders });
                    let mut mm = Mm::new_in(&env).unwrap();
                    let va = region(&mut mm, N * P, PMD_SIZE);
                    write_pages(&mut mm, va, 0..N);
                    let page = |i: usize| va.add(i * P);
                    mm.munmap(page(16), page(32)).unwrap();
                    mm.munmap(page(517), page(518)).unwrap();
                    mm.mprotect(page(256), page(300), VmProt::READ).unwrap();
                    let what = format!("order {order}, offset {offset:#x}, {env:?}");
                    // A start in a hole: EFAULT, nothing changed.
                    let r = mremap(&mut mm, page(16), 4 * P, 4 * P, MOVE, dst(offset));
                    assert_eq!(r, Err(EFAULT), "{what}");
                    let to = dst(offset);
                    // Where page 0 would go: page i goes i pages past it.
                    let base = VirtAddr(to.as_u64() - (FIRST * P) as u64);
                    let image = |i: usize| base.add(i * P);
                    let len = (END - FIRST) * P;
                    mm.mmap(to.as_u64(), len as u64, VmProt::READ, MAP_FIXED)
                        .unwrap();
                    let flags = if dontunmap {
                        MOVE | MREMAP_DONTUNMAP
                    } else {
                        MOVE
                    };
                    assert_eq!(mremap(&mut mm, page(FIRST), len, len, flags, to), Ok(to));
                    let at = |i| mm.vmas.find(image(i)).map(|v| v.prot);
                    for i in FIRST..END {
                        let want = if hole(i) || read_only(i) {
                            VmProt::READ
                        } else {
                            VmProt::READ_WRITE
                        };
                        assert_eq!(at(i), Some(want), "page {i}, {what}");
                        if !hole(i) && order > 0 {
                            assert_eq!(folio_at(&mm, image(i), 0).order(), order, "{what}");
                        }
                    }
                    check_pages(&mm, base, END, |i| i >= FIRST && !hole(i));
                    check_pages(&mm, va, FIRST, |_| true);
                    for i in FIRST..END {
                        let source = mm.vmas.find(page(i)).is_some();
                        assert_eq!(source, dontunmap && !hole(i), "page {i}, {what}");
                        assert!(mm.tables.get(page(i)).is_none(), "page {i}, {what}");
                    }
                    all_back([mm]);
                });
            }
        }
    }
}

/// A hostile shrink: mremap of 2^47 bytes down to one page unmaps everything after
/// that page (as munmap of that range would), and costs what is mapped there, not a
/// walk of 2^26 empty 2 MiB batches under the address-space lock (about 80 s of this
/// host test before `unmap_pages` walked VMA pieces only; microseconds now).
#[test]
fn a_huge_shrink_costs_what_is_mapped() {
    let _m = host::machine();
    only(&[4]);
    let mut mm = Mm::new_in(&super::collapse::env()).unwrap();
    let va = region(&mut mm, 4 * CONT_SIZE, PMD_SIZE);
    write_pages(&mut mm, va, 0..64);
    let far = VirtAddr(1 << 46);
    mm.mmap(far.as_u64(), P as u64, VmProt::READ_WRITE, MAP_FIXED)
        .unwrap();
    write_pages(&mut mm, far, 0..1);
    let t = std::time::Instant::now();
    assert_eq!(mm.mremap(va.as_u64(), 1 << 47, P as u64, 0, 0), Ok(va));
    let took = t.elapsed();
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    check_pages(&mm, va, 64, |i| i == 0);
    assert!(
        mm.vmas.find(far).is_none(),
        "the far mapping is unmapped too"
    );
    all_back([mm]);
}

/// The zero pages move as any entry: the huge zero page's block (2 MiB allowed) and
/// 4 KiB zero pages keep mapping zeros at the destination, read-only, with the huge
/// zero page's mapped pages unchanged (the block moves whole where the offset inside
/// 2 MiB is kept, as entries elsewhere), next to a folio written over zero pages;
/// nothing looks for a folio behind them (the lazyfree follow skips them).
#[test]
fn zero_pages_move_as_entries() {
    each_machine(|env| {
        only(&[4, 9]);
        let mut mm = Mm::new_in(&env).unwrap();
        let len = PMD_SIZE + 2 * CONT_SIZE;
        let n = len / P;
        let va = region(&mut mm, len, PMD_SIZE);
        for i in 0..n {
            let at = va.add(i * P);
            if mm.tables.get(at).is_none() {
                mm.handle_fault(at, Access::Read).expect("read fault");
            }
        }
        // A write in the last 64 KiB: a 64 KiB folio over its zero pages.
        let written = PMD_SIZE / P + 16 + 3;
        write_pages(&mut mm, va, written..written + 1);
        assert_eq!(leaf(&mm, va).level, 2, "the huge zero page's block");
        let mapped = crate::mm::zero::huge_mapped();
        for (k, offset) in [0, P].into_iter().enumerate() {
            let to = dst(offset).add(k * (8 << 20));
            let from = mm.vmas.iter().next().unwrap().start;
            assert_eq!(mremap(&mut mm, from, len, len, MOVE, to), Ok(to));
            assert_eq!(leaf(&mm, to).level, if offset == 0 { 2 } else { 3 });
            assert_eq!(crate::mm::zero::huge_mapped(), mapped);
            for i in 0..n {
                let at = to.add(i * P);
                let l = leaf(&mm, at);
                let zero = crate::mm::zero::is_zero(l.pa_of(at));
                assert_eq!(zero, i < PMD_SIZE / P + 16, "page {i}");
                assert!(
                    !(zero && l.pte.is_writable()),
                    "page {i}: zero page writable"
                );
            }
            check_pages(&mm, to, n, |i| i == written);
        }
        all_back([mm]);
    });
}

/// A reclaim pass may hold a marked folio's entry off the list (it found this address
/// space busy, and puts the entry back later, stale after the move): the move lists
/// the new address itself, so reclaim still reaches the folio.
#[test]
fn a_moved_folio_whose_entry_a_pass_holds_is_listed_again() {
    let _m = host::machine();
    only(&[4]);
    let mut mm = Mm::new_in(&super::collapse::env()).unwrap();
    let va = region(&mut mm, CONT_SIZE, PMD_SIZE);
    write_pages(&mut mm, va, 0..16);
    mm.madvise(va, va.add(CONT_SIZE), MADV_FREE).unwrap();
    let held = lazyfree::pop().expect("the folio's entry");
    assert_eq!(held.va, va);
    let to = dst(0);
    assert_eq!(mremap(&mut mm, va, CONT_SIZE, CONT_SIZE, MOVE, to), Ok(to));
    let vas: Vec<VirtAddr> = lazyfree::list_entries().iter().map(|e| e.va).collect();
    assert_eq!(vas, [to]);
    check_pages(&mm, to, 16, |_| true);
    assert_eq!(mm.reclaim_entry(held), lazyfree::Visit::Stale);
    lazyfree::settle(None);
    mm.madvise(to, to.add(CONT_SIZE), MADV_PAGEOUT).unwrap();
    check_pages(&mm, to, 16, |_| false);
    all_back([mm]);
}
