//! MADV_FREE of part of a large folio (issue 10): an exclusive folio is split so that
//! the covered pages become whole folios (the 64 KiB parts of a 2 MiB folio outside
//! the cut stay 64 KiB folios in contiguous blocks), those are marked, and
//! MADV_PAGEOUT then drops exactly the covered pages; a shared folio is left whole
//! and keeps everything. Each test runs on every `ContMode` with software and
//! hardware dirty state; the checker runs inside every page-table operation, the
//! folio audit after each step, and at the end every frame must be back.

use core::sync::atomic::{AtomicU64, Ordering};

use super::collapse::{
    all_back, check_pages, check_pages_among, leaf, only, pattern, region, write_pages,
};
use super::*;
use crate::mm::addr::{CONT_SIZE, PMD_SIZE};
use crate::mm::folio::Folio;
use crate::mm::lazyfree::{self, STATS};
use crate::mm::reclaim;

/// `f` on a fresh machine in every contiguous mode, with and without FEAT_HAFDBS.
pub(super) fn each_machine(f: impl Fn(HostMachine)) {
    each_machine_in(&[ContMode::On, ContMode::Off, ContMode::Naive], f);
}

/// [`each_machine`] in the modes where MADV_FREE leaves a whole 64 KiB folio clean
/// (not `contpte=naive`, where each entry's change gathers the block's dirty state
/// back into every entry, so a lazyfree 64 KiB folio is never discarded).
pub(super) fn each_cleaning_machine(f: impl Fn(HostMachine)) {
    each_machine_in(&[ContMode::On, ContMode::Off], f);
}

fn each_machine_in(modes: &[ContMode], f: impl Fn(HostMachine)) {
    for &mode in modes {
        for hw in [false, true] {
            let _m = host::machine();
            f(HostMachine {
                features: Features {
                    hw_af: hw,
                    hw_dirty: hw,
                    range_tlbi: hw,
                    bbml2: false,
                },
                mode,
            });
        }
    }
}

/// An access of `kind` by the CPU to each of the `n` pages from `va` (mapped, and
/// written through `write_pages` for a store), as the walk does it: with FEAT_HAFDBS
/// the hardware sets the entry's AF, and dirty for a store, which `write_pages` alone
/// does not.
fn cpu_accesses(mm: &Mm<HostMachine>, va: VirtAddr, n: usize, kind: AccessKind) {
    let access = model::Access { el: El::El0, kind };
    for i in 0..n {
        let at = va.add(i * PAGE_SIZE);
        model::translate(mm.tables.env(), mm.tables.root(), at, access).expect("allowed");
    }
}

pub(super) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The folio mapped at page `i` of `va`.
pub(super) fn folio_at(mm: &Mm<HostMachine>, va: VirtAddr, i: usize) -> Folio {
    let at = va.add(i * PAGE_SIZE);
    Folio::of(leaf(mm, at).pa_of(at))
}

fn pages(va: VirtAddr, r: core::ops::Range<usize>) -> (VirtAddr, VirtAddr) {
    (va.add(r.start * PAGE_SIZE), va.add(r.end * PAGE_SIZE))
}

