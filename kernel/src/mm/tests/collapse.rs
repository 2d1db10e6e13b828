//! Collapse on the simulated machine: in place after mprotect split and restore (64
//! KiB and 2 MiB) with no copy and no allocation, a merge of contiguous folios, a copy
//! of scattered 4 KiB pages, `max_ptes_none` (0, 511, refused values, no creep),
//! shared pages, MADV_COLLAPSE's order and errors. Every test checks the data through
//! the page tables and the folio audit afterwards; the property tests
//! (`props.rs`) mix MADV_COLLAPSE and thread scans into random sequences.

use core::sync::atomic::Ordering;

use super::*;
use crate::mm::addr::{CONT_SIZE, PMD_SIZE};
use crate::mm::collapse::{self as engine, Limits, WindowScan, MAX_PTES_NONE};
use crate::mm::frame;
use crate::mm::pgtable::Leaf;
use crate::uapi::{EINVAL, MADV_NOHUGEPAGE};
use std::sync::MutexGuard;

/// One pass of the collapse thread over every 2 MiB window of every VMA of `mm`,
/// with the thread's limits and the policy's orders.
pub fn scan_all(mm: &mut Mm<HostMachine>) -> WindowScan {
    let mut total = WindowScan::default();
    let vmas: Vec<_> = mm.vmas.iter().cloned().collect();
    let limits = Limits::thread();
    for vma in vmas {
        let mut w = vma.start.align_down(PMD_SIZE);
        while w < vma.end {
            let r = mm.collapse_window(w, &vma, mthp::POLICY.allowed_orders(vma.huge), &limits);
            total.blocks += r.blocks;
            total.in_place += r.in_place;
            total.copied += r.copied;
            w = w.add(PMD_SIZE);
        }
    }
    total
}

/// FEAT_HAFDBS on, range TLBI, no BBM level 2.
pub(super) const HW: Features = Features {
    hw_af: true,
    hw_dirty: true,
    range_tlbi: true,
    bbml2: false,
};

/// Only the sizes of `orders` are `always`, top-level `never`.
pub(super) fn only(orders: &[usize]) {
    mthp::POLICY.set_top(TopSetting::Never);
    for o in mthp::MTHP_ORDERS {
        let s = if orders.contains(&o) {
            SizeSetting::Always
        } else {
            SizeSetting::Never
        };
        mthp::POLICY.set_size(o, s);
    }
}

pub(super) fn env() -> HostMachine {
    HostMachine {
        features: HW,
        mode: ContMode::On,
    }
}

/// A fresh machine with only the folio sizes of `orders`, and an address space with
/// a read-write mapping of `len` bytes aligned to its length.
pub(super) fn setup(
    orders: &[usize],
    len: usize,
) -> (MutexGuard<'static, ()>, Mm<HostMachine>, VirtAddr) {
    let machine = host::machine();
    only(orders);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, len, len);
    (machine, mm, va)
}

/// A read-write mapping of `len` bytes aligned to `align`.
pub(super) fn region(mm: &mut Mm<HostMachine>, len: usize, align: usize) -> VirtAddr {
    let va = VirtAddr(WINDOW).align_up(align);
    mm.mmap(va.as_u64(), len as u64, VmProt::READ_WRITE, MAP_FIXED)
        .expect("mmap");
    va
}

/// Store byte `pattern(i)` at the start of page `i` of `[va, va + pages)`, faulting
/// pages in in the order given.
pub(super) fn write_pages(
    mm: &mut Mm<HostMachine>,
    va: VirtAddr,
    pages: impl Iterator<Item = usize>,
) {
    for i in pages {
        let at = va.add(i * PAGE_SIZE);
        if mm.tables.get(at).is_none_or(|l| !l.pte.is_writable()) {
            mm.handle_fault(at, Access::Write).expect("fault");
        }
        let pa = mm.tables.get(at).unwrap().pa_of(at);
        host::write_byte(pa, pattern(i));
    }
}

pub(super) fn pattern(i: usize) -> u8 {
    (i % 251 + 1) as u8
}

