//! hugetlb (`mm::hugetlb`): the pools' counters under Linux's rules, their frames
//! taken from and given back to the allocator, the boot line; the mappings' faults,
//! reservations, fork, munmap, mprotect, MADV_DONTNEED and mremap.

use std::string::{String, ToString};
use std::sync::MutexGuard;
use std::vec::Vec;

use super::collapse::{env, leaf};
use super::*;
use crate::cmdline::CmdLine;
use crate::mm::hugetlb::map::HugeSource;
use crate::mm::hugetlb::{self, parse_boot, BootRequest, Figures, HugeSize, SIZES};
use crate::mm::PhysAddr;
use crate::uapi::{
    Errno, EINVAL, ENOMEM, MAP_ANONYMOUS, MAP_HUGETLB, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED,
};

const K64: HugeSize = SIZES[0];
const M2: HugeSize = SIZES[1];
const M32: HugeSize = SIZES[2];

/// Figures in the order of the sysfs files: nr, free, resv, surplus, overcommit.
fn f(nr: usize, free: usize, resv: usize, surplus: usize, overcommit: usize) -> Figures {
    Figures {
        nr,
        free,
        resv,
        surplus,
        overcommit,
    }
}

fn figures(size: hugetlb::HugeSize) -> Figures {
    hugetlb::pool(size).figures()
}

#[test]
fn growing_takes_frames_and_shrinking_gives_them_back() {
    let _m = host::machine();
    let all = frames().free_frames();
    hugetlb::pool(M2).set_persistent(3);
    assert_eq!(figures(M2), f(3, 3, 0, 0, 0));
    assert_eq!(frames().free_frames(), all - 3 * 512);
    assert_eq!(hugetlb::free_frames(), 3 * 512);
    hugetlb::pool(M2).set_persistent(1);
    assert_eq!(figures(M2).nr, 1);
    assert_eq!(frames().free_frames(), all - 512);
    hugetlb::pool(M2).set_persistent(0);
    assert_eq!(frames().free_frames(), all);
    assert_eq!(hugetlb::total_kb(), 0);
}

#[test]
fn a_pool_grows_as_far_as_memory_allows_without_failing() {
    let _m = host::machine();
    // The simulated RAM holds three 32 MiB pages, two once a frame is taken.
    let most = host::RAM_FRAMES / 8192;
    hugetlb::pool(M32).set_persistent(most + 1);
    assert_eq!(figures(M32).nr, most);
    hugetlb::pool(M32).set_persistent(0);
    let page = frames().alloc(0).expect("a frame");
    hugetlb::pool(M32).set_persistent(most);
    assert_eq!(figures(M32).nr, most - 1);
    hugetlb::pool(M32).set_persistent(0);
    frames().free(page, 0);
    hugetlb::pool(K64).set_persistent(usize::MAX);
    assert_eq!(figures(K64).nr, host::RAM_FRAMES / 16);
    assert_eq!(frames().free_frames(), 0);
    hugetlb::pool(K64).set_persistent(0);
    assert_eq!(frames().free_frames(), host::RAM_FRAMES);
}

#[test]
fn reservations_hold_pages_and_shrinking_keeps_them_as_surplus() {
    let _m = host::machine();
    let mut p = hugetlb::pool(M2);
    p.set_persistent(4);
    p.reserve(3).expect("3 of 4 free");
    assert_eq!(
        p.reserve(2),
        Err(ENOMEM),
        "1 unreserved page left, no overcommit"
    );
    let a = p.take(true).expect("a reserved page");
    let b = p.take(false).expect("the unreserved page");
    assert_eq!(p.take(false), None, "the other free pages are reserved");
    assert_eq!(p.figures(), f(4, 2, 2, 0, 0));
    // Two pages in use and two reserved: the pool cannot shrink below 4, so the pages
    // beyond the persistent size of 0 become surplus.
    p.set_persistent(0);
    assert_eq!(p.figures(), f(4, 2, 2, 4, 0));
    p.give_back(a);
    p.unreserve(2);
    assert_eq!(p.figures(), f(1, 0, 0, 1, 0));
    p.give_back(b);
    assert_eq!(p.figures(), f(0, 0, 0, 0, 0));
    drop(p);
    assert_eq!(frames().free_frames(), frames().managed_frames());
}