/// Half of a 64 KiB folio: it becomes 16 folios of 4 KiB, the second half is marked,
/// and MADV_PAGEOUT drops just that half; the next folio is untouched.
#[test]
fn free_of_half_a_64k_folio_splits_it() {
    each_machine(|env| {
        only(&[4]);
        let mut mm = Mm::new_in(&env).unwrap();
        let va = region(&mut mm, 2 * CONT_SIZE, CONT_SIZE);
        write_pages(&mut mm, va, 0..32);
        cpu_accesses(&mm, va, 32, AccessKind::Write);
        assert_eq!(folio_at(&mm, va, 0).order(), 4);
        let (split, own, marked) = (
            get(&mthp::stats(4).split),
            get(&STATS.split),
            get(&STATS.pglazyfree),
        );
        let (a, b) = pages(va, 8..16);
        mm.madvise(a, b, MADV_FREE).unwrap();
        assert_eq!(get(&mthp::stats(4).split), split + 1, "{env:?}");
        assert_eq!(get(&STATS.split), own + 1);
        assert_eq!(get(&STATS.pglazyfree), marked + 8);
        for i in 0..16 {
            let f = folio_at(&mm, va, i);
            assert_eq!(f.order(), 0, "page {i}");
            assert_eq!(f.is_lazyfree(), i >= 8, "page {i}");
            assert!(!leaf(&mm, va.add(i * PAGE_SIZE)).pte.is_cont());
        }
        let next = folio_at(&mm, va, 16);
        assert!(next.order() == 4 && !next.is_lazyfree());
        let cont = leaf(&mm, va.add(CONT_SIZE)).pte.is_cont();
        assert_eq!(
            cont,
            env.mode != ContMode::Off,
            "the next block stays folded"
        );
        mm.madvise(va, va.add(2 * CONT_SIZE), MADV_PAGEOUT).unwrap();
        check_pages(&mm, va, 32, |i| !(8..16).contains(&i));
        all_back([mm]);
    });
}

/// Pages 100..300 of a 2 MiB folio mapped by a level-2 block: the block is split, the
/// folio becomes 64 KiB folios and the two cut by the range (pages 96..112 and
/// 288..304) 4 KiB ones; the 64 KiB folios stay in contiguous blocks. The covered
/// pages are marked and dropped by MADV_PAGEOUT. (With `contpte=naive` a change of a
/// contiguous block's entry gathers its dirty state back into every entry, so there
/// the covered 64 KiB folios stay dirty and are kept.)
#[test]
fn free_of_part_of_a_2m_folio_splits_it() {
    each_machine(|env| {
        only(&[9]);
        let mut mm = Mm::new_in(&env).unwrap();
        let va = region(&mut mm, PMD_SIZE, PMD_SIZE);
        write_pages(&mut mm, va, 0..512);
        cpu_accesses(&mm, va, 512, AccessKind::Write);
        assert_eq!(leaf(&mm, va).level, 2);
        let (split9, split4, own, marked) = (
            get(&mthp::stats(9).split),
            get(&mthp::stats(4).split),
            get(&STATS.split),
            get(&STATS.pglazyfree),
        );
        let covered = 100..300;
        let (a, b) = pages(va, covered.clone());
        mm.madvise(a, b, MADV_FREE).unwrap();
        assert_eq!(get(&mthp::stats(9).split), split9 + 1, "{env:?}");
        assert_eq!(
            get(&mthp::stats(4).split),
            split4,
            "one split, of the 2 MiB folio"
        );
        assert_eq!(get(&STATS.split), own + 1);
        assert_eq!(get(&STATS.pglazyfree), marked + 200);
        let small = |i: usize| (96..112).contains(&i) || (288..304).contains(&i);
        for i in 0..512 {
            let f = folio_at(&mm, va, i);
            let l = leaf(&mm, va.add(i * PAGE_SIZE));
            assert_eq!(l.level, 3);
            assert_eq!(f.order(), if small(i) { 0 } else { 4 }, "page {i}");
            assert_eq!(f.is_lazyfree(), covered.contains(&i), "page {i}");
            let cont = env.mode != ContMode::Off && !small(i);
            assert_eq!(l.pte.is_cont(), cont, "page {i}");
        }
        mm.madvise(va, va.add(PMD_SIZE), MADV_PAGEOUT).unwrap();
        let dropped = |i: usize| covered.contains(&i) && (env.mode != ContMode::Naive || small(i));
        check_pages(&mm, va, 512, |i| !dropped(i));
        all_back([mm]);
    });
}

