//! Pins on the simulated machine (`mm::pin`): a read-only pin of a page shared since
//! fork unshares it and then sees the process's writes; fork copies a pinned folio for
//! the child (whole, folded or as a block) and the parent writes in place; a pin
//! outlives munmap and its frame comes back at unpin; a pinned folio is not split,
//! collapsed or lazyfreed; a pin of the zero page or of a file's page in a private
//! mapping unshares it; Linux's errors. Every test ends with the folio audit (which
//! counts pins) and every frame back.

use super::collapse::{all_back, check_pages_among, leaf, pattern, setup, write_pages};
use super::*;
use crate::mm::addr::{CONT_SIZE, PMD_SIZE};
use crate::mm::fork::{PINNED_FOLIO_COPIES, PINNED_PAGE_COPIES};
use crate::mm::lazyfree;
use crate::mm::pin::{self, UNSHARED};
use crate::mm::PhysAddr;
use crate::uapi::{EAGAIN, EFAULT};

/// Pin one page at `va` of `mm`.
fn pin_one(mm: &mut Mm<HostMachine>, va: VirtAddr, write: bool) -> PhysAddr {
    let mut pa = [PhysAddr::new(0)];
    assert_eq!(mm.pin_pages(va, &mut pa, write), Ok(1));
    pa[0]
}

fn pa_at(mm: &Mm<HostMachine>, va: VirtAddr) -> PhysAddr {
    leaf(mm, va).pa_of(va)
}

/// Store `b` at `va` as the CPU does, faulting first where the entry does not allow it.
fn store(mm: &mut Mm<HostMachine>, va: VirtAddr, b: u8) {
    if mm.tables.get(va).is_none_or(|l| !l.pte.is_writable()) {
        mm.handle_fault(va, Access::Write).expect("write fault");
    }
    host::write_byte(pa_at(mm, va), b);
}

#[test]
fn a_read_pin_after_fork_unshares_the_page_and_then_sees_the_writes() {
    let (_m, mut mm, va) = setup(&[4], CONT_SIZE);
    write_pages(&mut mm, va, 0..16);
    let child = mm.fork().unwrap();
    let at = va.add(3 * PAGE_SIZE);
    let shared = pa_at(&mm, at);
    assert_eq!(pa_at(&child, at), shared);
    let unshared = UNSHARED.load(Ordering::Relaxed);
    let pa = pin_one(&mut mm, at, false);
    // The child keeps the shared page; the pin holds the parent's own copy.
    assert_ne!(pa, shared);
    assert_eq!(pa_at(&mm, at), pa);
    assert_eq!(UNSHARED.load(Ordering::Relaxed), unshared + 1);
    assert_eq!(host::read_byte(pa), pattern(3));
    // The write needs no copy: the pin sees it, the child does not.
    store(&mut mm, at, 0xee);
    assert_eq!(pa_at(&mm, at), pa);
    assert_eq!(host::read_byte(pa), 0xee);
    assert_eq!(host::read_byte(pa_at(&child, at)), pattern(3));
    check_pages_among(&child, &[&mm, &child], va, 16, |_| true);
    pin::unpin(pa);
    all_back([mm, child]);
}

/// Fork with one page of a folio of `order` pinned: the child gets its own copy of
/// the exclusive pages (the whole folio, mapped as the parent maps it, when it maps all
/// of it), the parent keeps the pinned frames and writes them in place.
fn fork_copies_a_pinned_folio(order: usize) {
    let len = PAGE_SIZE << order;
    let (_m, mut mm, va) = setup(&[order], len.max(CONT_SIZE));
    let n = 1usize << order;
    write_pages(&mut mm, va, 0..n);
    let at = va.add((n / 2) * PAGE_SIZE);
    let pa = pin_one(&mut mm, at, false);
    let (whole, pages) = (
        PINNED_FOLIO_COPIES.load(Ordering::Relaxed),
        PINNED_PAGE_COPIES.load(Ordering::Relaxed),
    );
    let mut child = mm.fork().unwrap();
    assert_eq!(pa_at(&mm, at), pa, "the parent keeps the pinned page");
    assert_ne!(pa_at(&child, at), pa, "the child has a copy");
    if order > 0 {
        assert_eq!(PINNED_FOLIO_COPIES.load(Ordering::Relaxed), whole + 1);
        assert_eq!(PINNED_PAGE_COPIES.load(Ordering::Relaxed), pages);
        // The copy is one folio, mapped as the parent's: folded, or a 2 MiB block.
        let l = leaf(&child, va);
        assert_eq!(folio::span_of(l.pa_of(va)).nr_pages, n);
        if order == 9 {
            assert_eq!(l.level, 2);
        } else if order >= 4 {
            assert!(l.pte.is_cont());
        }
    } else {
        assert_eq!(PINNED_PAGE_COPIES.load(Ordering::Relaxed), pages + 1);
    }
    check_pages_among(&child, &[&mm, &child], va, n, |_| true);
    // Either side's write stays its own; the parent's reaches the pin.
    store(&mut mm, at, 0x11);
    assert_eq!(pa_at(&mm, at), pa);
    assert_eq!(host::read_byte(pa), 0x11);
    store(&mut child, at, 0x22);
    assert_eq!(host::read_byte(pa), 0x11);
    assert_eq!(host::read_byte(pa_at(&child, at)), 0x22);
    audit::check([&mm, &child].into_iter()).expect("audit");
    pin::unpin(pa);
    all_back([mm, child]);
}

