//! A debugger's access (`Mm::access_forced`, /proc/self/mem): a forced write to a
//! read-only private mapping shared since fork copies (or reuses) exactly as a write
//! fault would, leaves the entry read-only, and never shows in the other address
//! space, for a 4 KiB page, a 64 KiB folio and a 2 MiB one; an exclusive read-only page
//! is written in place; a lazyfree page written so keeps its data; nothing is copied
//! outside the VMAs. The property tests (`props.rs`) mix forced reads and writes into
//! random sequences.

use super::collapse::{all_back, check_pages_among as check, leaf, pattern, setup, write_pages};
use super::*;
use crate::mm::addr::{CONT_SIZE, PMD_SIZE};
use crate::mm::fault::Transfer;

/// A forced store of `byte` at `va`: one byte copied.
fn force_write(mm: &mut Mm<HostMachine>, va: VirtAddr, byte: u8) {
    assert_eq!(
        mm.access_forced(va, Transfer::Write(&[byte])),
        1,
        "forced write at {va:?}"
    );
}

/// A forced load at `va`.
fn force_read(mm: &mut Mm<HostMachine>, va: VirtAddr) -> u8 {
    let mut b = [0u8];
    assert_eq!(
        mm.access_forced(va, Transfer::Read(&mut b)),
        1,
        "forced read at {va:?}"
    );
    b[0]
}

/// The page at `va` is read-only and exclusive to its address space.
fn read_only_exclusive(mm: &Mm<HostMachine>, va: VirtAddr) {
    let l = leaf(mm, va);
    assert!(!l.pte.is_writable(), "entry at {va:?} made writable");
    assert_eq!(
        folio::anon_exclusive(l.pa_of(va)),
        Some(true),
        "page at {va:?} not exclusive"
    );
}

/// Fork a read-only mapping of `len` bytes (folios of `orders`): the child writes page
/// 1, then the parent page 2, each through a forced write; each sees its own byte
/// and the other's pages unchanged.
fn forced_writes_after_fork(orders: &[usize], len: usize) {
    let (_m, mut parent, va) = setup(orders, len);
    let pages = len / PAGE_SIZE;
    write_pages(&mut parent, va, 0..pages);
    parent.mprotect(va, va.add(len), VmProt::READ).unwrap();
    let mut child = parent.fork().unwrap();
    let (p1, p2) = (va.add(PAGE_SIZE), va.add(2 * PAGE_SIZE));

    force_write(&mut child, p1, 0xc1);
    read_only_exclusive(&child, p1);
    assert_eq!(force_read(&mut child, p1), 0xc1);
    assert_eq!(
        force_read(&mut parent, p1),
        pattern(1),
        "child's write in the parent"
    );
    force_write(&mut parent, p2, 0xb2);
    read_only_exclusive(&parent, p2);
    assert_eq!(
        force_read(&mut child, p2),
        pattern(2),
        "parent's write in the child"
    );
    assert_eq!(force_read(&mut parent, p2), 0xb2);

    // Every other page as it was, in both; the audit agrees with the tables.
    let others = |i: usize| i != 1 && i != 2;
    for mm in [&parent, &child] {
        for i in (0..pages).filter(|&i| others(i)) {
            let at = va.add(i * PAGE_SIZE);
            assert_eq!(
                host::read_byte(leaf(mm, at).pa_of(at)),
                pattern(i),
                "page {i}"
            );
        }
    }
    check(&parent, &[&parent, &child], va, 1, |_| true);
    all_back([parent, child]);
}

/// Fork a read-only mapping of `len` bytes (folios of `orders`) and end the child:
/// the parent's forced write takes its pages back as the write fault's reuse does
/// (the whole folio, no copy) and leaves every entry read-only.
fn forced_write_reuses(orders: &[usize], len: usize) {
    let (_m, mut parent, va) = setup(orders, len);
    let pages = len / PAGE_SIZE;
    write_pages(&mut parent, va, 0..pages);
    parent.mprotect(va, va.add(len), VmProt::READ).unwrap();
    drop(parent.fork().unwrap());
    let p3 = va.add(3 * PAGE_SIZE);
    let before = leaf(&parent, p3).pa_of(p3);
    force_write(&mut parent, p3, 0xa3);
    assert_eq!(leaf(&parent, p3).pa_of(p3), before, "copied, not reused");
    // The folio around page 3: the whole mapping, or page 3 alone for base pages.
    let taken = if orders.is_empty() { 3..4 } else { 0..pages };
    for i in taken {
        read_only_exclusive(&parent, va.add(i * PAGE_SIZE));
    }
    check(&parent, &[&parent], va, 1, |_| true);
    all_back([parent]);
}