/// After fork the folio is shared: MADV_FREE of half of it in the parent leaves it
/// whole (one folio in both address spaces) and unmarked, counted as skipped;
/// MADV_PAGEOUT drops nothing.
#[test]
fn free_of_half_a_shared_64k_folio_skips_it() {
    each_machine(|env| {
        only(&[4]);
        let mut mm = Mm::new_in(&env).unwrap();
        let va = region(&mut mm, CONT_SIZE, CONT_SIZE);
        write_pages(&mut mm, va, 0..16);
        let child = mm.fork().unwrap();
        let (split, own, skipped) = (
            get(&mthp::stats(4).split),
            get(&STATS.split),
            get(&STATS.partial_skipped),
        );
        let (a, b) = pages(va, 8..16);
        mm.madvise(a, b, MADV_FREE).unwrap();
        assert_eq!(get(&mthp::stats(4).split), split, "{env:?}");
        assert_eq!(get(&STATS.split), own);
        assert_eq!(get(&STATS.partial_skipped), skipped + 1);
        let f = folio_at(&mm, va, 0);
        assert!(f.order() == 4 && !f.is_lazyfree());
        assert_eq!(folio_at(&child, va, 0), f, "still shared");
        mm.madvise(va, va.add(CONT_SIZE), MADV_PAGEOUT).unwrap();
        for (m, i) in [&mm, &child]
            .into_iter()
            .flat_map(|m| (0..16).map(move |i| (m, i)))
        {
            let at = va.add(i * PAGE_SIZE);
            assert_eq!(
                host::read_byte(leaf(m, at).pa_of(at)),
                pattern(i),
                "page {i}"
            );
        }
        audit::check([&mm, &child].into_iter()).expect("folio audit");
        all_back([mm, child]);
    });
}

/// With no frame left for the table that splitting the 2 MiB block needs, the folio
/// is not split either (the page tables go first): it stays one 2 MiB folio under
/// its block, nothing is marked, and the call fails as clearing the range's dirty
/// state does (ENOMEM). Once memory is back the same call splits it.
#[test]
fn free_of_part_of_a_2m_folio_without_a_table_leaves_it_whole() {
    each_machine(|env| {
        only(&[9]);
        let mut mm = Mm::new_in(&env).unwrap();
        let va = region(&mut mm, PMD_SIZE, PMD_SIZE);
        write_pages(&mut mm, va, 0..512);
        let (split9, marked) = (get(&mthp::stats(9).split), get(&STATS.pglazyfree));
        let hoard: Vec<_> = core::iter::from_fn(|| frames().alloc(0)).collect();
        let (a, b) = pages(va, 100..300);
        let r = mm.madvise(a, b, MADV_FREE);
        for &pa in &hoard {
            frames().free(pa, 0);
        }
        assert_eq!(r, Err(crate::uapi::ENOMEM), "{env:?}");
        assert_eq!(leaf(&mm, va).level, 2, "the block stays");
        assert_eq!(folio_at(&mm, va, 0).order(), 9, "the folio stays whole");
        assert_eq!(get(&mthp::stats(9).split), split9);
        assert_eq!(get(&STATS.pglazyfree), marked);
        mm.madvise(a, b, MADV_FREE).unwrap();
        assert_eq!(get(&mthp::stats(9).split), split9 + 1);
        assert_eq!(folio_at(&mm, va, 0).order(), 4);
        check_pages(&mm, va, 512, |_| true);
        all_back([mm]);
    });
}

/// A reclaim pass over the list with `mm` as the caller's own address space (the
/// entries of others stay: the host has no owner hook).
pub(super) fn pass(mm: &mut Mm<HostMachine>) {
    reclaim::pass(Some(mm), usize::MAX, true, reclaim::Reclaimer::Demand);
}

/// A store of `pattern(i)` by the CPU to page `i` from `va`, taking the fault the walk
/// asks for first (the software dirty fault, or copy-on-write).
fn store(mm: &mut Mm<HostMachine>, va: VirtAddr, i: usize) {
    let at = va.add(i * PAGE_SIZE);
    let access = model::Access {
        el: El::El0,
        kind: AccessKind::Write,
    };
    let walk =
        |mm: &Mm<HostMachine>| model::translate(mm.tables.env(), mm.tables.root(), at, access);
    let w = walk(mm).or_else(|_| {
        mm.handle_fault(at, Access::Write).expect("fault");
        walk(mm)
    });
    host::write_byte(w.expect("writable after the fault").pa, pattern(i));
}