/// Page `i` holds `pattern(i)` if written, zero if not.
pub(super) fn check_pages(
    mm: &Mm<HostMachine>,
    va: VirtAddr,
    pages: usize,
    written: impl Fn(usize) -> bool,
) {
    check_pages_among(mm, &[mm], va, pages, written);
}

/// [`check_pages`] for `mm`, with the folio audit over all of `all` (address spaces
/// that map the same folios, after fork).
pub(super) fn check_pages_among(
    mm: &Mm<HostMachine>,
    all: &[&Mm<HostMachine>],
    va: VirtAddr,
    pages: usize,
    written: impl Fn(usize) -> bool,
) {
    for i in 0..pages {
        let at = va.add(i * PAGE_SIZE);
        let got = mm
            .tables
            .get(at)
            .map_or(0, |l| host::read_byte(l.pa_of(at)));
        let want = if written(i) { pattern(i) } else { 0 };
        assert_eq!(got, want, "page {i} at {at:?}");
    }
    audit::check(all.iter().copied()).expect("folio audit");
}

/// After the address spaces are gone every frame is back.
pub(super) fn all_back(mms: impl IntoIterator<Item = Mm<HostMachine>>) {
    for mm in mms {
        drop(mm);
    }
    assert_eq!(
        crate::mm::zero::huge_mapped(),
        0,
        "huge zero page still counted mapped"
    );
    // Reclaim frees the huge zero page once nothing maps it.
    crate::mm::zero::shrink();
    let f = frames();
    assert_eq!(f.free_frames(), f.managed_frames(), "frames not back");
}

pub(super) fn leaf(mm: &Mm<HostMachine>, va: VirtAddr) -> Leaf {
    mm.tables.get(va).expect("mapped")
}

/// Every 64 KiB block of `[va, va + len)` is folded.
fn folded(mm: &Mm<HostMachine>, va: VirtAddr, len: usize) -> bool {
    (0..len / CONT_SIZE).all(|k| leaf(mm, va.add(k * CONT_SIZE)).pte.is_cont())
}

fn stat(order: usize) -> (u64, u64) {
    let s = mthp::stats(order);
    (
        s.collapse_in_place.load(Ordering::Relaxed),
        s.collapse_alloc.load(Ordering::Relaxed),
    )
}

fn allocs() -> u64 {
    (0..=frame::MAX_ORDER)
        .map(|o| frames().stats.allocs[o].load(Ordering::Relaxed))
        .sum()
}

#[test]
fn mprotect_split_and_restore_of_64k_collapses_in_place() {
    let _m = host::machine();
    only(&[4]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, 2 * CONT_SIZE, CONT_SIZE);
    write_pages(&mut mm, va, 0..32);
    assert!(folded(&mm, va, 2 * CONT_SIZE));
    let page = va.add(5 * PAGE_SIZE);
    mm.mprotect(page, page.add(PAGE_SIZE), VmProt::READ)
        .unwrap();
    mm.mprotect(page, page.add(PAGE_SIZE), VmProt::READ_WRITE)
        .unwrap();
    assert!(
        !folded(&mm, va, CONT_SIZE),
        "the restore leaves the block unfolded"
    );
    let (in_place, copies, frames_before) = (stat(4).0, stat(4).1, allocs());
    mm.madvise(va, va.add(2 * CONT_SIZE), MADV_COLLAPSE)
        .unwrap();
    assert!(folded(&mm, va, 2 * CONT_SIZE));
    assert_eq!(stat(4).0, in_place + 1, "one block refolded in place");
    assert_eq!(stat(4).1, copies, "no copy");
    assert_eq!(allocs(), frames_before, "no allocation");
    check_pages(&mm, va, 32, |_| true);
    all_back([mm]);
}