#[test]
fn overcommit_allocates_surplus_pages_for_reservations() {
    let _m = host::machine();
    let mut p = hugetlb::pool(M2);
    p.set_persistent(1);
    assert_eq!(p.reserve(3), Err(ENOMEM));
    p.set_overcommit(2)
        .expect("2 MiB pages may be overcommitted");
    p.reserve(3).expect("1 free + 2 surplus");
    assert_eq!(p.figures(), f(3, 3, 3, 2, 2));
    // Unreserved surplus pages go straight back.
    p.unreserve(3);
    assert_eq!(p.figures(), f(1, 1, 0, 0, 2));
    // A fault without a reservation may take a surplus page too, within the limit.
    let pages: Vec<_> = (0..3).map_while(|_| p.take(false)).collect();
    assert_eq!(pages.len(), 3);
    assert_eq!(p.figures().surplus, 2);
    for pa in pages {
        p.give_back(pa);
    }
    assert_eq!(p.figures(), f(1, 1, 0, 0, 2));
    // Raising the persistent size turns surplus pages into persistent ones first.
    p.reserve(2).expect("1 free + 1 surplus");
    p.set_persistent(2);
    assert_eq!(p.figures(), f(2, 2, 2, 0, 2));
    p.unreserve(2);
    p.set_persistent(0);
    drop(p);
    assert_eq!(
        hugetlb::pool(M32).set_overcommit(1),
        Err(EINVAL),
        "gigantic pages"
    );
    assert_eq!(frames().free_frames(), frames().managed_frames());
}

fn boot(line: &str) -> (BootRequest, Vec<String>) {
    let cmd = CmdLine::parse(line);
    let mut warnings = Vec::new();
    let req = parse_boot(&cmd, |w| warnings.push(w.to_string()));
    (req, warnings)
}

#[test]
fn the_boot_line_is_read_as_linux_reads_it() {
    let (req, w) = boot("hugepages=3 hugepagesz=64K hugepages=16 hugepagesz=32M hugepages=1");
    assert_eq!(req.counts, [Some(16), Some(3), Some(1)]);
    assert_eq!(req.default, None);
    assert!(w.is_empty(), "{w:?}");
    // A count before any size goes to the default size, wherever that is set.
    let (req, _) = boot("hugepages=2 default_hugepagesz=64k");
    assert_eq!((req.counts, req.default), ([Some(2), None, None], Some(0)));
    let (req, _) = boot("default_hugepagesz=32M hugepages=1");
    assert_eq!((req.counts, req.default), ([None, None, Some(1)], Some(2)));
    // What Linux warns about, and ignores.
    let (req, w) =
        boot("hugepagesz=1G hugepages=1 hugepagesz=4K hugepagesz=2M hugepages=1 hugepages=5");
    assert_eq!(req.counts, [None, Some(1), None]);
    assert_eq!(
        w,
        [
            "HugeTLB: unsupported hugepagesz=1G",
            "HugeTLB: hugepages=1 does not follow a valid hugepagesz, ignoring",
            "HugeTLB: unsupported hugepagesz=4K",
            "HugeTLB: hugepages= specified twice without interleaving hugepagesz=, ignoring hugepages=5",
        ]
    );
    let (req, w) =
        boot("hugepagesz=2M hugepagesz=2M hugepages=7 default_hugepagesz=x default_hugepagesz=");
    assert_eq!(req, BootRequest::default());
    assert_eq!(
        w,
        [
            "HugeTLB: hugepagesz=2M specified twice, ignoring",
            "HugeTLB: hugepages=7 does not follow a valid hugepagesz, ignoring",
            "HugeTLB: unsupported default_hugepagesz=x",
            "HugeTLB: unsupported default_hugepagesz=",
        ]
    );
    // Counts too large for the machine are no error: the pool grows as far as it can.
    let (req, w) = boot("hugepages=99999999999999999999999 hugepages");
    assert_eq!(req.counts[1], Some(usize::MAX));
    assert_eq!(w.len(), 1);
}

#[test]
fn count_files_take_decimal_numbers_only() {
    assert_eq!(hugetlb::parse_count("12\n"), Ok(12));
    assert_eq!(hugetlb::parse_count("12"), Ok(12));
    for bad in ["", "-1", "1x", "0x10", "12\n\n", " 3"] {
        assert_eq!(hugetlb::parse_count(bad), Err(EINVAL), "{bad:?}");
    }
}

// Mappings (`mm::hugetlb::map`): every test checks the audit after its steps and ends
// with every frame back once the pools are emptied.

const VA: VirtAddr = VirtAddr(0x4000_0000);
const FLAGS: u64 = MAP_ANONYMOUS | MAP_HUGETLB | MAP_FIXED;

/// A fresh machine with `pages` pages in the pool of `size`, and an address space.
fn mapping_setup(size: HugeSize, pages: usize) -> (MutexGuard<'static, ()>, Mm<HostMachine>) {
    let m = host::machine();
    hugetlb::pool(size).set_persistent(pages);
    assert_eq!(figures(size).nr, pages);
    (m, Mm::new_in(&env()).unwrap())
}

