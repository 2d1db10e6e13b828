//! userfaultfd's address-space side (`mm::userfault`): registration splits and merges
//! VMAs as a flag does, a fault on an unpopulated page of a registered VMA is handed
//! out (`FaultError::Userfault`) while populated pages fault as usual, UFFDIO_COPY maps
//! a 64 KiB-aligned run as one folded folio and anything else as base pages,
//! UFFDIO_ZEROPAGE the zero page, fork's child and an mremap'd VMA lose the
//! registration (the child gets its own context's with EVENT_FORK), and mremap refuses to move several VMAs when one is registered.
//! Each test checks the data and the folio audit; at the end every frame is back.

use super::collapse::{all_back, check_pages, env, leaf, only, pattern, region, write_pages};
use super::*;
use crate::mm::addr::CONT_SIZE;
use crate::mm::folio::Folio;
use crate::mm::userfault::Fill;
use crate::mm::vma::UffdId;
use crate::uapi::{EBUSY, EEXIST, EFAULT, EINVAL, ENOENT};

const P: usize = PAGE_SIZE;
const A: UffdId = UffdId(1);
const B: UffdId = UffdId(2);

fn mm_with(pages: usize) -> (Mm<HostMachine>, VirtAddr) {
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, pages * P, CONT_SIZE);
    (mm, va)
}

/// The registration of each VMA, in order, as (first page, pages, context).
fn layout(mm: &Mm<HostMachine>, base: VirtAddr) -> Vec<(usize, usize, Option<UffdId>)> {
    mm.vmas
        .iter()
        .map(|v| {
            let first = v.start.offset_from(base) / P;
            (first, v.end.offset_from(v.start) / P, v.flags.userfault)
        })
        .collect()
}

/// The bytes of `n` pages, page `i` filled with `pattern(i)`.
fn patterned(n: usize) -> Vec<u8> {
    (0..n * P).map(|b| pattern(b / P)).collect()
}

#[test]
fn register_splits_the_vma_and_unregister_merges_it_back() {
    let _m = host::machine();
    only(&[]);
    let (mut mm, va) = mm_with(16);
    let (a, b) = (va.add(4 * P), va.add(8 * P));
    mm.uffd_register(A, a, b).unwrap();
    assert_eq!(
        layout(&mm, va),
        [(0, 4, None), (4, 4, Some(A)), (8, 8, None)]
    );
    // The same context again: nothing changes; another context: EBUSY, nothing changes.
    mm.uffd_register(A, a, b).unwrap();
    assert_eq!(mm.uffd_register(B, va, va.add(5 * P)), Err(EBUSY));
    assert_eq!(mm.vmas.len(), 3);
    // Unregistering through another context: EINVAL.
    assert_eq!(mm.uffd_unregister(B, a, b), Err(EINVAL));
    // A range that meets no VMA: EINVAL for both.
    let far = va.add(64 * P);
    assert_eq!(mm.uffd_register(A, far, far.add(P)), Err(EINVAL));
    assert_eq!(mm.uffd_unregister(A, far, far.add(P)), Err(EINVAL));
    // A range with a hole registers the pieces around it.
    mm.munmap(va.add(10 * P), va.add(11 * P)).unwrap();
    mm.uffd_register(A, va.add(9 * P), va.add(12 * P)).unwrap();
    assert_eq!(
        layout(&mm, va),
        [
            (0, 4, None),
            (4, 4, Some(A)),
            (8, 1, None),
            (9, 1, Some(A)),
            (11, 1, Some(A)),
            (12, 4, None)
        ]
    );
    // Unregistering a whole VMA merges it with the VMA past the range's end, which
    // then holds the end (uffd-unit-tests found a panic here).
    mm.uffd_unregister(A, va.add(4 * P), va.add(8 * P)).unwrap();
    assert_eq!(
        layout(&mm, va),
        [
            (0, 9, None),
            (9, 1, Some(A)),
            (11, 1, Some(A)),
            (12, 4, None)
        ]
    );
    mm.uffd_unregister(A, va, va.add(16 * P)).unwrap();
    assert_eq!(layout(&mm, va), [(0, 10, None), (11, 5, None)]);
    // Release forgets every VMA of the context, and they merge back.
    mm.uffd_register(A, va.add(2 * P), va.add(3 * P)).unwrap();
    mm.uffd_register(A, va.add(12 * P), va.add(16 * P)).unwrap();
    mm.uffd_register(B, va.add(5 * P), va.add(6 * P)).unwrap();
    mm.uffd_release(A);
    assert_eq!(
        layout(&mm, va),
        [(0, 5, None), (5, 1, Some(B)), (6, 4, None), (11, 5, None)]
    );
    all_back([mm]);
}