#[test]
fn mprotect_split_of_2m_collapses_back_to_a_block_in_place() {
    let _m = host::machine();
    only(&[9]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, PMD_SIZE, PMD_SIZE);
    write_pages(&mut mm, va, 0..512);
    assert_eq!(leaf(&mm, va).level, 2);
    let page = va.add(77 * PAGE_SIZE);
    mm.mprotect(page, page.add(PAGE_SIZE), VmProt::READ)
        .unwrap();
    mm.mprotect(page, page.add(PAGE_SIZE), VmProt::READ_WRITE)
        .unwrap();
    assert_eq!(leaf(&mm, va).level, 3, "split by the mprotect");
    let (in_place, copies, frames_before) = (stat(9).0, stat(9).1, allocs());
    let r = scan_all(&mut mm);
    assert_eq!(r.in_place, 1, "{r:?}");
    assert_eq!(leaf(&mm, va).level, 2, "a 2 MiB block again");
    assert_eq!(stat(9), (in_place + 1, copies));
    assert_eq!(allocs(), frames_before, "no allocation");
    check_pages(&mm, va, 512, |_| true);
    // A write through the block lands in the same folio.
    write_pages(&mut mm, va, 100..101);
    check_pages(&mm, va, 512, |_| true);
    all_back([mm]);
}

#[test]
fn contiguous_folios_are_merged_in_place() {
    let _m = host::machine();
    only(&[4]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, CONT_SIZE, CONT_SIZE);
    write_pages(&mut mm, va, 0..16);
    let head = leaf(&mm, va).pa_of(va);
    // Unmap one page: the folio is partially mapped and the shrinker splits it into
    // 4 KiB folios, freeing the unmapped one; the fault that follows gets it back.
    let hole = va.add(9 * PAGE_SIZE);
    mm.munmap(hole, hole.add(PAGE_SIZE)).unwrap();
    assert_eq!(folio::shrink_deferred(), 1);
    mm.mmap(
        hole.as_u64(),
        PAGE_SIZE as u64,
        VmProt::READ_WRITE,
        MAP_FIXED,
    )
    .unwrap();
    write_pages(&mut mm, va, 9..10);
    assert_eq!(
        leaf(&mm, hole).pa_of(hole),
        head.add(9 * PAGE_SIZE),
        "test premise: the freed frame came back"
    );
    assert_eq!(folio::span_of(head).nr_pages, 1, "sixteen 4 KiB folios");
    let (in_place, copies) = stat(4);
    let nr_anon = mthp::stats(4).nr_anon.load(Ordering::Relaxed);
    mm.madvise(va, va.add(CONT_SIZE), MADV_COLLAPSE).unwrap();
    assert_eq!(stat(4), (in_place + 1, copies), "merged, no copy");
    assert_eq!(folio::span_of(head).nr_pages, 16, "one 64 KiB folio");
    assert_eq!(mthp::stats(4).nr_anon.load(Ordering::Relaxed), nr_anon + 1);
    assert!(folded(&mm, va, CONT_SIZE));
    check_pages(&mm, va, 16, |_| true);
    all_back([mm]);
}

#[test]
fn scattered_4k_pages_are_copied_into_one_folio_and_the_old_freed() {
    let _m = host::machine();
    only(&[]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, 2 * CONT_SIZE, CONT_SIZE);
    // Faulted from the top down: the frames do not run in address order.
    write_pages(&mut mm, va, (0..32).rev());
    only(&[4]);
    let free = frames().free_frames();
    let (_, copies) = stat(4);
    let r = scan_all(&mut mm);
    assert_eq!(r.copied, 2, "{r:?}");
    assert_eq!(stat(4).1, copies + 2);
    assert!(folded(&mm, va, 2 * CONT_SIZE));
    assert_eq!(frames().free_frames(), free, "32 pages in, 32 pages out");
    check_pages(&mm, va, 32, |_| true);
    let again = scan_all(&mut mm);
    assert_eq!((again.copied, again.in_place), (0, 0), "nothing left to do");
    all_back([mm]);
}