/// The folio sizes the tests below run with: base pages, 64 KiB, 2 MiB.
const SIZES: [(&[usize], usize); 3] = [(&[], 4 * PAGE_SIZE), (&[4], CONT_SIZE), (&[9], PMD_SIZE)];

#[test]
fn forced_write_after_fork_stays_in_the_writer() {
    for (orders, len) in SIZES {
        forced_writes_after_fork(orders, len);
    }
}

#[test]
fn forced_write_reuses_what_is_left_alone() {
    for (orders, len) in SIZES {
        forced_write_reuses(orders, len);
    }
}

/// A read-only page this address space alone maps is written where it is: no copy,
/// the entry stays read-only; a PROT_NONE page is read and written too.
#[test]
fn forced_write_to_an_exclusive_read_only_page_writes_in_place() {
    let (_m, mut mm, va) = setup(&[], 2 * PAGE_SIZE);
    write_pages(&mut mm, va, 0..2);
    let before = leaf(&mm, va).pa_of(va);
    mm.mprotect(va, va.add(PAGE_SIZE), VmProt::READ).unwrap();
    mm.mprotect(va.add(PAGE_SIZE), va.add(2 * PAGE_SIZE), VmProt::NONE)
        .unwrap();
    force_write(&mut mm, va, 0x77);
    assert_eq!(leaf(&mm, va).pa_of(va), before, "copied");
    read_only_exclusive(&mm, va);
    let none = va.add(PAGE_SIZE);
    force_write(&mut mm, none, 0x66);
    assert_eq!(force_read(&mut mm, none), 0x66);
    assert!(!leaf(&mm, none).pte.is_writable());
    all_back([mm]);
}

/// MADV_FREE, then a forced write to the (read-only, clean) page, then MADV_PAGEOUT:
/// the page keeps the written data, as Linux's write dirties the folio.
#[test]
fn forced_write_keeps_a_lazyfree_page() {
    let (_m, mut mm, va) = setup(&[], PAGE_SIZE);
    write_pages(&mut mm, va, 0..1);
    mm.mprotect(va, va.add(PAGE_SIZE), VmProt::READ).unwrap();
    mm.madvise(va, va.add(PAGE_SIZE), MADV_FREE).unwrap();
    force_write(&mut mm, va.add(8), 0x42);
    mm.madvise(va, va.add(PAGE_SIZE), MADV_PAGEOUT).unwrap();
    assert!(
        mm.tables.get(va).is_some(),
        "written lazyfree page discarded"
    );
    assert_eq!(force_read(&mut mm, va.add(8)), 0x42);
    all_back([mm]);
}

/// Outside every VMA nothing is copied (EIO above); a range running into a hole
/// stops there; an unmapped page of a VMA is faulted in (zero) by a forced read.
#[test]
fn forced_access_stops_at_a_hole() {
    let (_m, mut mm, va) = setup(&[], PAGE_SIZE);
    let mut buf = [0xffu8; 16];
    let end = va.add(PAGE_SIZE);
    assert_eq!(mm.access_forced(end, Transfer::Read(&mut buf)), 0);
    assert_eq!(mm.access_forced(end, Transfer::Write(&buf)), 0);
    assert_eq!(
        mm.access_forced(VirtAddr(u64::MAX - 3), Transfer::Read(&mut buf)),
        0
    );
    assert_eq!(
        mm.access_forced(VirtAddr(end.as_u64() - 8), Transfer::Read(&mut buf)),
        8
    );
    assert_eq!(buf[..8], [0; 8], "a page never written reads zero");
    assert!(
        mm.tables.get(va).is_some(),
        "the forced read faulted the page in"
    );
    all_back([mm]);
}