/// Four 64 KiB folios written and then lazyfree: where they are.
pub(super) fn four_lazyfree_folios(env: &HostMachine) -> (Mm<HostMachine>, VirtAddr) {
    only(&[4]);
    let mut mm = Mm::new_in(env).unwrap();
    let va = region(&mut mm, 4 * CONT_SIZE, CONT_SIZE);
    write_pages(&mut mm, va, 0..64);
    mm.madvise(va, va.add(4 * CONT_SIZE), MADV_FREE).unwrap();
    (mm, va)
}

/// Lazyfree pages discarded since boot.
pub(super) fn discarded() -> u64 {
    get(&STATS.pglazyfreed)
}

/// Whether the 64 KiB folios of the 64 pages from `va` in `mm` are still marked.
pub(super) fn marked(mm: &Mm<HostMachine>, va: VirtAddr) -> bool {
    (0..4).all(|k| folio_at(mm, va, 16 * k).is_lazyfree())
}

/// Issue 17, defect 1: a fork whose child exits at once (what `system()` does) leaves
/// the parent's lazyfree folios marked shared (`ALL_SHARED`) though it maps them alone
/// again: MADV_PAGEOUT and a reclaim pass decide from the counts and discard them
/// (Linux 6.12 drops them too).
#[test]
fn lazyfree_after_fork_and_child_exit_is_discarded() {
    each_cleaning_machine(|env| {
        let (mut mm, va) = four_lazyfree_folios(&env);
        drop(mm.fork().unwrap());
        assert_eq!(
            crate::mm::lazyfree::list_len(),
            4,
            "the child's entries went with it"
        );
        let gone = discarded();
        mm.madvise(va, va.add(2 * CONT_SIZE), MADV_PAGEOUT).unwrap();
        assert_eq!(discarded(), gone + 32, "{env:?}");
        pass(&mut mm);
        assert_eq!(discarded(), gone + 64);
        check_pages(&mm, va, 64, |_| false);
        all_back([mm]);
    });
}

/// Issue 17, defect 1: while both sides of a fork map a clean lazyfree folio, each
/// mapping is reached through its own entry and discarded; the folio is freed with the
/// last one. MADV_PAGEOUT leaves a shared folio alone (as Linux).
#[test]
fn lazyfree_shared_by_fork_is_discarded_mapping_by_mapping() {
    each_cleaning_machine(|env| {
        let (mut mm, va) = four_lazyfree_folios(&env);
        let mut child = mm.fork().unwrap();
        audit::check([&mm, &child].into_iter()).expect("every mapping listed");
        let gone = discarded();
        mm.madvise(va, va.add(4 * CONT_SIZE), MADV_PAGEOUT).unwrap();
        assert_eq!(discarded(), gone, "{env:?}");
        check_pages_among(&mm, &[&mm, &child], va, 64, |_| true);
        let unmapped = get(&STATS.unmapped_shared);
        pass(&mut mm);
        assert_eq!(
            discarded(),
            gone,
            "the child still maps them: nothing freed"
        );
        assert_eq!(
            get(&STATS.unmapped_shared),
            unmapped + 64,
            "the parent's mappings"
        );
        check_pages_among(&mm, &[&mm, &child], va, 64, |_| false);
        check_pages_among(&child, &[&mm, &child], va, 64, |_| true);
        assert!(marked(&child, va), "the child still maps them");
        // The child's entries are young from the fork: a pass ages them, the next
        // one discards.
        pass(&mut child);
        pass(&mut child);
        assert_eq!(discarded(), gone + 64, "the child's, the last mappings");
        check_pages_among(&child, &[&mm, &child], va, 64, |_| false);
        all_back([mm, child]);
    });
}

/// Issue 17 (the soak): with the lazyfree list at its bound, MADV_FREE discards the
/// clean folios it cannot list at once; before, they stayed as unmarked memory that no
/// reclaim could reach, and a long run ran out of memory with most of it MADV_FREE'd.
#[test]
fn lazyfree_past_the_list_bound_is_discarded_at_once() {
    each_cleaning_machine(|env| {
        let full = get(&STATS.list_full);
        let gone = discarded();
        lazyfree::set_cap(Some(2));
        let (mm, va) = four_lazyfree_folios(&env);
        lazyfree::set_cap(None);
        assert_eq!(get(&STATS.list_full), full + 2, "{env:?}");
        assert_eq!(discarded(), gone + 32, "the two folios past the bound");
        assert_eq!(lazyfree::list_len(), 2);
        check_pages(&mm, va, 64, |i| i < 32);
        all_back([mm]);
    });
}