#[test]
fn fork_copies_a_pinned_page_for_the_child() {
    fork_copies_a_pinned_folio(0);
}

#[test]
fn fork_copies_a_pinned_64k_folio_whole_and_folded() {
    fork_copies_a_pinned_folio(4);
}

#[test]
fn fork_copies_a_pinned_2m_folio_whole_as_a_block() {
    fork_copies_a_pinned_folio(9);
}

#[test]
fn fork_with_nothing_pinned_copies_nothing() {
    let (_m, mut mm, va) = setup(&[4], CONT_SIZE);
    write_pages(&mut mm, va, 0..16);
    let before = (
        PINNED_FOLIO_COPIES.load(Ordering::Relaxed),
        PINNED_PAGE_COPIES.load(Ordering::Relaxed),
    );
    let child = mm.fork().unwrap();
    assert_eq!(pa_at(&child, va), pa_at(&mm, va));
    assert_eq!(
        (
            PINNED_FOLIO_COPIES.load(Ordering::Relaxed),
            PINNED_PAGE_COPIES.load(Ordering::Relaxed)
        ),
        before
    );
    all_back([mm, child]);
}

#[test]
fn a_pinned_page_outlives_munmap_and_comes_back_at_unpin() {
    let (_m, mut mm, va) = setup(&[4], CONT_SIZE);
    write_pages(&mut mm, va, 0..16);
    let pa = pin_one(&mut mm, va.add(PAGE_SIZE), true);
    mm.munmap(va, va.add(CONT_SIZE)).unwrap();
    assert_eq!(host::read_byte(pa), pattern(1), "the pin keeps the data");
    audit::check([&mm].into_iter()).expect("audit");
    assert_eq!(pinned_frames(), 16, "the folio stays whole until the unpin");
    pin::unpin(pa);
    assert_eq!(pinned_frames(), 0);
    all_back([mm]);
}

/// Frames held by pins alone: folios with a pin and no mapping.
fn pinned_frames() -> usize {
    let mut n = 0;
    frames().for_each_block(|head, order| {
        let f = folio::Folio::of(head);
        if f.is_pinned() && f.total_mapcount() == 0 {
            n += 1 << order;
        }
    });
    n
}

#[test]
fn a_pinned_folio_is_not_split_until_unpinned() {
    let (_m, mut mm, va) = setup(&[4], CONT_SIZE);
    write_pages(&mut mm, va, 0..16);
    let pa = pin_one(&mut mm, va.add(2 * PAGE_SIZE), false);
    // Half unmapped: partially mapped, queued for deferred split.
    mm.madvise(
        va.add(8 * PAGE_SIZE),
        va.add(CONT_SIZE),
        crate::uapi::MADV_DONTNEED,
    )
    .unwrap();
    assert_eq!(folio::deferred_count(), 1);
    let failed = mthp::stats(4).split_failed.load(Ordering::Relaxed);
    assert_eq!(folio::shrink_deferred(), 0);
    assert_eq!(
        mthp::stats(4).split_failed.load(Ordering::Relaxed),
        failed + 1
    );
    assert_eq!(folio::deferred_count(), 1, "still queued");
    check_pages_among(&mm, &[&mm], va, 8, |_| true);
    pin::unpin(pa);
    assert_eq!(folio::shrink_deferred(), 1);
    check_pages_among(&mm, &[&mm], va, 8, |_| true);
    all_back([mm]);
}

#[test]
fn collapse_leaves_a_pinned_page_where_it_is() {
    let (_m, mut mm, va) = setup(&[], CONT_SIZE);
    write_pages(&mut mm, va, 0..16);
    let pa = pin_one(&mut mm, va.add(5 * PAGE_SIZE), false);
    super::collapse::only(&[4]);
    let refused = mthp::stats(4)
        .collapse_exceed_pinned
        .load(Ordering::Relaxed);
    let r = mm.madvise(va, va.add(CONT_SIZE), crate::uapi::MADV_COLLAPSE);
    assert_eq!(r, Err(EAGAIN));
    assert_eq!(
        mthp::stats(4)
            .collapse_exceed_pinned
            .load(Ordering::Relaxed),
        refused + 1
    );
    assert_eq!(pa_at(&mm, va.add(5 * PAGE_SIZE)), pa);
    pin::unpin(pa);
    assert_eq!(
        mm.madvise(va, va.add(CONT_SIZE), crate::uapi::MADV_COLLAPSE),
        Ok(())
    );
    assert!(leaf(&mm, va).pte.is_cont());
    check_pages_among(&mm, &[&mm], va, 16, |_| true);
    all_back([mm]);
}