fn map(
    mm: &mut Mm<HostMachine>,
    size: HugeSize,
    pages: usize,
    shared: bool,
) -> Result<VirtAddr, Errno> {
    let kind = if shared { MAP_SHARED } else { MAP_PRIVATE };
    mm.mmap_hugetlb(
        VA.as_u64(),
        (pages * size.bytes()) as u64,
        VmProt::READ_WRITE,
        FLAGS | kind,
        shared,
        HugeSource::Anon(size),
    )
}

/// Write `byte` at `va` through `mm` (faulting as the CPU would); the frame written.
fn store(mm: &mut Mm<HostMachine>, va: VirtAddr, byte: u8) -> PhysAddr {
    mm.handle_fault(va, Access::Write).expect("write fault");
    let l = leaf(mm, va);
    assert!(l.pte.is_writable(), "{va:?} not writable after the fault");
    host::write_byte(l.pa_of(va), byte);
    l.pa_of(va)
}

fn load(mm: &mut Mm<HostMachine>, va: VirtAddr) -> u8 {
    mm.handle_fault(va, Access::Read).expect("read fault");
    host::read_byte(leaf(mm, va).pa_of(va))
}

/// The audit of `mms`, then every address space dropped, the pools emptied, and every
/// frame back in the allocator.
fn finish(mms: impl IntoIterator<Item = Mm<HostMachine>>) {
    let mms: Vec<_> = mms.into_iter().collect();
    audit::check(mms.iter()).expect("audit");
    drop(mms);
    for s in SIZES {
        let f = figures(s);
        assert_eq!(
            (f.nr, f.free, f.resv),
            (f.nr, f.nr, 0),
            "{} kB pool after the last unmap",
            s.kb()
        );
        hugetlb::pool(s).set_persistent(0);
    }
    assert_eq!(frames().free_frames(), frames().managed_frames());
}

#[test]
fn a_fault_maps_the_whole_page_at_its_level_and_munmap_gives_it_back() {
    for (size, level, cont) in [(K64, 3, true), (M2, 2, false)] {
        let (_m, mut mm) = mapping_setup(size, 2);
        let va = map(&mut mm, size, 2, false).expect("mmap");
        assert_eq!(
            figures(size),
            f(2, 2, 2, 0, 0),
            "both pages reserved at mmap"
        );
        let last = va.add(size.bytes() + size.bytes() / 2);
        let pa = store(&mut mm, last, 7);
        let l = leaf(&mm, va.add(size.bytes()));
        assert_eq!(
            (l.level, l.pte.is_cont()),
            (level, cont),
            "{} kB",
            size.kb()
        );
        // The whole page is mapped, one frame run, from its head.
        assert_eq!(l.pa_of(va.add(size.bytes())).add(size.bytes() / 2), pa);
        assert!(
            mm.tables.get(va).is_none(),
            "the other page is not faulted in"
        );
        assert_eq!(figures(size), f(2, 1, 1, 0, 0));
        assert_eq!(load(&mut mm, last), 7);
        audit::check([&mm].into_iter()).expect("audit");
        // smaps: the page size, one page as private hugetlb memory, none in Rss.
        let smaps = mm.smaps();
        let line =
            |name: &str, kb: usize| std::format!("{:<16}{kb:>8} kB", std::format!("{name}:"));
        for (name, kb) in [
            ("KernelPageSize", size.kb()),
            ("Private_Hugetlb", size.kb()),
            ("Rss", 0),
        ] {
            assert!(
                smaps.contains(&line(name, kb)),
                "{name} {kb} kB not in\n{smaps}"
            );
        }
        // A cut inside a page is EINVAL, and changes nothing.
        let half = va.add(size.bytes() / 2);
        assert_eq!(mm.munmap(va, half), Err(EINVAL));
        assert_eq!(mm.munmap(half, va.add(2 * size.bytes())), Err(EINVAL));
        assert_eq!(
            mm.mprotect(half, va.add(size.bytes()), VmProt::READ),
            Err(EINVAL)
        );
        assert_eq!(load(&mut mm, last), 7);
        // The faulted page goes back to the pool, the other's reservation too.
        mm.munmap(va, va.add(2 * size.bytes())).expect("munmap");
        assert_eq!(figures(size), f(2, 2, 0, 0, 0));
        finish([mm]);
    }
}

#[test]
fn mmap_is_enomem_when_the_pool_is_short_and_noreserve_is_sigbus_at_the_fault() {
    let (_m, mut mm) = mapping_setup(M2, 1);
    assert_eq!(map(&mut mm, M2, 2, false), Err(ENOMEM));
    assert_eq!(map(&mut mm, M2, 2, true), Err(ENOMEM));
    assert_eq!(figures(M2), f(1, 1, 0, 0, 0), "nothing reserved");
    assert!(mm.vmas.is_empty());
    let va = mm
        .mmap_hugetlb(
            VA.as_u64(),
            (2 * M2.bytes()) as u64,
            VmProt::READ_WRITE,
            FLAGS | MAP_PRIVATE | MAP_NORESERVE,
            false,
            HugeSource::Anon(M2),
        )
        .expect("MAP_NORESERVE reserves nothing");
    store(&mut mm, va, 1);
    assert_eq!(
        mm.handle_fault(va.add(M2.bytes()), Access::Write),
        Err(FaultError::Bus)
    );
    finish([mm]);
}