/// Creep (module docs of `collapse`): with a `max_ptes_none` above half a block,
/// collapsing makes the enclosing block eligible at the next scan. 0 never adds
/// pages, 511 takes the largest order at once, anything else is refused for mTHP.
#[test]
fn max_ptes_none_does_not_creep() {
    let _m = host::machine();
    let old = MAX_PTES_NONE.get();
    for (max_none, want_pages) in [(0, 4), (255, 4), (511, 32)] {
        only(&[]);
        let mut mm = Mm::new_in(&env()).unwrap();
        let va = region(&mut mm, 32 * PAGE_SIZE, 32 * PAGE_SIZE);
        write_pages(&mut mm, va, (0..4).rev());
        only(&[2, 3, 4, 5]);
        MAX_PTES_NONE.set(max_none);
        let mut pages_after = Vec::new();
        for _ in 0..6 {
            scan_all(&mut mm);
            let mut n = 0;
            mm.tables
                .for_each_leaf(va, va.add(32 * PAGE_SIZE), |_, _| n += 1);
            pages_after.push(n);
        }
        assert!(
            pages_after.iter().all(|&n| n == want_pages),
            "max_ptes_none {max_none}: mapped pages after each scan {pages_after:?}"
        );
        let collapsed_16k = folio::span_of(leaf(&mm, va).pa_of(va)).nr_pages;
        match max_none {
            0 => assert_eq!(collapsed_16k, 4, "the full 16 KiB block collapses"),
            255 => assert_eq!(collapsed_16k, 1, "mTHP collapse refused"),
            _ => assert_eq!(collapsed_16k, 32, "straight to 128 KiB"),
        }
        check_pages(&mm, va, 32, |i| i < 4);
        all_back([mm]);
    }
    MAX_PTES_NONE.set(old);
}

#[test]
fn max_ptes_none_values_other_than_0_and_511_still_serve_the_pmd_order() {
    let limits = Limits {
        max_none: 256,
        ..Limits::thread()
    };
    assert_eq!(limits.none_allowed(9), Some(256));
    assert_eq!(limits.none_allowed(4), None);
    let zero = Limits {
        max_none: 0,
        ..limits
    };
    assert_eq!(zero.none_allowed(4), Some(0));
    let all = Limits {
        max_none: 511,
        ..limits
    };
    assert_eq!(all.none_allowed(4), Some(15));
    assert!(MAX_PTES_NONE.write("512").is_err() && MAX_PTES_NONE.write("x").is_err());
}

/// Clean lazyfree pages are reclaim's: the thread leaves their blocks alone (as Linux
/// 7.x's khugepaged), else it would copy memory reclaim may discard into a folio it
/// must keep (a busy collapse thread starved reclaim into OOM kills under
/// `scripts/stress.sh --soak`). MADV_COLLAPSE, asked for, takes them.
#[test]
fn clean_lazyfree_pages_are_skipped_by_the_thread_but_not_by_madvise() {
    let _m = host::machine();
    only(&[]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, 2 * CONT_SIZE, CONT_SIZE);
    write_pages(&mut mm, va, (0..32).rev());
    mm.madvise(va, va.add(2 * CONT_SIZE), crate::uapi::MADV_FREE)
        .unwrap();
    only(&[4]);
    let skipped = || {
        crate::mm::lazyfree::STATS
            .collapse_skipped
            .load(Ordering::Relaxed)
    };
    let before = skipped();
    let r = scan_all(&mut mm);
    assert_eq!((r.copied, r.in_place), (0, 0), "{r:?}");
    assert_eq!(skipped(), before + 2, "both 64 KiB blocks skipped");
    // A written page is no longer reclaim's, but its neighbours still are.
    write_pages(&mut mm, va, 3..4);
    let r = scan_all(&mut mm);
    assert_eq!((r.copied, r.in_place), (0, 0), "{r:?}");
    mm.madvise(va, va.add(2 * CONT_SIZE), MADV_COLLAPSE)
        .unwrap();
    assert!(folded(&mm, va, 2 * CONT_SIZE));
    check_pages(&mm, va, 32, |_| true);
    all_back([mm]);
}

#[test]
fn shared_ranges_are_skipped_by_the_thread_but_not_by_madvise() {
    let _m = host::machine();
    only(&[]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, CONT_SIZE, CONT_SIZE);
    write_pages(&mut mm, va, (0..16).rev());
    let child = mm.fork().unwrap();
    only(&[4]);
    let shared = mthp::stats(4)
        .collapse_exceed_shared_pte
        .load(Ordering::Relaxed);
    let r = scan_all(&mut mm);
    assert_eq!((r.copied, r.in_place), (0, 0));
    assert_eq!(
        mthp::stats(4)
            .collapse_exceed_shared_pte
            .load(Ordering::Relaxed),
        shared + 1
    );
    mm.madvise(va, va.add(CONT_SIZE), MADV_COLLAPSE).unwrap();
    assert!(folded(&mm, va, CONT_SIZE));
    write_pages(&mut mm, va, 3..4);
    for m in [&mm, &child] {
        for i in 0..16 {
            let at = va.add(i * PAGE_SIZE);
            assert_eq!(host::read_byte(leaf(m, at).pa_of(at)), pattern(i));
        }
    }
    audit::check([&mm, &child].into_iter()).expect("audit");
    all_back([mm, child]);
}