/// Issue 17 (the soak): a fork that finds the list at its bound discards the child's
/// mappings of clean marked folios at once; the parent keeps them marked and listed,
/// so a reclaim pass frees them. Before, the fork dropped the marks and the memory
/// could never be reclaimed.
#[test]
fn lazyfree_fork_past_the_list_bound_discards_the_childs_mapping() {
    each_cleaning_machine(|env| {
        let (mut mm, va) = four_lazyfree_folios(&env);
        let unlisted = get(&STATS.fork_unlisted);
        lazyfree::set_cap(Some(4));
        let child = mm.fork().unwrap();
        lazyfree::set_cap(None);
        assert_eq!(get(&STATS.fork_unlisted), unlisted + 4, "{env:?}");
        assert!(marked(&mm, va), "the parent keeps the marks");
        check_pages_among(&child, &[&mm, &child], va, 64, |_| false);
        check_pages_among(&mm, &[&mm, &child], va, 64, |_| true);
        let gone = discarded();
        pass(&mut mm);
        pass(&mut mm);
        assert_eq!(discarded(), gone + 64, "reclaim reaches every folio");
        check_pages_among(&mm, &[&mm, &child], va, 64, |_| false);
        all_back([mm, child]);
    });
}

/// Issue 17, defect 1: a folio the parent wrote after MADV_FREE and before fork keeps
/// its data in both (the child's entries are made clean, so the fork drops the mark).
#[test]
fn lazyfree_written_before_fork_is_kept_in_both() {
    each_cleaning_machine(|env| {
        let (mut mm, va) = four_lazyfree_folios(&env);
        store(&mut mm, va, 0);
        store(&mut mm, va, 16);
        let unmarked = get(&STATS.fork_unmarked);
        let mut child = mm.fork().unwrap();
        assert_eq!(get(&STATS.fork_unmarked), unmarked + 2, "{env:?}");
        for _ in 0..2 {
            pass(&mut child);
            pass(&mut mm);
        }
        let kept = |i: usize| i < 32;
        check_pages_among(&child, &[&mm, &child], va, 64, kept);
        check_pages_among(&mm, &[&mm, &child], va, 64, kept);
        all_back([mm, child]);
    });
}

/// Issue 17, defect 2: T marks, forks B and unmaps its copy; B writes one word per
/// folio (reusing it) and MADV_FREEs again. The mark was never cleared, so that call
/// lists nothing, and T's entries name a mapping that is gone: B's entries from the
/// fork are what lets a pass discard the folios (the audit checks that every mapping
/// of a marked folio has its entry).
#[test]
fn lazyfree_of_a_fork_child_after_the_parent_unmapped_is_discarded() {
    each_cleaning_machine(|env| {
        let (mut t, va) = four_lazyfree_folios(&env);
        let mut b = t.fork().unwrap();
        t.munmap(va, va.add(4 * CONT_SIZE)).unwrap();
        for k in 0..4 {
            store(&mut b, va, 16 * k);
        }
        assert!(marked(&b, va), "{env:?}: reused, still marked");
        b.madvise(va, va.add(4 * CONT_SIZE), MADV_FREE).unwrap();
        audit::check([&t, &b].into_iter()).expect("every mapping listed");
        let gone = discarded();
        pass(&mut b);
        assert_eq!(discarded(), gone + 64, "{env:?}");
        check_pages_among(&b, &[&t, &b], va, 64, |_| false);
        all_back([t, b]);
    });
}