#[test]
fn fork_copies_a_private_page_on_write_within_the_pool() {
    for size in [K64, M2] {
        let (_m, mut mm) = mapping_setup(size, 3);
        let va = map(&mut mm, size, 1, false).expect("mmap");
        let pa = store(&mut mm, va, 1);
        let mut child = mm.fork().expect("fork");
        assert_eq!(load(&mut child, va), 1);
        assert_eq!(leaf(&child, va).pa_of(va), pa, "shared after fork");
        audit::check([&mm, &child].into_iter()).expect("audit after fork");
        // The child's write copies the whole page into a pool page of its own.
        let copy = store(&mut child, va.add(PAGE_SIZE), 2);
        assert_ne!(leaf(&child, va).pa_of(va), pa);
        assert_eq!(load(&mut child, va), 1, "the copy has the parent's data");
        assert_eq!(host::read_byte(copy), 2);
        assert_eq!(figures(size).free, 1);
        // The parent is now the page's only mapping: its write reuses it.
        assert_eq!(store(&mut mm, va, 3), pa);
        assert_eq!(figures(size).free, 1);
        assert_eq!(load(&mut child, va), 1);
        let (l, cl) = (leaf(&mm, va), leaf(&child, va));
        assert_eq!(
            (l.pte.is_cont(), cl.pte.is_cont()),
            (size == K64, size == K64)
        );
        finish([mm, child]);
    }
}

#[test]
fn a_shared_mapping_is_shared_with_a_forked_child() {
    let (_m, mut mm) = mapping_setup(K64, 2);
    let va = map(&mut mm, K64, 2, true).expect("mmap shared");
    let pa = store(&mut mm, va, 5);
    let mut child = mm.fork().expect("fork");
    assert!(
        child.tables.get(va).is_none(),
        "fork copies no entry of a shared mapping"
    );
    assert_eq!(load(&mut child, va), 5);
    assert_eq!(leaf(&child, va).pa_of(va), pa);
    store(&mut child, va.add(K64.bytes()), 6);
    assert_eq!(
        load(&mut mm, va.add(K64.bytes())),
        6,
        "the child's page is the parent's"
    );
    assert_eq!(figures(K64), f(2, 0, 0, 0, 0));
    audit::check([&mm, &child].into_iter()).expect("audit");
    drop(child);
    // The file still holds its pages: unmapping the parent's gives them back.
    assert_eq!(figures(K64).free, 0);
    finish([mm]);
}

#[test]
fn dontneed_mprotect_and_mremap_work_on_whole_pages() {
    let (_m, mut mm) = mapping_setup(M2, 2);
    let va = map(&mut mm, M2, 2, false).expect("mmap");
    store(&mut mm, va, 1);
    store(&mut mm, va.add(M2.bytes()), 2);
    // MADV_DONTNEED rounds its end down: less than a page is nothing, a page goes
    // back with its data.
    assert_eq!(
        mm.madvise(va.add(PAGE_SIZE), va.add(2 * PAGE_SIZE), MADV_DONTNEED),
        Err(EINVAL)
    );
    mm.madvise(va, va.add(PAGE_SIZE), MADV_DONTNEED)
        .expect("dontneed of less than a page");
    assert_eq!((figures(M2).free, load(&mut mm, va)), (0, 1));
    mm.madvise(va, va.add(M2.bytes() + PAGE_SIZE), MADV_DONTNEED)
        .expect("dontneed");
    assert_eq!(figures(M2).free, 1);
    assert_eq!(load(&mut mm, va.add(M2.bytes())), 2);
    assert_eq!(mm.madvise(va, va.add(M2.bytes()), MADV_FREE), Err(EINVAL));
    // mprotect on a page boundary splits the VMA, and the page is read-only.
    mm.mprotect(va, va.add(M2.bytes()), VmProt::READ)
        .expect("mprotect");
    assert_eq!(mm.handle_fault(va, Access::Write), Err(FaultError::Segv));
    assert_eq!(load(&mut mm, va), 0, "refaulted after MADV_DONTNEED: zeros");
    mm.mprotect(va, va.add(M2.bytes()), VmProt::READ_WRITE)
        .expect("mprotect back");
    // mremap: growth and moves are EINVAL, a shrink unmaps the tail.
    let m = |mm: &mut Mm<HostMachine>, old, new, flags| mm.mremap(va.as_u64(), old, new, flags, 0);
    let two = 2 * M2.bytes() as u64;
    assert_eq!(m(&mut mm, two, 2 * two, MREMAP_MAYMOVE), Err(EINVAL));
    assert_eq!(mm.mremap(va.as_u64() + 4096, 4096, 4096, 0, 0), Err(EINVAL));
    assert_eq!(m(&mut mm, two, two / 2, 0), Ok(va));
    assert!(mm.vmas.find(va.add(M2.bytes())).is_none());
    assert_eq!(figures(M2).free, 1);
    finish([mm]);
}

