//! One sequence per class of bug the property tests find, run on every ContMode with
//! software and hardware dirty state, `cow=page` and `cow=folio`.

use super::*;

/// 64 KiB folios (order 4) and 2 MiB folios on, every other size off.
const SIZES: [SizeSetting; 8] = {
    let mut s = [SizeSetting::Never; 8];
    s[4 - 2] = SizeSetting::Always;
    s[9 - 2] = SizeSetting::Always;
    s
};

fn each_config(ops: &[Op]) {
    for mode in [ContMode::On, ContMode::Off, ContMode::Naive] {
        for hw in [false, true] {
            for cow_folio in [false, true] {
                let cfg = Config {
                    mode,
                    features: Features {
                        hw_af: hw,
                        hw_dirty: hw,
                        range_tlbi: hw,
                        bbml2: false,
                    },
                    cow_folio,
                    sizes: SIZES,
                };
                if let Err(e) = run(cfg, ops) {
                    panic!("{cfg:?}: {e}");
                }
            }
        }
    }
}

/// `page` pages into the first VMA.
fn first(page: usize) -> At {
    At {
        vma: 0,
        page,
        align: 1,
    }
}

/// The mprotect-after-fork leak: after fork the parent makes its (shared) memory
/// read-only and writable again; mprotect must not make the shared pages writable, or
/// the parent's next store lands in the child's memory.
#[test]
fn mprotect_after_fork_keeps_shared_pages_read_only() {
    let ops = [
        Op::Mmap {
            mm: 0,
            page: 0,
            align: 16,
            pages: 16,
            prot: P::Rw,
            populate: false,
        },
        Op::Write {
            mm: 0,
            at: first(0),
            byte: 0,
        },
        Op::Fork { mm: 0 },
        Op::Mprotect {
            mm: 0,
            at: first(0),
            pages: 16,
            prot: P::R,
        },
        Op::Mprotect {
            mm: 0,
            at: first(0),
            pages: 16,
            prot: P::Rw,
        },
        Op::Write {
            mm: 0,
            at: first(0),
            byte: 0,
        },
        Op::Read {
            mm: 1,
            at: first(0),
            byte: 0,
        },
        Op::Write {
            mm: 1,
            at: first(3),
            byte: 8,
        },
        Op::Read {
            mm: 0,
            at: first(3),
            byte: 8,
        },
    ];
    each_config(&ops);
}

/// A VMA edge inside a 2 MiB block (mprotect of a part), then fork: the block must be
/// split before the VMAs change, the child gets the pieces, and stores on both sides
/// of the edge in both address spaces stay apart; then a partial munmap, the shrinker
/// and exit.
#[test]
fn vma_split_inside_a_pmd_block_then_fork() {
    let ops = [
        Op::Mmap {
            mm: 0,
            page: 512,
            align: 512,
            pages: 512,
            prot: P::Rw,
            populate: false,
        },
        Op::Write {
            mm: 0,
            at: first(100),
            byte: 1,
        },
        Op::Mprotect {
            mm: 0,
            at: first(200),
            pages: 40,
            prot: P::R,
        },
        Op::Mprotect {
            mm: 0,
            at: first(200),
            pages: 20,
            prot: P::Rw,
        },
        Op::Fork { mm: 0 },
        Op::Write {
            mm: 0,
            at: first(205),
            byte: 2,
        },
        Op::Write {
            mm: 1,
            at: first(100),
            byte: 1,
        },
        Op::Read {
            mm: 0,
            at: first(100),
            byte: 1,
        },
        Op::Write {
            mm: 1,
            at: first(300),
            byte: 3,
        },
        Op::Munmap {
            mm: 0,
            at: first(96),
            pages: 8,
        },
        Op::Shrink,
        Op::Read {
            mm: 1,
            at: first(205),
            byte: 2,
        },
        Op::Exit { mm: 1 },
        Op::Shrink,
        Op::Write {
            mm: 0,
            at: first(250),
            byte: 4,
        },
    ];
    each_config(&ops);
}