/// Unmapped lazyfree folios leave no entries behind once they may be half the list:
/// a later move's walk of the list (`follow_range`) is not paid for memory long gone
/// (bench_mm: the 16384 stale entries of an unmapped 64 MiB of 4 KiB folios made each
/// later 64 MiB mremap 13 times dearer, and the figure depend on which benchmarks ran
/// before it).
#[test]
fn unmapped_lazyfree_folios_leave_no_stale_entries() {
    each_cleaning_machine(|env| {
        let (mut mm, va) = four_lazyfree_folios(&env);
        assert_eq!(lazyfree::list_len(), 4);
        mm.munmap(va, va.add(2 * CONT_SIZE)).unwrap();
        assert_eq!(lazyfree::list_len(), 2, "{env:?}: half the list was stale");
        mm.munmap(va.add(2 * CONT_SIZE), va.add(4 * CONT_SIZE))
            .unwrap();
        assert_eq!(lazyfree::list_len(), 0, "{env:?}");
        all_back([mm]);
    });
}

/// The address space the reclaim passes of the next tests reach through their owner
/// hook, behind the lock it only tries (as the process layer's `Mm` lock).
static OWNER: std::sync::Mutex<Option<Mm<HostMachine>>> = std::sync::Mutex::new(None);
/// How long the hook holds `OWNER` before it acts (a slow CPU), in milliseconds.
static OWNER_DELAY_MS: AtomicU64 = AtomicU64::new(0);
/// Set while the hook holds `OWNER`.
static OWNER_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Calls of the hook.
static OWNER_CALLS: AtomicU64 = AtomicU64::new(0);
/// Set by a test right before its fault: the hook holds the owner at least until then
/// (bounded), so that a loaded host cannot let the fault miss the window.
static FAULTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Puts the owner hook's state back as a test found it, also when the test fails: an
/// owner left installed (a failed assertion before the test took it back) and
/// `FAULTING` left false made every later pass of the suite wait 30 s in the hook
/// for each entry of another address space, which hung the host suite.
struct OwnerReset;

impl Drop for OwnerReset {
    fn drop(&mut self) {
        FAULTING.store(true, Ordering::Release);
        OWNER_DELAY_MS.store(0, Ordering::Relaxed);
        let left = OWNER.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(left);
    }
}

/// The owner hook of these tests: `OWNER`'s lock tried, held `OWNER_DELAY_MS` before
/// the entry is acted on. With no owner installed it answers busy, as the host's
/// missing hook does (the hook stays installed for later tests).
fn owner_hook(e: crate::mm::lazyfree::Entry, patient: bool) -> Option<crate::mm::lazyfree::Visit> {
    // A patient caller holds no `Mm`: it may wait a bounded while, as the kernel's hook.
    let patience = std::time::Duration::from_millis(if patient { 5000 } else { 0 });
    let deadline = std::time::Instant::now() + patience;
    let mut g = loop {
        match OWNER.try_lock() {
            Ok(g) => break g,
            Err(_) if std::time::Instant::now() < deadline => std::thread::yield_now(),
            Err(_) => return None,
        }
    };
    let mm = g.as_mut()?;
    OWNER_CALLS.fetch_add(1, Ordering::Relaxed);
    OWNER_HELD.store(true, Ordering::Release);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !FAULTING.load(Ordering::Acquire) && std::time::Instant::now() < until {
        std::thread::yield_now();
    }
    let delay = OWNER_DELAY_MS.load(Ordering::Relaxed);
    std::thread::sleep(std::time::Duration::from_millis(delay));
    let v = mm.reclaim_entry(e);
    OWNER_HELD.store(false, Ordering::Release);
    Some(v)
}