#[test]
fn a_debuggers_access_maps_and_copies_whole_pages_from_the_pool() {
    let (_m, mut mm) = mapping_setup(K64, 3);
    let va = map(&mut mm, K64, 1, false).expect("mmap");
    mm.mprotect(va, va.add(K64.bytes()), VmProt::READ)
        .expect("mprotect");
    // A forced write (/proc/self/mem) into the unmapped read-only page: the whole
    // page comes from the pool, mapped as the VMA allows.
    assert_eq!(
        mm.access_forced(va.add(PAGE_SIZE), Transfer::Write(&[4])),
        1
    );
    let l = leaf(&mm, va);
    assert!(l.pte.is_cont() && !l.pte.is_writable());
    assert_eq!(figures(K64).free, 2);
    let mut child = mm.fork().expect("fork");
    // The child's forced write copies the whole page, into the pool's next page.
    assert_eq!(child.access_forced(va, Transfer::Write(&[5])), 1);
    assert_eq!(figures(K64).free, 1);
    assert!(leaf(&child, va).pte.is_cont());
    let mut b = [0u8; 2];
    assert_eq!(child.access_forced(va, Transfer::Read(&mut b[..1])), 1);
    assert_eq!(mm.access_forced(va, Transfer::Read(&mut b[1..])), 1);
    assert_eq!(b, [5, 0]);
    assert_eq!(load(&mut child, va.add(PAGE_SIZE)), 4);
    finish([mm, child]);
}

#[test]
fn a_32m_page_is_one_level_2_contiguous_block_through_fork_mprotect_and_unmap() {
    use crate::mm::addr::{CONT_PMDS, PMD_SIZE};
    let (_m, mut mm) = mapping_setup(M32, 2);
    let va = map(&mut mm, M32, 1, false).expect("mmap");
    let pa = store(&mut mm, va.add(M32.bytes() - 1), 3);
    for i in 0..CONT_PMDS {
        let l = leaf(&mm, va.add(i * PMD_SIZE));
        assert_eq!((l.level, l.pte.is_cont()), (2, true), "block {i}");
    }
    assert_eq!(figures(M32), f(2, 1, 0, 0, 0));
    // fork shares the whole page; the child's write copies it whole.
    let mut child = mm.fork().expect("fork");
    assert!(leaf(&child, va).pte.is_cont());
    audit::check([&mm, &child].into_iter()).expect("audit after fork");
    store(&mut child, va, 4);
    assert_eq!(figures(M32).free, 0);
    assert_eq!(load(&mut child, va.add(M32.bytes() - 1)), 3);
    assert!(leaf(&child, va.add(5 * PMD_SIZE)).pte.is_cont());
    drop(child);
    // The parent's page is its own again: reused, still one contiguous block.
    assert_eq!(store(&mut mm, va.add(M32.bytes() - 1), 5), pa);
    mm.mprotect(va, va.add(M32.bytes()), VmProt::READ)
        .expect("mprotect");
    assert!(leaf(&mm, va.add(9 * PMD_SIZE)).pte.is_cont());
    assert_eq!(mm.handle_fault(va, Access::Write), Err(FaultError::Segv));
    mm.mprotect(va, va.add(M32.bytes()), VmProt::READ_WRITE)
        .expect("mprotect back");
    audit::check([&mm].into_iter()).expect("audit");
    mm.madvise(va, va.add(M32.bytes()), MADV_DONTNEED)
        .expect("dontneed");
    assert_eq!(figures(M32).free, 2);
    assert_eq!(load(&mut mm, va), 0);
    finish([mm]);
}