#[test]
fn a_shared_file_mapping_registers() {
    let _m = host::machine();
    only(&[]);
    let (mut mm, va) = mm_with(4);
    let file = crate::mm::shmem::Shmem::new(|_| String::from("/memfd:uffd"), 4 * P as u64);
    let f = mm
        .mmap_file(
            0,
            4 * P as u64,
            VmProt::READ_WRITE,
            crate::uapi::MAP_SHARED,
            file,
            0,
        )
        .unwrap();
    assert_eq!(mm.uffd_register(A, f, f.add(P)), Ok(false));
    mm.uffd_register(A, va, va.add(4 * P)).unwrap();
    all_back([mm]);
}

#[test]
fn a_missing_fault_in_a_registered_vma_goes_to_the_context() {
    let _m = host::machine();
    only(&[]);
    let (mut mm, va) = mm_with(32);
    write_pages(&mut mm, va, 0..1);
    only(&[4]);
    mm.uffd_register(A, va, va.add(16 * P)).unwrap();
    // Unpopulated: handed out for a read and a write, nothing mapped.
    for access in [Access::Read, Access::Write] {
        assert_eq!(
            mm.handle_fault(va.add(3 * P), access),
            Err(FaultError::Userfault(A))
        );
    }
    assert!(mm.tables.get(va.add(3 * P)).is_none());
    assert!(mm.uffd_must_wait(A, va.add(3 * P)));
    assert!(!mm.uffd_must_wait(B, va.add(3 * P)));
    // Populated before the registration: faults as usual (access flag, a write).
    mm.handle_fault(va, Access::Write).unwrap();
    assert!(!mm.uffd_must_wait(A, va));
    // Outside the registered VMA: a normal fault (a 64 KiB folio).
    write_pages(&mut mm, va.add(16 * P), 0..1);
    assert!(leaf(&mm, va.add(16 * P)).pte.is_cont());
    // Released: faults are the kernel's again.
    mm.uffd_release(A);
    mm.handle_fault(va.add(3 * P), Access::Read).unwrap();
    check_pages(&mm, va, 1, |i| i == 0);
    all_back([mm]);
}

#[test]
fn copy_maps_an_aligned_run_as_one_folded_folio_and_the_rest_as_pages() {
    let _m = host::machine();
    only(&[4]);
    let (mut mm, va) = mm_with(48);
    mm.uffd_register(A, va, va.add(48 * P)).unwrap();
    let end = va.add(48 * P);
    let data = patterned(16);
    // A 64 KiB-aligned run of 16 pages: one folio, folded.
    assert_eq!(mm.uffd_fill(va, 16, end, Fill::Copy(&data)), (16, Ok(())));
    assert!(leaf(&mm, va).pte.is_cont());
    let f = Folio::of(leaf(&mm, va).pa_of(va));
    assert_eq!(f.nr_pages(), 16);
    check_pages(&mm, va, 16, |_| true);
    // Not aligned: base pages, none folded.
    let at = va.add(17 * P);
    assert_eq!(mm.uffd_fill(at, 16, end, Fill::Copy(&data)), (16, Ok(())));
    assert!(!leaf(&mm, at).pte.is_cont());
    assert_eq!(Folio::of(leaf(&mm, at).pa_of(at)).nr_pages(), 1);
    check_pages(&mm, at, 16, |_| true);
    // A populated page stops the fill there: EEXIST after the pages before it.
    let at = va.add(14 * P);
    assert_eq!(
        mm.uffd_fill(va.add(32 * P), 1, end, Fill::Copy(&data[..P])),
        (0, Err(EEXIST))
    );
    assert_eq!(
        mm.uffd_fill(at.add(2 * P), 2, end, Fill::Copy(&data[..2 * P])),
        (1, Err(EEXIST))
    );
    // The filled page reads back; faults there are the usual ones now.
    mm.handle_fault(va.add(16 * P), Access::Write).unwrap();
    // Past the registered VMA (the call's end), or an unregistered one: ENOENT.
    assert_eq!(
        mm.uffd_fill(va.add(40 * P), 1, va.add(49 * P), Fill::Zero),
        (0, Err(ENOENT))
    );
    mm.uffd_unregister(A, va.add(40 * P), va.add(48 * P))
        .unwrap();
    assert_eq!(
        mm.uffd_fill(va.add(40 * P), 1, va.add(41 * P), Fill::Zero),
        (0, Err(ENOENT))
    );
    all_back([mm]);
}

#[test]
fn copy_takes_base_pages_where_the_policy_allows_no_64k_folio() {
    let _m = host::machine();
    only(&[]);
    let (mut mm, va) = mm_with(16);
    mm.uffd_register(A, va, va.add(16 * P)).unwrap();
    let data = patterned(16);
    assert_eq!(
        mm.uffd_fill(va, 16, va.add(16 * P), Fill::Copy(&data)),
        (16, Ok(()))
    );
    assert!(!leaf(&mm, va).pte.is_cont());
    check_pages(&mm, va, 16, |_| true);
    all_back([mm]);
}