/// Issue 17, defect 5: a fault finds memory exhausted while the reclaim thread holds
/// the address space whose clean lazyfree folios it is discarding: direct reclaim must
/// wait for it and take what it frees, not kill the faulting process.
#[test]
fn direct_reclaim_waits_for_the_reclaim_thread_holding_the_owner() {
    each_machine_in(&[ContMode::On], |env| {
        let _reset = OwnerReset;
        let (b, va) = four_lazyfree_folios(&env);
        *OWNER.lock().unwrap() = Some(b);
        OWNER_DELAY_MS.store(100, Ordering::Relaxed);
        FAULTING.store(false, Ordering::Release);
        reclaim::set_owner_hook(owner_hook);
        let mut a = Mm::new_in(&env).unwrap();
        // The first 64 KiB mapped, so that its table exists: the fault in the second
        // needs a folio and nothing else.
        let at = region(&mut a, 2 * CONT_SIZE, CONT_SIZE);
        write_pages(&mut a, at, 0..1);
        let kswapd = std::thread::spawn(|| {
            reclaim::pass::<HostMachine>(None, usize::MAX, true, reclaim::Reclaimer::Kswapd)
        });
        // Bounded: a pass that never reaches the owner fails the test, not hangs it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !OWNER_HELD.load(Ordering::Acquire) {
            assert!(
                std::time::Instant::now() < deadline,
                "{env:?}: the reclaim pass never reached the owner of the lazyfree folios"
            );
            std::thread::yield_now();
        }
        let hoard: Vec<_> = core::iter::from_fn(|| frames().alloc(0)).collect();
        FAULTING.store(true, Ordering::Release);
        let r = a.handle_fault(at.add(CONT_SIZE), Access::Write);
        kswapd.join().unwrap();
        for &pa in &hoard {
            frames().free(pa, 0);
        }
        let b = OWNER.lock().unwrap().take().unwrap();
        assert_eq!(
            r,
            Ok(()),
            "{env:?}: killed while the reclaim thread was freeing"
        );
        check_pages_among(&b, &[&a, &b], va, 64, |_| false);
        all_back([a, b]);
    });
}

/// A fault runs out of memory while the owner of the clean lazyfree folios that would
/// satisfy it is busy in a system call: its direct reclaim (it holds its own `Mm`) only
/// tries that owner and gives up; the pass it then runs with its lock dropped
/// (`reclaim::unlocked`, the process layer's retry, Linux's VM_FAULT_RETRY) waits for
/// the owner, frees the folios, and the fault goes again and succeeds.
#[test]
fn a_fault_out_of_memory_retries_after_an_unlocked_patient_pass() {
    each_machine_in(&[ContMode::On], |env| {
        let _reset = OwnerReset;
        let (b, va) = four_lazyfree_folios(&env);
        *OWNER.lock().unwrap() = Some(b);
        OWNER_DELAY_MS.store(0, Ordering::Relaxed);
        reclaim::set_owner_hook(owner_hook);
        let mut a = Mm::new_in(&env).unwrap();
        let at = region(&mut a, 2 * CONT_SIZE, CONT_SIZE);
        write_pages(&mut a, at, 0..1);
        let hoard: Vec<_> = core::iter::from_fn(|| frames().alloc(0)).collect();
        // The owner busy (a system call holding its lock) until told, then for 20 ms
        // more: a loaded host must not let the first fault find it free.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let busy = std::thread::spawn(move || {
            let _g = OWNER.lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = go_rx.recv();
            std::thread::sleep(std::time::Duration::from_millis(20));
        });
        held_rx.recv().unwrap();
        let first = a.handle_fault(at.add(CONT_SIZE), Access::Write);
        go_tx.send(()).unwrap();
        assert_eq!(
            first,
            Err(FaultError::Oom),
            "{env:?}: direct reclaim only tries"
        );
        assert!(
            reclaim::unlocked::<HostMachine>(16),
            "{env:?}: the unlocked pass waited for the owner and freed its folios"
        );
        let again = a.handle_fault(at.add(CONT_SIZE), Access::Write);
        busy.join().unwrap();
        for &pa in &hoard {
            frames().free(pa, 0);
        }
        let b = OWNER.lock().unwrap().take().unwrap();
        assert_eq!(again, Ok(()), "{env:?}: the retried fault");
        check_pages_among(&b, &[&a, &b], va, 64, |_| false);
        all_back([a, b]);
    });
}

/// Hook calls at the last yield, and the most between two yields.
static CALLS_AT_YIELD: AtomicU64 = AtomicU64::new(0);
static MOST_BETWEEN_YIELDS: AtomicU64 = AtomicU64::new(0);
static YIELDS: AtomicU64 = AtomicU64::new(0);