#[test]
fn fork_gives_the_child_a_pool_copy_of_a_pinned_page() {
    for size in [M2, M32] {
        let (_m, mut mm) = mapping_setup(size, 2);
        let va = map(&mut mm, size, 1, false).expect("mmap");
        let pa = store(&mut mm, va, 8);
        let mut pinned = [PhysAddr(0)];
        assert_eq!(mm.pin_pages(va, &mut pinned, false), Ok(1));
        assert_eq!(pinned[0], pa);
        let mut child = mm.fork().expect("fork");
        // The child's page is a copy from the pool, already its own; the parent's
        // page, pinned, stays the parent's.
        assert_eq!(figures(size).free, 0, "{} kB", size.kb());
        let cpa = leaf(&child, va).pa_of(va);
        assert_ne!(cpa, pa);
        assert_eq!(host::read_byte(cpa), 8);
        assert_eq!(
            store(&mut mm, va, 9),
            pa,
            "the parent writes its pinned page in place"
        );
        assert_eq!(load(&mut child, va), 8);
        audit::check([&mm, &child].into_iter()).expect("audit");
        crate::mm::pin::unpin(pa);
        finish([mm, child]);
    }
}

/// Random sequences over a private mapping of four pages of each size in a parent and
/// its forked children: writes, reads, forks, munmap and mprotect of whole pages,
/// MADV_DONTNEED, with every byte checked against a shadow and the audit after every
/// step; at the end every page is back in its pool.
#[test]
fn random_sequences_keep_data_pools_and_accounting() {
    for (size, pages) in [(K64, 4), (M2, 4), (M32, 1)] {
        for seed in 1..=6u64 {
            let (_m, mut first) = mapping_setup(size, if size == M32 { 2 } else { 8 });
            let va = map(&mut first, size, pages, false).expect("mmap");
            let mut mms = std::vec![first];
            // Per address space: the byte at the start of each page (None: unmapped).
            let mut shadow = std::vec![std::vec![Some(0u8); pages]];
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut next = |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n) as usize
            };
            for step in 0..40 {
                let (m, p) = (next(mms.len() as u64), next(pages as u64));
                let at = va.add(p * size.bytes());
                let page_end = at.add(size.bytes());
                match next(6) {
                    0 | 1 if shadow[m][p].is_some() => {
                        let v = (step + 1) as u8;
                        let _ = mms[m].mprotect(at, page_end, VmProt::READ_WRITE);
                        match mms[m].handle_fault(at, Access::Write) {
                            Ok(()) => {
                                host::write_byte(leaf(&mms[m], at).pa_of(at), v);
                                shadow[m][p] = Some(v);
                            }
                            // No free page for a copy: SIGBUS, nothing changed.
                            Err(e) => assert_eq!(e, FaultError::Bus),
                        }
                    }
                    2 if mms.len() < 3 => {
                        let child = mms[m].fork().expect("fork");
                        mms.push(child);
                        shadow.push(shadow[m].clone());
                    }
                    3 if shadow[m][p].is_some() => {
                        mms[m].munmap(at, page_end).expect("munmap");
                        shadow[m][p] = None;
                    }
                    4 if shadow[m][p].is_some() => {
                        mms[m]
                            .madvise(at, page_end, MADV_DONTNEED)
                            .expect("dontneed");
                        shadow[m][p] = Some(0);
                    }
                    _ => {
                        let _ = mms[m].mprotect(at, page_end, VmProt::READ);
                    }
                }
                for (i, mm) in mms.iter_mut().enumerate() {
                    for (q, want) in shadow[i].iter().enumerate() {
                        let at = va.add(q * size.bytes());
                        match want {
                            Some(v) => match mm.handle_fault(at, Access::Read) {
                                Ok(()) => assert_eq!(host::read_byte(leaf(mm, at).pa_of(at)), *v),
                                Err(e) => assert_eq!(
                                    (e, *v),
                                    (FaultError::Bus, 0),
                                    "seed {seed} step {step}"
                                ),
                            },
                            None => assert!(mm.tables.get(at).is_none()),
                        }
                    }
                }
                audit::check(mms.iter()).unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            }
            finish(mms);
        }
    }
}

#[test]
fn mremap_of_a_hugetlb_mapping_with_absurd_lengths_is_an_error() {
    let (_m, mut mm) = mapping_setup(K64, 1);
    let va = map(&mut mm, K64, 1, false).expect("mmap");
    for (old, new) in [(u64::MAX, 4096), (u64::MAX - 4095, 65536), (1 << 62, 65536)] {
        assert!(
            mm.mremap(va.as_u64(), old, new, 0, 0).is_err(),
            "{old:#x} -> {new:#x}"
        );
    }
    assert!(mm.vmas.find(va).is_some(), "the mapping is still there");
    finish([mm]);
}