#[test]
fn zeropage_maps_the_zero_page_and_a_write_then_copies_it() {
    let _m = host::machine();
    only(&[]);
    let (mut mm, va) = mm_with(4);
    mm.uffd_register(A, va, va.add(4 * P)).unwrap();
    assert_eq!(mm.uffd_fill(va, 2, va.add(4 * P), Fill::Zero), (2, Ok(())));
    let zero = leaf(&mm, va).pa_of(va);
    assert_eq!(zero, leaf(&mm, va.add(P)).pa_of(va.add(P)));
    assert!(!leaf(&mm, va).pte.is_writable());
    // A write is copy-on-write over the zero page, no userfault.
    write_pages(&mut mm, va, 0..1);
    assert_ne!(leaf(&mm, va).pa_of(va), zero);
    assert_eq!(
        mm.handle_fault(va.add(2 * P), Access::Read),
        Err(FaultError::Userfault(A))
    );
    check_pages(&mm, va, 4, |i| i == 0);
    all_back([mm]);
}

#[test]
fn fork_child_and_a_moved_vma_are_not_registered() {
    let _m = host::machine();
    only(&[]);
    let (mut mm, va) = mm_with(8);
    mm.uffd_register(A, va, va.add(8 * P)).unwrap();
    let mut child = mm.fork().unwrap();
    assert_eq!(child.vmas.find(va).unwrap().flags.userfault, None);
    // UFFD_FEATURE_EVENT_FORK: the child's VMAs registered with the child's context,
    // the pieces as in the parent.
    let mut other = mm.fork().unwrap();
    mm.uffd_fork(&mut other, |old| (old == A).then_some(B));
    assert_eq!(layout(&other, va)[0], (0, 8, Some(B)));
    assert_eq!(
        other.handle_fault(va, Access::Read),
        Err(FaultError::Userfault(B))
    );
    child.handle_fault(va, Access::Write).unwrap();
    assert_eq!(
        mm.handle_fault(va, Access::Write),
        Err(FaultError::Userfault(A))
    );
    // A single registered VMA moves, without its registration (no EVENT_REMAP).
    let to = va.add(64 * P);
    let flags = crate::uapi::MREMAP_MAYMOVE | crate::uapi::MREMAP_FIXED;
    mm.mremap(va.as_u64(), 8 * P as u64, 8 * P as u64, flags, to.as_u64())
        .unwrap();
    assert_eq!(mm.vmas.find(to).unwrap().flags.userfault, None);
    mm.handle_fault(to, Access::Write).unwrap();
    all_back([mm, child, other]);
}

/// Linux's `mremap_test` "mremap move multiple invalid vmas": a pure move of several
/// VMAs refuses with EFAULT at a registered one: before anything moves when it is the
/// first, after the ones before it moved when it is a later one.
#[test]
fn mremap_refuses_to_move_several_vmas_when_one_is_registered() {
    let _m = host::machine();
    only(&[]);
    let (mut mm, va) = mm_with(10);
    let to = va.add(64 * P);
    let flags = crate::uapi::MREMAP_MAYMOVE | crate::uapi::MREMAP_FIXED;
    let len = 10 * P as u64;
    for i in (0..10).step_by(2) {
        mm.uffd_register(A, va.add(i * P), va.add((i + 1) * P))
            .unwrap();
        mm.munmap(va.add((i + 1) * P), va.add((i + 2) * P)).unwrap();
    }
    assert_eq!(
        mm.mremap(va.as_u64(), len, len, flags, to.as_u64()),
        Err(EFAULT)
    );
    assert!(mm.vmas.find(to).is_none(), "nothing moved");
    // One registered VMA alone moves.
    mm.mremap(va.as_u64(), P as u64, P as u64, flags, to.as_u64())
        .unwrap();
    mm.munmap(to, to.add(P)).unwrap();
    // The first unregistered: it moves, the next one refuses.
    mm.mmap(va.as_u64(), P as u64, VmProt::READ_WRITE, MAP_FIXED)
        .unwrap();
    write_pages(&mut mm, va, 0..1);
    assert_eq!(
        mm.mremap(va.as_u64(), len, len, flags, to.as_u64()),
        Err(EFAULT)
    );
    assert!(mm.vmas.find(to).is_some() && mm.vmas.find(to.add(2 * P)).is_none());
    check_pages(&mm, to, 1, |_| true);
    assert!(mm.vmas.find(va.add(2 * P)).unwrap().flags.userfault == Some(A));
    all_back([mm]);
}