#[test]
fn a_pin_drops_the_lazyfree_mark_and_madv_free_skips_a_pinned_folio() {
    let (_m, mut mm, va) = setup(&[4], 2 * CONT_SIZE);
    write_pages(&mut mm, va, 0..32);
    mm.madvise(va, va.add(CONT_SIZE), MADV_FREE).unwrap();
    assert!(folio::Folio::of(pa_at(&mm, va)).is_lazyfree());
    let a = pin_one(&mut mm, va, false);
    assert!(!folio::Folio::of(a).is_lazyfree(), "a pin drops the mark");
    let b = pin_one(&mut mm, va.add(CONT_SIZE), false);
    let skipped = lazyfree::STATS.pinned_skipped.load(Ordering::Relaxed);
    mm.madvise(va.add(CONT_SIZE), va.add(2 * CONT_SIZE), MADV_FREE)
        .unwrap();
    assert_eq!(
        lazyfree::STATS.pinned_skipped.load(Ordering::Relaxed),
        skipped + 1
    );
    assert!(!folio::Folio::of(b).is_lazyfree());
    // Nothing to discard: both folios keep their data.
    mm.madvise(va, va.add(2 * CONT_SIZE), MADV_PAGEOUT).unwrap();
    check_pages_among(&mm, &[&mm], va, 32, |_| true);
    pin::unpin(a);
    pin::unpin(b);
    all_back([mm]);
}

#[test]
fn a_read_pin_of_the_zero_page_or_a_file_page_in_a_private_mapping_unshares_it() {
    let (_m, mut mm, va) = setup(&[], PMD_SIZE);
    mm.handle_fault(va, Access::Read).unwrap();
    assert!(crate::mm::zero::is_zero(pa_at(&mm, va)));
    let pa = pin_one(&mut mm, va, false);
    assert!(!crate::mm::zero::is_zero(pa));
    store(&mut mm, va, 0x33);
    assert_eq!(host::read_byte(pa), 0x33, "the pin sees the write");
    pin::unpin(pa);
    all_back([mm]);
}

#[test]
fn pins_fail_as_on_linux() {
    let (_m, mut mm, va) = setup(&[], 4 * PAGE_SIZE);
    let mut out = [PhysAddr::new(0); 8];
    // No VMA.
    assert_eq!(
        mm.pin_pages(VirtAddr(0x1000), &mut out[..1], false),
        Err(EFAULT)
    );
    // Past the end: as many as the VMA has.
    assert_eq!(
        mm.pin_pages(va.add(2 * PAGE_SIZE), &mut out[..4], false),
        Ok(2)
    );
    pin::unpin(out[0]);
    pin::unpin(out[1]);
    // A write pin of a read-only VMA, any pin of PROT_NONE.
    mm.mprotect(va, va.add(PAGE_SIZE), VmProt::READ).unwrap();
    assert_eq!(mm.pin_pages(va, &mut out[..1], true), Err(EFAULT));
    mm.mprotect(va, va.add(PAGE_SIZE), VmProt::NONE).unwrap();
    assert_eq!(mm.pin_pages(va, &mut out[..1], false), Err(EFAULT));
    audit::check([&mm].into_iter()).expect("audit");
    all_back([mm]);
}

#[test]
fn fork_copies_every_pinned_page_of_many_spread_out() {
    // More pinned folios than a batch remembers ranges for: the last range grows.
    let (_m, mut mm, va) = setup(&[], 256 * PAGE_SIZE);
    write_pages(&mut mm, va, 0..256);
    let pins: Vec<PhysAddr> = (0..40)
        .map(|k| pin_one(&mut mm, va.add(k * 6 * PAGE_SIZE), false))
        .collect();
    let child = mm.fork().unwrap();
    for (k, &pa) in pins.iter().enumerate() {
        let at = va.add(k * 6 * PAGE_SIZE);
        assert_eq!(pa_at(&mm, at), pa);
        assert_ne!(
            pa_at(&child, at),
            pa,
            "pinned page {k} shared with the child"
        );
    }
    check_pages_among(&child, &[&mm, &child], va, 256, |_| true);
    for pa in pins {
        pin::unpin(pa);
    }
    all_back([mm, child]);
}
