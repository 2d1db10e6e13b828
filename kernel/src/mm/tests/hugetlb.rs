//! hugetlb (`mm::hugetlb`): the pools' counters under Linux's rules, their frames
//! taken from and given back to the allocator, and the boot line.

use std::string::{String, ToString};
use std::vec::Vec;

use super::super::frame::frames;
use super::super::host;
use super::super::hugetlb::{self, parse_boot, BootRequest, Figures, SIZES};
use crate::cmdline::CmdLine;
use crate::uapi::{EINVAL, ENOMEM};

const K64: hugetlb::HugeSize = SIZES[0];
const M2: hugetlb::HugeSize = SIZES[1];
const M32: hugetlb::HugeSize = SIZES[2];

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
    // The simulated RAM is 32 MiB: one 32 MiB page at most, none once a frame is taken.
    hugetlb::pool(M32).set_persistent(2);
    assert_eq!(figures(M32).nr, 1);
    hugetlb::pool(M32).set_persistent(0);
    let page = frames().alloc(0).expect("a frame");
    hugetlb::pool(M32).set_persistent(1);
    assert_eq!(figures(M32).nr, 0);
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
