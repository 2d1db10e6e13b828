//! The shared zero page (`mm::zero`): read faults map it and allocate nothing; a write
//! over it allocates the largest folio the policy allows over the zero-page entries
//! (folded, exclusive); fork, MADV_FREE, MADV_PAGEOUT, MADV_DONTNEED, mprotect and
//! collapse pass it by or replace it without accounting it; it is never writable. The
//! huge zero page: mapped as one block where 2 MiB fits, shared, counted through fork,
//! split and munmap, replaced by a 2 MiB folio or split for a smaller one on a write,
//! freed by reclaim once unmapped; `use_zero_page` 0 allocates instead.

use super::collapse::{
    all_back, check_pages_among as check, env, leaf, only, pattern, region, setup, write_pages,
};
use super::*;
use crate::mm::addr::CONT_SIZE;
use crate::mm::zero;

/// Read-fault every page of `[va, va + pages)`; each must then map the zero page,
/// read-only, and read zeros.
fn read_all(mm: &mut Mm<HostMachine>, va: VirtAddr, pages: usize) {
    for i in 0..pages {
        let at = va.add(i * PAGE_SIZE);
        mm.handle_fault(at, Access::Read).expect("read fault");
        let l = leaf(mm, at);
        assert!(zero::is_zero(l.pa_of(at)), "page {i} is not the zero page");
        assert!(!l.pte.is_writable(), "zero page writable at page {i}");
        assert!(!l.pte.is_cont(), "zero page entries folded at page {i}");
        assert_eq!(host::read_byte(l.pa_of(at)), 0);
    }
}

/// Tables a fork of one mapping may allocate in the child: root down to level 3.
const FORK_TABLES: usize = 4;

#[test]
fn read_faults_map_the_zero_page_and_allocate_nothing() {
    // Orders up to 64 KiB allowed: a read still allocates nothing (Linux's
    // do_anonymous_page maps the zero page whatever the mTHP policy).
    let (_m, mut mm, va) = setup(&[4], 2 << 20);
    mm.handle_fault(va, Access::Read).unwrap();
    let free = frames().free_frames();
    let faults = zero::ZERO_PAGE_FAULTS.load(Ordering::Relaxed);
    read_all(&mut mm, va, 512);
    assert_eq!(frames().free_frames(), free, "read faults allocated frames");
    assert!(zero::ZERO_PAGE_FAULTS.load(Ordering::Relaxed) >= faults + 511);
    let child = mm.fork().unwrap();
    assert!(
        free - frames().free_frames() <= FORK_TABLES,
        "fork copied zero pages: {} frames",
        free - frames().free_frames()
    );
    check(&child, &[&mm, &child], va, 512, |_| false);
    audit::check([&mm, &child].into_iter()).expect("audit");
    all_back([mm, child]);
}

#[test]
fn a_write_over_zero_pages_allocates_the_largest_allowed_folio() {
    let (_m, mut mm, va) = setup(&[4], 2 * CONT_SIZE);
    read_all(&mut mm, va, 32);
    let alloc = mthp::stats(4).anon_fault_alloc.load(Ordering::Relaxed);
    // A write to page 5: its 64 KiB window holds only zero-page entries.
    write_pages(&mut mm, va, [5].into_iter());
    assert_eq!(
        mthp::stats(4).anon_fault_alloc.load(Ordering::Relaxed),
        alloc + 1
    );
    for i in 0..16 {
        let l = leaf(&mm, va.add(i * PAGE_SIZE));
        assert!(l.pte.is_cont(), "page {i} of the new folio not folded");
        assert!(!zero::is_zero(l.pa_of(va.add(i * PAGE_SIZE))));
    }
    // The second block still maps the zero page.
    assert!(zero::is_zero(
        leaf(&mm, va.add(CONT_SIZE)).pa_of(va.add(CONT_SIZE))
    ));
    check(&mm, &[&mm], va, 32, |i| i == 5);
    audit::check([&mm].into_iter()).expect("audit");
    all_back([mm]);
}

#[test]
fn a_write_next_to_a_mapped_folio_takes_a_smaller_window() {
    // Pages 0..4 written (a 16 KiB folio), 4..16 read: a write to page 8 cannot take
    // the 64 KiB window (a folio is mapped there) and takes 16 KiB.
    let (_m, mut mm, va) = setup(&[2, 4], CONT_SIZE);
    only(&[2]);
    write_pages(&mut mm, va, [0].into_iter());
    read_all(&mut mm, va.add(4 * PAGE_SIZE), 12);
    only(&[2, 4]);
    let (a2, a4) = (
        mthp::stats(2).anon_fault_alloc.load(Ordering::Relaxed),
        mthp::stats(4).anon_fault_alloc.load(Ordering::Relaxed),
    );
    write_pages(&mut mm, va, [8].into_iter());
    assert_eq!(
        mthp::stats(2).anon_fault_alloc.load(Ordering::Relaxed),
        a2 + 1
    );
    assert_eq!(mthp::stats(4).anon_fault_alloc.load(Ordering::Relaxed), a4);
    let pa = |i: usize| leaf(&mm, va.add(i * PAGE_SIZE)).pa_of(va.add(i * PAGE_SIZE));
    assert_eq!(pa(9), pa(8).add(PAGE_SIZE), "pages 8..12 one folio");
    assert!(zero::is_zero(pa(12)));
    check(&mm, &[&mm], va, 16, |i| i == 0 || i == 8);
    audit::check([&mm].into_iter()).expect("audit");
    all_back([mm]);
}