/// userfaultfd on a private hugetlb mapping (UFFD_FEATURE_MISSING_HUGETLBFS): the
/// registration must cut it at page boundaries, a fault hands out the huge page's
/// address, UFFDIO_COPY fills a whole pool page and maps it as a fault would (a
/// page taken and abandoned goes back to the pool), ZEROPAGE is EINVAL; a shared
/// mapping does not register here.
#[test]
fn userfaultfd_copies_whole_pages_into_a_private_mapping() {
    use crate::mm::userfault::{uffd_huge_abandon, Fill};
    use crate::mm::vma::UffdId;
    use crate::uapi::{EEXIST, EINVAL};
    const A: UffdId = UffdId(1);
    let (_m, mut mm) = mapping_setup(M2, 3);
    let va = map(&mut mm, M2, 2, false).unwrap();
    let size = M2.bytes();
    let end = va.add(2 * size);
    assert_eq!(mm.uffd_register(A, va.add(PAGE_SIZE), end), Err(EINVAL));
    assert_eq!(
        mm.uffd_register(A, va, end.add(PAGE_SIZE)).map(|_| ()),
        Ok(())
    );
    assert_eq!(mm.uffd_register(A, va, end), Ok(true));
    assert_eq!(
        mm.handle_fault(va.add(5 * PAGE_SIZE), Access::Read),
        Err(FaultError::Userfault(A))
    );
    assert_eq!(mm.uffd_fault_page(va.add(5 * PAGE_SIZE + 8)), va);
    let head = mm.uffd_huge_take(va, end).unwrap();
    let data = std::vec![7u8; 16 * PAGE_SIZE];
    for off in (0..size).step_by(data.len()) {
        mm.uffd_huge_write(head, off, &data);
    }
    mm.uffd_huge_map(va, head).unwrap();
    assert_eq!(load(&mut mm, va.add(size - 1)), 7);
    assert_eq!(leaf(&mm, va).level, 2, "one level-2 block");
    assert_eq!(mm.uffd_huge_take(va, end), Err(EEXIST));
    assert_eq!(
        mm.uffd_huge_take(va.add(size + PAGE_SIZE), end),
        Err(EINVAL)
    );
    assert_eq!(
        mm.uffd_fill(va.add(size), 1, end, Fill::Zero),
        (0, Err(EINVAL))
    );
    let head = mm.uffd_huge_take(va.add(size), end).unwrap();
    uffd_huge_abandon(head);
    let mut other = Mm::new_in(&env()).unwrap();
    let shared = map(&mut other, M2, 1, true).unwrap();
    assert_eq!(
        other.uffd_register(A, shared, shared.add(size)),
        Err(EINVAL)
    );
    finish([mm, other]);
}

/// A hugetlb memfd (`memfd_create(MFD_HUGETLB)`, Linux's `cow` selftest's "with memfd
/// hugetlb" set-up): fallocate makes its pages; a private mapping reads the file's page
/// and a write copies it into a page of its own (from its reservation), which the
/// shared mapping never sees; a truncation unmaps the cut part everywhere, the private
/// copy too, and a fault there is SIGBUS; everything goes back to the pool.
#[test]
fn a_private_mapping_of_a_hugetlb_file_copies_on_write_and_truncation_unmaps_it() {
    // (The simulated RAM holds three 32 MiB pages, fewer than this needs.)
    for size in [K64, M2] {
        let (_m, mut mm) = mapping_setup(size, 4);
        let file = hugetlb::map::new_file(size);
        let bytes = size.bytes();
        hugetlb::map::allocate(&env(), &file, 0, 2 * bytes as u64, false).expect("fallocate");
        assert_eq!(file.length(), 2 * bytes as u64);
        assert_eq!(figures(size), f(4, 2, 0, 0, 0), "two pages made");
        let map = |mm: &mut Mm<HostMachine>, at: u64, shared: bool| {
            let kind = if shared { MAP_SHARED } else { MAP_PRIVATE };
            let flags = MAP_FIXED | kind;
            let src = HugeSource::File(file.clone(), 0);
            mm.mmap_hugetlb(at, 2 * bytes as u64, VmProt::READ_WRITE, flags, shared, src)
                .expect("mmap of the file")
        };
        let private = map(&mut mm, VA.as_u64(), false);
        let shared = map(&mut mm, VA.as_u64() + 4 * bytes as u64, true);
        assert_eq!(
            figures(size).resv,
            2,
            "the private mapping reserves its copies"
        );
        let page = store(&mut mm, shared, 7);
        store(&mut mm, shared.add(PAGE_SIZE), 5);
        assert_eq!(
            load(&mut mm, private),
            7,
            "the private mapping reads the file"
        );
        assert_eq!(leaf(&mm, private).pa_of(private), page, "the file's page");
        let copy = store(&mut mm, private, 9);
        assert_ne!(copy, page, "a write copies the file's page");
        assert_eq!(load(&mut mm, shared), 7, "the file is not written");
        assert_eq!(
            load(&mut mm, private.add(PAGE_SIZE)),
            5,
            "the copy has the page's bytes"
        );
        assert_eq!(figures(size).resv, 1, "the copy took its reservation");
        audit::check([&mm].into_iter()).expect("audit");
        // Truncate to one page: the second page goes from every mapping.
        let second = shared.add(bytes);
        store(&mut mm, second, 3);
        let cut = file.set_len(bytes as u64);
        mm.hugetlb_unmap_file_range(&file, bytes as u64, u64::MAX)
            .unwrap();
        file.put_pages(cut);
        assert!(mm.tables.get(second).is_none(), "the cut page is unmapped");
        assert_eq!(mm.handle_fault(second, Access::Read), Err(FaultError::Bus));
        assert_eq!(
            mm.handle_fault(private.add(bytes), Access::Write),
            Err(FaultError::Bus)
        );
        assert_eq!(load(&mut mm, private), 9, "the first page's copy stays");
        audit::check([&mm].into_iter()).expect("audit");
        drop(mm);
        drop(file);
        assert_eq!(
            figures(size),
            f(4, 4, 0, 0, 0),
            "every page back in the pool"
        );
        hugetlb::pool(size).set_persistent(0);
    }
}

