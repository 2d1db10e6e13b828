//! VMA flags (issue 19): fork's (MADV_DONTFORK: the child has no mapping and the
//! parent's folio is never shared; MADV_WIPEONFORK: the child's VMA is empty) and
//! mlock's (populated when locked, never discarded by a reclaim pass or
//! MADV_PAGEOUT, MADV_FREE and MADV_DONTNEED refused, not inherited, mlockall's
//! future lock for new mappings). Each checks the data and the folio audit; at the end
//! every frame is back.

use core::sync::atomic::Ordering;

use super::collapse::{
    all_back, check_pages, check_pages_among, env, leaf, only, region, write_pages,
};
use super::lazyfree::{discarded, each_cleaning_machine, four_lazyfree_folios, get, marked, pass};
use super::*;
use crate::mm::addr::CONT_SIZE;
use crate::mm::fault::PGFAULT;
use crate::mm::folio::Folio;
use crate::mm::lazyfree::STATS;
use crate::mm::mlock::Lock;
use crate::mm::mthp::HugeHint;
use crate::mm::vma::{Vma, VmaFlags, VmaKind};
use crate::uapi::{
    EINVAL, ENOMEM, MADV_DOFORK, MADV_DONTFORK, MADV_DONTNEED_LOCKED, MADV_KEEPONFORK,
    MADV_WIPEONFORK, MCL_CURRENT, MCL_FUTURE,
};

fn reuses() -> u64 {
    mthp::stats(4).cow_reuse.load(Ordering::Relaxed)
}

/// Four 64 KiB folios written, mapped at `va`.
fn four_folios() -> (Mm<HostMachine>, VirtAddr) {
    only(&[4]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, 4 * CONT_SIZE, CONT_SIZE);
    write_pages(&mut mm, va, 0..64);
    (mm, va)
}

/// MADV_DONTFORK of the middle two folios: the VMA splits there, the child has a hole,
/// and those folios stay exclusive and writable in the parent, contiguous blocks
/// folded, so its next writes take no fault at all (no reuse, no copy, no split);
/// the folios outside were shared. MADV_DOFORK merges the VMA back.
#[test]
fn dontfork_child_has_no_mapping_and_the_parent_keeps_its_folios_whole() {
    let _m = host::machine();
    let (mut parent, va) = four_folios();
    let (a, b) = (va.add(CONT_SIZE), va.add(3 * CONT_SIZE));
    parent.madvise(a, b, MADV_DONTFORK).unwrap();
    assert_eq!(parent.vmas.len(), 3, "the VMA splits at the range");
    assert!(parent.vmas.find(a).unwrap().flags.dontcopy);
    let kept = Folio::of(leaf(&parent, a).pa_of(a));
    let shared = Folio::of(leaf(&parent, va).pa_of(va));

    let child = parent.fork().unwrap();
    assert!(
        child.vmas.find(a).is_none()
            && child.vmas.find(va.add(3 * CONT_SIZE - PAGE_SIZE)).is_none()
    );
    assert!(child.tables.get(a).is_none(), "no mapping in the child");
    assert!(child.vmas.find(va).is_some() && child.vmas.find(b).is_some());
    assert!(
        kept.all_exclusive() && kept.entire_mapcount() == 1,
        "never shared"
    );
    assert!(!shared.is_exclusive(0), "outside the range: shared by fork");
    let l = leaf(&parent, a);
    assert!(
        l.pte.is_writable() && l.pte.is_cont(),
        "still writable, folded"
    );

    let (faults, reused) = (PGFAULT.load(Ordering::Relaxed), reuses());
    write_pages(&mut parent, a, 0..32);
    assert_eq!(
        PGFAULT.load(Ordering::Relaxed),
        faults,
        "no fault in the range"
    );
    assert_eq!(reuses(), reused);
    assert_eq!(Folio::of(leaf(&parent, a).pa_of(a)).head(), kept.head());
    check_pages_among(&child, &[&parent, &child], va, 16, |_| true);

    parent.madvise(a, b, MADV_DOFORK).unwrap();
    assert_eq!(parent.vmas.len(), 1, "MADV_DOFORK merges back");
    all_back([child, parent]);
}