#[test]
fn zero_pages_after_fork_are_written_apart() {
    let (_m, mut mm, va) = setup(&[4], CONT_SIZE);
    read_all(&mut mm, va, 16);
    let mut child = mm.fork().unwrap();
    write_pages(&mut child, va, [3].into_iter());
    write_pages(&mut mm, va, [7].into_iter());
    check(&mm, &[&mm, &child], va, 16, |i| i == 7);
    check(&child, &[&mm, &child], va, 16, |i| i == 3);
    audit::check([&mm, &child].into_iter()).expect("audit");
    all_back([mm, child]);
}

#[test]
fn madvise_and_mprotect_pass_the_zero_page_by() {
    let (_m, mut mm, va) = setup(&[4], 2 * CONT_SIZE);
    read_all(&mut mm, va, 32);
    write_pages(&mut mm, va, [20].into_iter());
    let end = va.add(2 * CONT_SIZE);
    // mprotect read-write keeps zero-page entries read-only (the checker's rule).
    mm.mprotect(va, end, VmProt::READ).unwrap();
    mm.mprotect(va, end, VmProt::READ_WRITE).unwrap();
    assert!(!leaf(&mm, va).pte.is_writable(), "zero page made writable");
    for advice in [MADV_FREE, MADV_PAGEOUT] {
        mm.madvise(va, end, advice).unwrap();
        audit::check([&mm].into_iter()).expect("audit");
    }
    // The written folio was clean lazyfree, then paged out: all zeros again.
    check(&mm, &[&mm], va, 32, |_| false);
    mm.madvise(va, end, MADV_DONTNEED).unwrap();
    assert!(
        mm.tables.get(va).is_none(),
        "MADV_DONTNEED left the zero page"
    );
    all_back([mm]);
}

#[test]
fn collapse_copies_over_zero_pages() {
    let (_m, mut mm, va) = setup(&[4], CONT_SIZE);
    only(&[]);
    read_all(&mut mm, va, 16);
    write_pages(&mut mm, va, [0, 1, 2].into_iter());
    only(&[4]);
    mm.madvise(va, va.add(CONT_SIZE), MADV_COLLAPSE).unwrap();
    assert!(leaf(&mm, va).pte.is_cont(), "not collapsed");
    assert!(!zero::is_zero(
        leaf(&mm, va.add(10 * PAGE_SIZE)).pa_of(va.add(10 * PAGE_SIZE))
    ));
    check(&mm, &[&mm], va, 16, |i| i < 3);
    audit::check([&mm].into_iter()).expect("audit");
    all_back([mm]);
}

#[test]
fn a_forced_write_over_the_zero_page_of_a_read_only_mapping() {
    let (_m, mut mm, va) = setup(&[4], CONT_SIZE);
    mm.mprotect(va, va.add(CONT_SIZE), VmProt::READ).unwrap();
    let mut b = [0u8];
    assert_eq!(
        mm.access_forced(va.add(PAGE_SIZE), Transfer::Read(&mut b)),
        1
    );
    assert!(zero::is_zero(
        leaf(&mm, va.add(PAGE_SIZE)).pa_of(va.add(PAGE_SIZE))
    ));
    assert_eq!(
        mm.access_forced(va.add(PAGE_SIZE), Transfer::Write(&[pattern(1)])),
        1
    );
    let l = leaf(&mm, va.add(PAGE_SIZE));
    assert!(
        !zero::is_zero(l.pa_of(va.add(PAGE_SIZE))),
        "written in the zero page"
    );
    assert!(!l.pte.is_writable(), "read-only mapping made writable");
    check(&mm, &[&mm], va, 16, |i| i == 1);
    audit::check([&mm].into_iter()).expect("audit");
    all_back([mm]);
}

/// The huge zero page's first frame if the 2 MiB at `va` map it as one block.
fn huge_block(mm: &Mm<HostMachine>, va: VirtAddr) -> Option<crate::mm::PhysAddr> {
    let l = mm.tables.get(va)?;
    (l.level == 2)
        .then(|| l.pa_of(va))
        .and_then(zero::huge_head)
}