#[test]
fn madvise_collapse_order_and_errors() {
    let _m = host::machine();
    only(&[]);
    assert_eq!(engine::madvise_order(), 9, "every size never: 2 MiB");
    mthp::POLICY.set_size(4, SizeSetting::Madvise);
    mthp::POLICY.set_size(3, SizeSetting::Always);
    assert_eq!(engine::madvise_order(), 4, "madvise counts");
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, 2 * CONT_SIZE, CONT_SIZE);
    assert_eq!(
        mm.madvise(va, va.add(CONT_SIZE), MADV_COLLAPSE),
        Err(EINVAL),
        "nothing mapped"
    );
    only(&[]);
    write_pages(&mut mm, va, 0..1);
    mthp::POLICY.set_size(4, SizeSetting::Madvise);
    mm.madvise(va, va.add(CONT_SIZE), MADV_COLLAPSE).unwrap();
    assert!(
        folded(&mm, va, CONT_SIZE),
        "one page is enough for MADV_COLLAPSE"
    );
    check_pages(&mm, va, 32, |i| i == 0);
    only(&[9]);
    assert_eq!(
        mm.madvise(va, va.add(CONT_SIZE), MADV_COLLAPSE),
        Err(EINVAL),
        "a 128 KiB VMA has no 2 MiB block"
    );
    only(&[4]);
    mm.madvise(va, va.add(2 * CONT_SIZE), MADV_NOHUGEPAGE)
        .unwrap();
    assert_eq!(
        mm.madvise(va, va.add(2 * CONT_SIZE), MADV_COLLAPSE),
        Err(EINVAL),
        "MADV_NOHUGEPAGE"
    );
    all_back([mm]);
}

/// munmap takes the hints of the windows it empties off the queue, and keeps those of
/// a window it only cuts and those of other address spaces, in their order: a full
/// queue of a gone region's hints made every later hint scan all of it.
#[test]
fn munmap_forgets_the_hints_of_the_windows_it_empties() {
    let _m = host::machine();
    let mut mm = Mm::new_in(&env()).unwrap();
    let other = Mm::new_in(&env()).unwrap();
    while engine::take_hint().is_some() {}
    let va = region(&mut mm, 4 * PMD_SIZE, PMD_SIZE);
    for w in 0..4 {
        engine::hint(&mm, va.add(w * PMD_SIZE));
    }
    engine::hint(&other, va);
    mm.munmap(va, va.add(2 * PMD_SIZE + CONT_SIZE)).unwrap();
    let left: Vec<_> = core::iter::from_fn(engine::take_hint).collect();
    assert_eq!(
        left,
        [
            (mm.tables.root(), va.add(2 * PMD_SIZE)),
            (mm.tables.root(), va.add(3 * PMD_SIZE)),
            (other.tables.root(), va),
        ]
    );
    all_back([mm, other]);
}

#[test]
fn hints_are_bounded_and_dropped_when_full() {
    let _m = host::machine();
    let mm = Mm::new_in(&env()).unwrap();
    while engine::take_hint().is_some() {}
    let dropped = engine::HINTS_DROPPED.load(Ordering::Relaxed);
    for i in 0..engine::CAPACITY + 3 {
        engine::hint(&mm, VirtAddr((i * PMD_SIZE) as u64));
    }
    engine::hint(&mm, VirtAddr(0));
    assert_eq!(
        engine::HINTS_DROPPED.load(Ordering::Relaxed),
        dropped + 3,
        "three dropped; a window already queued is not queued twice"
    );
    let mut n = 0;
    while engine::take_hint().is_some() {
        n += 1;
    }
    assert_eq!(n, engine::CAPACITY);
}