/// MADV_WIPEONFORK: the child's VMA is there (with the flag, so a grandchild is wiped
/// too) but maps nothing: it reads zeros and its writes fault in frames of its own; the
/// parent keeps its folios, exclusive. MADV_KEEPONFORK shares them again.
#[test]
fn wipeonfork_child_reads_zeros_and_its_frames_are_new() {
    let _m = host::machine();
    let (mut parent, va) = four_folios();
    let end = va.add(4 * CONT_SIZE);
    parent.madvise(va, end, MADV_WIPEONFORK).unwrap();
    let f = Folio::of(leaf(&parent, va).pa_of(va));

    let mut child = parent.fork().unwrap();
    let v = child.vmas.find(va).expect("the child has the VMA");
    assert!(v.start == va && v.end == end && v.flags.wipeonfork);
    assert!(child.tables.get(va).is_none(), "empty");
    check_pages_among(&child, &[&parent, &child], va, 64, |_| false);
    check_pages(&parent, va, 64, |_| true);
    assert!(f.all_exclusive() && leaf(&parent, va).pte.is_writable());

    write_pages(&mut child, va, 0..64);
    for i in 0..64 {
        let at = va.add(i * PAGE_SIZE);
        assert_ne!(
            leaf(&child, at).pa_of(at),
            leaf(&parent, at).pa_of(at),
            "page {i}"
        );
    }
    let grandchild = child.fork().unwrap();
    assert!(grandchild.tables.get(va).is_none(), "the flag is inherited");

    parent.madvise(va, end, MADV_KEEPONFORK).unwrap();
    let second = parent.fork().unwrap();
    assert_eq!(leaf(&second, va).pa_of(va), f.page(0), "shared again");
    check_pages_among(
        &second,
        &[&parent, &child, &grandchild, &second],
        va,
        64,
        |_| true,
    );
    all_back([grandchild, second, child, parent]);
}

/// Wipe-on-fork is for anonymous memory: a mapping of the executable (a file mapping
/// on Linux) is EINVAL, and the pieces before it keep the flag (Linux stops there).
#[test]
fn wipeonfork_of_the_image_is_einval() {
    let _m = host::machine();
    let (mut mm, va) = four_folios();
    let end = va.add(4 * CONT_SIZE);
    mm.vmas
        .insert(Vma {
            start: end,
            end: end.add(PAGE_SIZE),
            prot: VmProt::READ_EXEC,
            huge: HugeHint::Default,
            flags: VmaFlags::default(),
            kind: VmaKind::Image,
        })
        .unwrap();
    assert_eq!(
        mm.madvise(va, end.add(PAGE_SIZE), MADV_WIPEONFORK),
        Err(EINVAL)
    );
    assert!(mm.vmas.find(va).unwrap().flags.wipeonfork);
    mm.madvise(end, end.add(PAGE_SIZE), MADV_DONTFORK).unwrap();
    all_back([mm]);
}

/// A locked mapping of a clean lazyfree folio (MADV_FREE, then mlock of the range
/// made read-only, which no population writes) survives reclaim passes and MADV_PAGEOUT
/// is EINVAL; after munlock the folios go as lazyfree ones do.
#[test]
fn a_locked_lazyfree_folio_survives_reclaim_and_pageout() {
    each_cleaning_machine(|env| {
        let (mut mm, va) = four_lazyfree_folios(&env);
        let end = va.add(4 * CONT_SIZE);
        mm.mprotect(va, end, VmProt::READ).unwrap();
        mm.mlock(va, end, Some(Lock::Populate)).unwrap();
        assert!(marked(&mm, va), "a read-only range keeps its marks");
        assert_eq!(mm.madvise(va, end, MADV_PAGEOUT), Err(EINVAL));
        let (gone, kept) = (discarded(), get(&STATS.locked_kept));
        pass(&mut mm);
        pass(&mut mm);
        assert_eq!(discarded(), gone, "{env:?}");
        assert!(get(&STATS.locked_kept) >= kept + 4);
        check_pages(&mm, va, 64, |_| true);

        mm.mlock(va, end, None).unwrap();
        pass(&mut mm);
        pass(&mut mm);
        assert_eq!(discarded(), gone + 64, "unlocked: discarded");
        check_pages(&mm, va, 64, |_| false);
        all_back([mm]);
    });
}