/// The reclaim thread's yield in the next test: counted, with the work done since the
/// last one.
fn count_yield() {
    let calls = OWNER_CALLS.load(Ordering::Relaxed);
    let since = calls - CALLS_AT_YIELD.swap(calls, Ordering::Relaxed);
    MOST_BETWEEN_YIELDS.fetch_max(since, Ordering::Relaxed);
    YIELDS.fetch_add(1, Ordering::Relaxed);
}

/// Issue 17, defect 3 (the reclaim thread's part): however long the lazyfree list, the
/// reclaim thread gives the CPU away after at most 256 entries. 1024 young 4 KiB
/// folios under the high watermark: four steps age them, the next ones discard.
#[test]
fn reclaim_thread_yields_after_bounded_work() {
    let _m = host::machine();
    let env = HostMachine {
        features: super::collapse::HW,
        mode: ContMode::On,
    };
    only(&[]);
    const N: usize = 1024;
    let mut b = Mm::new_in(&env).unwrap();
    let va = region(&mut b, N * PAGE_SIZE, PMD_SIZE);
    write_pages(&mut b, va, 0..N);
    b.madvise(va, va.add(N * PAGE_SIZE), MADV_FREE).unwrap();
    cpu_accesses(&b, va, N, AccessKind::Read);
    assert_eq!(crate::mm::lazyfree::list_len(), N);
    let _reset = OwnerReset;
    *OWNER.lock().unwrap() = Some(b);
    OWNER_DELAY_MS.store(0, Ordering::Relaxed);
    reclaim::set_owner_hook(owner_hook);
    let managed = frames().managed_frames();
    let hoard: Vec<_> = core::iter::from_fn(|| frames().alloc(0))
        .take(frames().free_frames() - managed / 64)
        .collect();
    let gone = discarded();
    CALLS_AT_YIELD.store(OWNER_CALLS.load(Ordering::Relaxed), Ordering::Relaxed);
    MOST_BETWEEN_YIELDS.store(0, Ordering::Relaxed);
    YIELDS.store(0, Ordering::Relaxed);
    reclaim::kswapd_balance::<HostMachine>(count_yield);
    count_yield();
    for &pa in &hoard {
        frames().free(pa, 0);
    }
    let b = OWNER.lock().unwrap().take().unwrap();
    let freed = discarded() - gone;
    assert!(
        freed as usize >= managed / 32 - managed / 64,
        "freed {freed} pages: not up to the high watermark"
    );
    assert!(
        YIELDS.load(Ordering::Relaxed) >= 5,
        "{} yields",
        YIELDS.load(Ordering::Relaxed)
    );
    assert!(MOST_BETWEEN_YIELDS.load(Ordering::Relaxed) <= 256);
    all_back([b]);
}

/// Issue 17, exhaustion: a fault whose page needs a new table, with every frame taken
/// and clean lazyfree memory left, reclaims for the table too instead of failing with
/// ENOMEM (seen as a populate's ENOMEM followed by a write that succeeded).
#[test]
fn a_fault_reclaims_for_its_table() {
    each_cleaning_machine(|env| {
        let (mut mm, va) = four_lazyfree_folios(&env);
        // 2 MiB away: no table there yet.
        let far = va.align_down(PMD_SIZE).add(2 * PMD_SIZE);
        mm.mmap(
            far.as_u64(),
            CONT_SIZE as u64,
            VmProt::READ_WRITE,
            MAP_FIXED,
        )
        .expect("mmap");
        // A reclaim thread that does nothing: the watermark check only wakes it, so
        // what the fault gets is what its own direct reclaim frees, one folio at a time.
        reclaim::set_kswapd_hook(Some(|| {}));
        let hoard: Vec<_> = core::iter::from_fn(|| frames().alloc(0)).collect();
        let r = mm.handle_fault(far, Access::Write);
        reclaim::set_kswapd_hook(None);
        for &pa in &hoard {
            frames().free(pa, 0);
        }
        assert_eq!(r, Ok(()), "{env:?}: ENOMEM with lazyfree memory left");
        all_back([mm]);
    });
}