#[test]
fn a_read_where_2m_fits_maps_the_huge_zero_page() {
    let (_m, mut mm, va) = setup(&[9], 4 << 20);
    let alloc = zero::THP_ZERO_PAGE_ALLOC.load(Ordering::Relaxed);
    mm.handle_fault(va.add(5 * PAGE_SIZE), Access::Read)
        .unwrap();
    let huge = huge_block(&mm, va).expect("no huge zero block");
    assert!(!leaf(&mm, va).pte.is_writable());
    assert_eq!(zero::huge_mapped(), 512);
    let free = frames().free_frames();
    // Another address space, and the second 2 MiB: the same frames, nothing allocated.
    let mut other = Mm::new_in(&env()).unwrap();
    region(&mut other, 4 << 20, 4 << 20);
    other.handle_fault(va, Access::Read).unwrap();
    mm.handle_fault(va.add(2 << 20), Access::Read).unwrap();
    assert_eq!(huge_block(&other, va), Some(huge));
    assert_eq!(huge_block(&mm, va.add(2 << 20)), Some(huge));
    assert_eq!(zero::THP_ZERO_PAGE_ALLOC.load(Ordering::Relaxed), alloc + 1);
    assert!(
        free - frames().free_frames() <= 3,
        "frames allocated beyond tables"
    );
    assert_eq!(zero::huge_mapped(), 3 * 512);
    // Fork copies the blocks; mprotect keeps them read-only.
    let child = mm.fork().unwrap();
    assert_eq!(zero::huge_mapped(), 5 * 512);
    mm.mprotect(va, va.add(4 << 20), VmProt::READ_WRITE)
        .unwrap();
    assert!(
        !leaf(&mm, va).pte.is_writable(),
        "huge zero page made writable"
    );
    check(&child, &[&mm, &child, &other], va, 1024, |_| false);
    audit::check([&mm, &child, &other].into_iter()).expect("audit");
    // Nothing maps it: reclaim frees it; the frames are all back.
    all_back([mm, child, other]);
}

#[test]
fn a_write_into_the_huge_zero_page_takes_the_2m_folio() {
    let (_m, mut mm, va) = setup(&[9], 2 << 20);
    mm.handle_fault(va, Access::Read).unwrap();
    assert!(huge_block(&mm, va).is_some());
    let alloc = mthp::stats(9).anon_fault_alloc.load(Ordering::Relaxed);
    write_pages(&mut mm, va, [100].into_iter());
    assert_eq!(
        mthp::stats(9).anon_fault_alloc.load(Ordering::Relaxed),
        alloc + 1
    );
    assert_eq!(leaf(&mm, va).level, 2, "not one 2 MiB folio");
    assert!(huge_block(&mm, va).is_none());
    assert_eq!(zero::huge_mapped(), 0);
    check(&mm, &[&mm], va, 512, |i| i == 100);
    audit::check([&mm].into_iter()).expect("audit");
    all_back([mm]);
}

#[test]
fn a_write_into_the_huge_zero_page_with_only_64k_splits_the_block() {
    let (_m, mut mm, va) = setup(&[9], 2 << 20);
    mm.handle_fault(va, Access::Read).unwrap();
    only(&[4]);
    write_pages(&mut mm, va, [40].into_iter());
    // Pages 32..48 are a new 64 KiB folio, folded; the rest still reads the huge zero
    // page through page entries.
    let at = |i: usize| va.add(i * PAGE_SIZE);
    assert!(leaf(&mm, at(40)).pte.is_cont());
    assert!(!zero::is_zero(leaf(&mm, at(32)).pa_of(at(32))));
    assert!(zero::huge_head(leaf(&mm, at(0)).pa_of(at(0))).is_some());
    assert!(zero::huge_head(leaf(&mm, at(511)).pa_of(at(511))).is_some());
    assert_eq!(zero::huge_mapped(), 512 - 16);
    // A partial munmap of what is left, then a write beside it.
    mm.munmap(at(0), at(8)).unwrap();
    assert_eq!(zero::huge_mapped(), 512 - 24);
    write_pages(&mut mm, va, [200].into_iter());
    check(&mm, &[&mm], va, 512, |i| i == 40 || i == 200);
    audit::check([&mm].into_iter()).expect("audit");
    all_back([mm]);
}

#[test]
fn with_use_zero_page_off_a_read_allocates_the_2m_folio() {
    let (_m, mut mm, va) = setup(&[9], 2 << 20);
    mthp::USE_ZERO_PAGE.store(false, Ordering::Relaxed);
    let r = mm.handle_fault(va, Access::Read);
    mthp::USE_ZERO_PAGE.store(true, Ordering::Relaxed);
    r.unwrap();
    assert_eq!(leaf(&mm, va).level, 2);
    assert!(
        huge_block(&mm, va).is_none(),
        "the huge zero page with use_zero_page 0"
    );
    all_back([mm]);
}