/// The holes of a registered VMA are its handler's: neither MADV_COLLAPSE nor the
/// collapse thread fills them (Linux's `userfaultfd_armed` check); once unregistered,
/// MADV_COLLAPSE does.
#[test]
fn collapse_leaves_the_holes_of_a_registered_vma() {
    let _m = host::machine();
    only(&[]);
    let (mut mm, va) = mm_with(16);
    write_pages(&mut mm, va, 0..8);
    only(&[4]);
    mm.uffd_register(A, va, va.add(16 * P)).unwrap();
    assert!(mm
        .madvise(va, va.add(CONT_SIZE), crate::uapi::MADV_COLLAPSE)
        .is_err());
    let r = super::collapse::scan_all(&mut mm);
    assert_eq!((r.copied, r.in_place), (0, 0), "{r:?}");
    assert!(mm.tables.get(va.add(8 * P)).is_none(), "a hole was filled");
    assert_eq!(
        mm.handle_fault(va.add(8 * P), Access::Read),
        Err(FaultError::Userfault(A))
    );
    mm.uffd_unregister(A, va, va.add(16 * P)).unwrap();
    mm.madvise(va, va.add(CONT_SIZE), crate::uapi::MADV_COLLAPSE)
        .unwrap();
    assert!(leaf(&mm, va).pte.is_cont());
    check_pages(&mm, va, 16, |i| i < 8);
    all_back([mm]);
}

/// MISSING_SHMEM: a shared mapping of a memfd registers; a fault on a page the file
/// does not have is handed out, one it has (written through another mapping) maps as
/// usual; UFFDIO_COPY and ZEROPAGE put the page in the file, where the other mapping
/// sees it, and EEXIST where the file has it; a private mapping of the file is filled
/// with anonymous pages, the file untouched.
#[test]
fn shared_file_pages_are_filled_into_the_file() {
    let _m = host::machine();
    only(&[]);
    // Page-sized file folios: page 1's does not cover page 0 (each size following the
    // top-level word, whatever an earlier test left).
    mthp::SHMEM_ENABLED.write("never").unwrap();
    for order in mthp::MTHP_ORDERS {
        mthp::shmem_size_enabled(order).write("inherit").unwrap();
    }
    let mut mm = Mm::new_in(&env()).unwrap();
    let file = crate::mm::shmem::Shmem::new(|_| String::from("/memfd:uffd"), 8 * P as u64);
    let rw = VmProt::READ_WRITE;
    let shared = crate::uapi::MAP_SHARED;
    let a = mm
        .mmap_file(0, 8 * P as u64, rw, shared, file.clone(), 0)
        .unwrap();
    let b = mm
        .mmap_file(0, 8 * P as u64, rw, shared, file.clone(), 0)
        .unwrap();
    let private = crate::uapi::MAP_PRIVATE;
    let c = mm
        .mmap_file(0, 8 * P as u64, rw, private, file.clone(), 0)
        .unwrap();
    mm.uffd_register(A, a, a.add(8 * P)).unwrap();
    mm.uffd_register(A, c, c.add(8 * P)).unwrap();
    // Page 1 written through `b`: the file has it, `a` maps it without a userfault.
    write_pages(&mut mm, b.add(P), 0..1);
    mm.handle_fault(a.add(P), Access::Read).unwrap();
    assert_eq!(
        mm.handle_fault(a, Access::Read),
        Err(FaultError::Userfault(A))
    );
    assert!(mm.uffd_must_wait(A, a) && !mm.uffd_must_wait(A, a.add(P)));
    let data = patterned(2);
    assert_eq!(
        mm.uffd_fill(a, 1, a.add(8 * P), Fill::Copy(&data[..P])),
        (1, Ok(()))
    );
    assert_eq!(
        mm.uffd_fill(a.add(P), 1, a.add(8 * P), Fill::Zero),
        (0, Err(EEXIST))
    );
    assert_eq!(
        mm.uffd_fill(a.add(2 * P), 1, a.add(8 * P), Fill::Zero),
        (1, Ok(()))
    );
    // `b` reads the copied page from the file.
    mm.handle_fault(b, Access::Read).unwrap();
    check_pages(&mm, b, 1, |_| true);
    assert_eq!(mm.handle_fault(b.add(2 * P), Access::Read), Ok(()));
    // The private mapping: an anonymous page, the file's page 3 still missing.
    assert_eq!(
        mm.uffd_fill(c.add(3 * P), 1, c.add(8 * P), Fill::Copy(&data[P..])),
        (1, Ok(()))
    );
    assert!(file.lookup(3).is_none());
    assert_eq!(
        mm.handle_fault(a.add(3 * P), Access::Read),
        Err(FaultError::Userfault(A))
    );
    drop(file);
    all_back([mm]);
}