/// exec's fill (`Mm::write_bytes`): bytes crossing page boundaries at an odd offset,
/// into a read-only mapping, land where the walk says.
#[test]
fn write_bytes_fills_across_pages() {
    let _machine = host::machine();
    let env = HostMachine {
        features: Features::default(),
        mode: ContMode::On,
    };
    let mut mm = Mm::new_in(&env).expect("address space");
    let start = mm
        .mmap(WINDOW, 3 * PAGE_SIZE as u64, VmProt::READ, MAP_FIXED)
        .expect("mmap");
    let data: Vec<u8> = (0..2 * PAGE_SIZE).map(|i| (i % 251 + 1) as u8).collect();
    let at = start.add(PAGE_SIZE / 2 + 3);
    mm.write_bytes(at, &data).expect("write_bytes");
    for (i, &b) in data.iter().enumerate() {
        let w = model::walk(&env, mm.tables.root(), at.add(i)).expect("mapped");
        assert_eq!(host::read_byte(w.pa), b, "byte {i}");
    }
    let w = model::walk(&env, mm.tables.root(), at.align_down(PAGE_SIZE)).expect("mapped");
    assert_eq!(host::read_byte(w.pa), 0, "the page's start stays zero");
    assert_eq!(audit::check([&mm].into_iter()).map(|_| ()), Ok(()));
    drop(mm);
    crate::mm::zero::shrink();
    assert_eq!(frames().free_frames(), frames().managed_frames());
}

/// Lazy free, a write, then MADV_PAGEOUT (seed 002): the folio written after
/// MADV_FREE keeps all its data (the audit then finds its mark gone or still listed);
/// the clean ones may go and read as zero. A forked copy of a lazyfree folio is shared
/// and must survive MADV_PAGEOUT in both address spaces.
#[test]
fn lazyfree_then_write_then_pageout_keeps_written_folios() {
    let write = |mm, page, byte| Op::Write {
        mm,
        at: first(page),
        byte,
    };
    let advise = |mm, page, pages, advice| Op::Madvise {
        mm,
        at: first(page),
        pages,
        advice,
    };
    let mut ops = vec![Op::Mmap {
        mm: 0,
        page: 0,
        align: 16,
        pages: 64,
        prot: P::Rw,
        populate: false,
    }];
    ops.extend((0..64).step_by(4).map(|p| write(0, p, p * 8)));
    ops.extend([
        advise(0, 0, 64, Advice::Free),
        write(0, 20, 100),
        write(0, 33, 200),
        advise(0, 0, 64, Advice::PageOut),
        Op::Read {
            mm: 0,
            at: first(16),
            byte: 128,
        },
        advise(0, 0, 32, Advice::Free),
        Op::Fork { mm: 0 },
        advise(0, 0, 64, Advice::PageOut),
        advise(1, 0, 64, Advice::PageOut),
        write(1, 4, 9),
        Op::Exit { mm: 1 },
        advise(0, 0, 64, Advice::PageOut),
    ]);
    each_config(&ops);
}

/// A debugger's write to a private hugetlb page fork shared, in the parent, next to a
/// MAP_SHARED mapping (found by the property tests, hugetlb among their operations).
#[test]
fn forced_write_to_a_private_hugetlb_page_after_fork() {
    let at = |vma, page| At {
        vma,
        page,
        align: 1,
    };
    each_config(&[
        Op::MmapHugetlb {
            mm: 0,
            page: 2560,
            pages: 3,
            big: true,
            shared: true,
        },
        Op::MmapHugetlb {
            mm: 0,
            page: 1536,
            pages: 1,
            big: true,
            shared: false,
        },
        Op::ForceRead {
            mm: 0,
            at: at(0, 0),
            byte: 0,
        },
        Op::Fork { mm: 0 },
        Op::MmapShared {
            mm: 0,
            page: 0,
            align: 1,
            pages: 1,
        },
        Op::ForceWrite {
            mm: 0,
            at: at(1, 0),
            byte: 0,
        },
    ]);
}

/// mremap with DONTUNMAP next to hugetlb mappings (found by the property tests).
#[test]
fn mremap_next_to_hugetlb_mappings() {
    let at = |vma, page| At {
        vma,
        page,
        align: 1,
    };
    each_config(&[
        Op::MmapShared {
            mm: 0,
            page: 0,
            align: 1,
            pages: 512,
        },
        Op::MmapHugetlb {
            mm: 0,
            page: 512,
            pages: 1,
            big: false,
            shared: false,
        },
        Op::MmapHugetlb {
            mm: 0,
            page: 16,
            pages: 1,
            big: false,
            shared: false,
        },
        Op::Mremap {
            mm: 0,
            at: at(2, 398),
            old_pages: 83,
            new_pages: 1,
            flags: 7,
            dst_page: 1679,
            dst_align: 1,
        },
    ]);
}