/// mlock of a writable lazyfree range: Linux's population writes the pages, so the
/// folios are kept from then on, even after munlock; MADV_FREE and MADV_DONTNEED of a
/// locked VMA are EINVAL, MADV_DONTNEED_LOCKED is not.
#[test]
fn mlock_of_a_writable_lazyfree_range_keeps_it() {
    each_cleaning_machine(|env| {
        let (mut mm, va) = four_lazyfree_folios(&env);
        let end = va.add(4 * CONT_SIZE);
        let unmarked = get(&STATS.mlock_unmarked);
        mm.mlock(va, end, Some(Lock::Populate)).unwrap();
        assert!(!marked(&mm, va));
        assert_eq!(get(&STATS.mlock_unmarked), unmarked + 4);
        assert_eq!(mm.madvise(va, end, MADV_FREE), Err(EINVAL));
        assert_eq!(mm.madvise(va, end, MADV_DONTNEED), Err(EINVAL));
        mm.mlock(va, end, None).unwrap();
        let gone = discarded();
        pass(&mut mm);
        pass(&mut mm);
        assert_eq!(discarded(), gone);
        check_pages(&mm, va, 64, |_| true);

        mm.mlock(va, end, Some(Lock::OnFault)).unwrap();
        mm.madvise(va, end, MADV_DONTNEED_LOCKED).unwrap();
        check_pages(&mm, va, 64, |_| false);
        all_back([mm]);
    });
}

/// mlock populates (MLOCK_ONFAULT does not), a hole is ENOMEM after the pieces before
/// it, fork's child inherits no lock, mlockall(MCL_FUTURE) locks and populates later
/// mappings and the heap's growth, and munlockall undoes it all.
#[test]
fn mlock_populates_and_mlockall_applies_to_new_mappings() {
    let _m = host::machine();
    only(&[4]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, 4 * CONT_SIZE, CONT_SIZE);
    let end = va.add(4 * CONT_SIZE);
    let mapped = |mm: &Mm<HostMachine>, a: VirtAddr, b: VirtAddr| {
        (0..(b.as_u64() - a.as_u64()) as usize / PAGE_SIZE)
            .filter(|i| mm.tables.get(a.add(i * PAGE_SIZE)).is_some())
            .count()
    };
    mm.mlock(va, va.add(CONT_SIZE), Some(Lock::OnFault))
        .unwrap();
    assert_eq!(mapped(&mm, va, end), 0, "on fault: nothing populated");
    mm.mlock(va.add(CONT_SIZE), end, Some(Lock::Populate))
        .unwrap();
    assert_eq!(mapped(&mm, va, end), 48);
    assert_eq!(mm.vmas.len(), 2);
    assert_eq!(mm.locked_bytes(), 4 * CONT_SIZE as u64);
    assert_eq!(
        mm.mlock(va, end.add(PAGE_SIZE), Some(Lock::Populate)),
        Err(ENOMEM)
    );
    assert_eq!(mm.vmas.len(), 1, "the pieces before the hole were changed");

    let child = mm.fork().unwrap();
    assert!(child.vmas.iter().all(|v| !v.flags.locked), "not inherited");
    assert_eq!(child.locked_bytes(), 0);
    drop(child);

    mm.mlockall(MCL_FUTURE).unwrap();
    let more = mm
        .mmap(
            WINDOW + (8 << 20),
            CONT_SIZE as u64,
            VmProt::READ_WRITE,
            MAP_FIXED,
        )
        .unwrap();
    assert!(mm.vmas.find(more).unwrap().flags.locked);
    assert_eq!(mapped(&mm, more, more.add(CONT_SIZE)), 16, "populated");
    mm.brk_start = VirtAddr(WINDOW + (12 << 20));
    mm.brk = mm.brk_start;
    mm.set_brk(mm.brk_start.add(2 * PAGE_SIZE));
    assert!(mm.vmas.find(mm.brk_start).unwrap().flags.locked);
    assert_eq!(
        mapped(&mm, mm.brk_start, mm.brk_start.add(2 * PAGE_SIZE)),
        2
    );

    mm.mlockall(MCL_CURRENT).unwrap();
    let after = mm
        .mmap(
            WINDOW + (10 << 20),
            PAGE_SIZE as u64,
            VmProt::READ_WRITE,
            MAP_FIXED,
        )
        .unwrap();
    assert!(
        !mm.vmas.find(after).unwrap().flags.locked,
        "MCL_CURRENT alone clears the future lock"
    );
    mm.mlockall(0).unwrap();
    assert_eq!(mm.locked_bytes(), 0);

    // PROT_NONE: locked, but the population fails (Linux's EFAULT, mlock's ENOMEM).
    let none = mm
        .mmap(
            WINDOW + (14 << 20),
            CONT_SIZE as u64,
            VmProt::NONE,
            MAP_FIXED,
        )
        .unwrap();
    let none_end = none.add(CONT_SIZE);
    assert_eq!(mm.mlock(none, none_end, Some(Lock::Populate)), Err(ENOMEM));
    assert!(mm.vmas.find(none).unwrap().flags.locked);
    assert_eq!(mapped(&mm, none, none_end), 0);
    all_back([mm]);
}