/// A hole punched in a hugetlb file (fallocate PUNCH_HOLE, MADV_REMOVE): the whole pages
/// in it leave the file and every mapping, a partial page at either end stays, and a
/// later fault makes a fresh zeroed page.
#[test]
fn a_hole_punched_in_a_hugetlb_file_unmaps_its_whole_pages() {
    let size = K64;
    let (_m, mut mm) = mapping_setup(size, 4);
    let file = hugetlb::map::new_file(size);
    let bytes = size.bytes() as u64;
    hugetlb::map::allocate(&env(), &file, 0, 3 * bytes, false).unwrap();
    let flags = MAP_FIXED | MAP_SHARED;
    let va = mm
        .mmap_hugetlb(
            VA.as_u64(),
            3 * bytes,
            VmProt::READ_WRITE,
            flags,
            true,
            HugeSource::File(file.clone(), 0),
        )
        .unwrap();
    for i in 0..3 {
        store(&mut mm, va.add(i * bytes as usize), i as u8 + 1);
    }
    // The hole covers page 1 whole and half of page 2.
    let pages = file.take_range(1, 2);
    mm.hugetlb_unmap_file_range(&file, bytes, 2 * bytes)
        .unwrap();
    file.put_pages(pages);
    assert_eq!(load(&mut mm, va), 1);
    assert_eq!(load(&mut mm, va.add(bytes as usize)), 0, "a fresh page");
    assert_eq!(load(&mut mm, va.add(2 * bytes as usize)), 3);
    audit::check([&mm].into_iter()).expect("audit");
    drop(mm);
    drop(file);
    assert_eq!(figures(size), f(4, 4, 0, 0, 0));
    hugetlb::pool(size).set_persistent(0);
}

/// mlock of part of a huge page (found by the property tests: the lock split the VMA
/// inside the page, and the exit's unmap of that piece, EINVAL, panicked the kernel).
/// Linux passes a hugetlb VMA by (`mlock_fixup`): no split, no lock, but the range is
/// populated; munlock and mlockall likewise; MAP_LOCKED populates and locks nothing.
#[test]
fn mlock_of_part_of_a_huge_page_splits_nothing_and_populates_it() {
    let (_m, mut mm) = mapping_setup(K64, 4);
    let va = map(&mut mm, K64, 2, false).unwrap();
    mm.mlock(va, va.add(PAGE_SIZE), Some(Lock::Populate))
        .expect("mlock of a hugetlb page's first 4 KiB");
    assert_eq!(mm.vmas.iter().count(), 1, "the VMA is not split");
    assert!(
        !mm.vmas.find(va).unwrap().flags.locked,
        "a hugetlb VMA is never locked"
    );
    assert!(mm.tables.get(va).is_some(), "the page is populated");
    assert!(
        mm.tables.get(va.add(K64.bytes())).is_none(),
        "only the range's page"
    );
    mm.mlock(va, va.add(PAGE_SIZE), None).expect("munlock");
    mm.mlockall(crate::uapi::MCL_CURRENT).expect("mlockall");
    assert!(
        mm.tables.get(va.add(K64.bytes())).is_some(),
        "mlockall populates it all"
    );
    assert_eq!(mm.locked_bytes(), 0);
    mm.mlockall(0).unwrap();
    mm.mlockall(crate::uapi::MCL_FUTURE).unwrap();
    let locked = map(&mut mm, K64, 1, true).unwrap();
    assert!(
        mm.tables.get(locked).is_some(),
        "MCL_FUTURE populates a new hugetlb mapping"
    );
    assert!(!mm.vmas.find(locked).unwrap().flags.locked);
    drop(mm);
    assert_eq!(figures(K64), f(4, 4, 0, 0, 0));
    hugetlb::pool(K64).set_persistent(0);
}
