//! Folio-level counts (`folio`'s module doc): a fork, a reuse and an unmap of a whole
//! folio account it on the head, not page by page; a partial unmap or exclusivity
//! change spreads that state into the pages first; mprotect and the checker read the
//! exclusivity override. Each test checks the data and the folio audit as well.

use core::sync::atomic::Ordering;

use super::collapse::{all_back, check_pages_among as check, env, leaf, only, region, write_pages};
use super::*;
use crate::mm::addr::{CONT_SIZE, PMD_SIZE};
use crate::mm::folio::Folio;

fn spreads(order: usize) -> u64 {
    mthp::stats(order).spread_to_pages.load(Ordering::Relaxed)
}

fn reuses(order: usize) -> u64 {
    mthp::stats(order).cow_reuse.load(Ordering::Relaxed)
}

/// The pages' own map counts (beyond the entire map count).
fn own_counts(f: Folio) -> Vec<i32> {
    (0..f.nr_pages())
        .map(|i| frames().meta(f.page(i)).mapcount.load(Ordering::Relaxed))
        .collect()
}

#[test]
fn fork_and_reuse_of_a_2m_folio_touch_the_head_only() {
    let _m = host::machine();
    only(&[9]);
    let mut parent = Mm::new_in(&env()).unwrap();
    let va = region(&mut parent, PMD_SIZE, PMD_SIZE);
    write_pages(&mut parent, va, 0..512);
    assert_eq!(leaf(&parent, va).level, 2, "one 2 MiB block");
    let f = Folio::of(leaf(&parent, va).pa_of(va));
    let spread0 = spreads(9);
    assert_eq!(f.entire_mapcount(), 1);
    assert!(f.all_exclusive());

    let child = parent.fork().unwrap();
    assert_eq!(f.entire_mapcount(), 2, "fork adds one entire mapping");
    assert!(own_counts(f).iter().all(|&c| c == 0), "and writes no page");
    assert!(
        !f.is_exclusive(0) && !f.is_exclusive(511),
        "every page shared"
    );
    // mprotect must read the override: shared pages stay read-only.
    parent.mprotect(va, va.add(PMD_SIZE), VmProt::READ).unwrap();
    parent
        .mprotect(va, va.add(PMD_SIZE), VmProt::READ_WRITE)
        .unwrap();
    assert!(
        !leaf(&parent, va).pte.is_writable(),
        "shared 2 MiB stays read-only"
    );
    check(&child, &[&parent, &child], va, 512, |_| true);

    drop(child);
    assert_eq!(
        f.entire_mapcount(),
        1,
        "the child's exit drops one entire mapping"
    );
    let reused = reuses(9);
    parent
        .handle_fault(va.add(7 * PAGE_SIZE), Access::Write)
        .unwrap();
    assert_eq!(reuses(9), reused + 1, "the write reuses the whole folio");
    assert!(leaf(&parent, va).level == 2 && leaf(&parent, va).pte.is_writable());
    assert!(f.all_exclusive());
    assert_eq!(spreads(9), spread0, "nothing spread to the pages so far");
    check(&parent, &[&parent], va, 512, |_| true);
    all_back([parent]);
}

#[test]
fn a_partial_unmap_spreads_the_counts_into_the_pages() {
    let _m = host::machine();
    only(&[4]);
    let mut parent = Mm::new_in(&env()).unwrap();
    let va = region(&mut parent, CONT_SIZE, CONT_SIZE);
    write_pages(&mut parent, va, 0..16);
    let f = Folio::of(leaf(&parent, va).pa_of(va));
    let mut child = parent.fork().unwrap();
    assert_eq!((f.entire_mapcount(), f.total_mapcount()), (2, 32));
    let spread0 = spreads(4);

    // The child unmaps pages 4..8: its entire mapping becomes twelve single ones.
    child
        .munmap(va.add(4 * PAGE_SIZE), va.add(8 * PAGE_SIZE))
        .unwrap();
    assert_eq!(spreads(4), spread0 + 1);
    assert_eq!(f.entire_mapcount(), 0);
    let want: Vec<i32> = (0..16)
        .map(|i| if (4..8).contains(&i) { 1 } else { 2 })
        .collect();
    assert_eq!(own_counts(f), want);
    assert!(
        (0..16).all(|i| !f.is_exclusive(i)),
        "the override became the pages' flags"
    );
    // The parent's write can no longer reuse the folio: it copies the page.
    let reused = reuses(4);
    parent
        .handle_fault(va.add(5 * PAGE_SIZE), Access::Write)
        .unwrap();
    assert_eq!(reuses(4), reused);
    let at5 = va.add(5 * PAGE_SIZE);
    assert_ne!(
        Folio::of(leaf(&parent, at5).pa_of(at5)),
        f,
        "page 5 was copied"
    );
    check(&child, &[&parent, &child], va, 16, |i| !(4..8).contains(&i));
    check(&parent, &[&parent, &child], va, 16, |_| true);
    all_back([child, parent]);
}