/// A DONTFORK or WIPEONFORK range that cuts 64 KiB folios (their contiguous blocks
/// straddle the new VMA edges): fork maps only the pages outside it in the child, and
/// after writes on both sides of the edges (copy-on-write of cut folios) each side
/// reads its data, with the checker and the folio audit content.
#[test]
fn fork_flags_that_cut_folios_share_only_the_pages_outside() {
    for advice in [MADV_DONTFORK, MADV_WIPEONFORK] {
        let _m = host::machine();
        let (mut parent, va) = four_folios();
        let (a, b) = (va.add(8 * PAGE_SIZE), va.add(40 * PAGE_SIZE));
        parent.madvise(a, b, advice).unwrap();
        let mut child = parent.fork().unwrap();
        let inside = |i: usize| (8..40).contains(&i);
        if advice == MADV_DONTFORK {
            assert!(child.vmas.find(a).is_none());
        }
        for i in 0..64 {
            let at = va.add(i * PAGE_SIZE);
            assert_eq!(child.tables.get(at).is_some(), !inside(i), "page {i}");
        }
        check_pages_among(&parent, &[&parent, &child], va, 64, |_| true);
        // The parent writes across both edges, then the child outside (and inside,
        // where the VMA exists).
        write_pages(&mut parent, va, 4..12);
        write_pages(&mut parent, va, 36..44);
        let child_pages: Vec<usize> = (0..64)
            .filter(|&i| advice == MADV_WIPEONFORK || !inside(i))
            .collect();
        write_pages(&mut child, va, child_pages.iter().copied());
        check_pages_among(&parent, &[&parent, &child], va, 64, |_| true);
        check_pages_among(&child, &[&parent, &child], va, 64, |i| {
            advice == MADV_WIPEONFORK || !inside(i)
        });
        all_back([child, parent]);
    }
}

/// Found by the property tests (200 cases): mlock of pages 2..4 next to a locked 4..8
/// merges into one locked VMA reaching past the range, which the population loop
/// found again at the range's end, for ever.
#[test]
fn mlock_next_to_a_locked_range_merges_and_returns() {
    let _m = host::machine();
    only(&[]);
    let mut mm = Mm::new_in(&env()).unwrap();
    let va = region(&mut mm, 8 * PAGE_SIZE, PAGE_SIZE);
    mm.mlock(
        va.add(4 * PAGE_SIZE),
        va.add(8 * PAGE_SIZE),
        Some(Lock::Populate),
    )
    .unwrap();
    mm.mlock(
        va.add(2 * PAGE_SIZE),
        va.add(4 * PAGE_SIZE),
        Some(Lock::Populate),
    )
    .unwrap();
    assert_eq!(mm.vmas.len(), 2, "2..8 merged");
    assert!((2..8).all(|i| mm.tables.get(va.add(i * PAGE_SIZE)).is_some()));
    audit::check([&mm].into_iter()).expect("audit");
    all_back([mm]);
}
