//! Property tests: random sequences of mmap, stores and loads, fork, mprotect, munmap,
//! madvise, mremap (every flag combination, aligned and misaligned destinations), mTHP policy changes, the shrinker and exit, over up to four address spaces
//! at once, checked after every step as the module docs say. Each ContMode, with
//! software AF/dirty, hardware AF only, and hardware AF and dirty, with `cow=page` and
//! `cow=folio`, and a random mTHP policy per order to start from.

use proptest::prelude::*;

use super::*;

fn size_setting() -> impl Strategy<Value = SizeSetting> {
    prop_oneof![
        2 => Just(SizeSetting::Always),
        2 => Just(SizeSetting::Never),
        1 => Just(SizeSetting::Madvise),
        1 => Just(SizeSetting::Inherit),
    ]
}

fn config(mode: ContMode) -> impl Strategy<Value = Config> {
    (
        0..3u8,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::array::uniform8(size_setting()),
    )
        .prop_map(move |(hw, range_tlbi, bbml2, cow_folio, sizes)| Config {
            mode,
            features: Features {
                hw_af: hw >= 1,
                hw_dirty: hw == 2,
                range_tlbi,
                bbml2,
            },
            cow_folio,
            sizes,
        })
}

/// 4 KiB, 64 KiB or 2 MiB alignment (in pages).
fn align() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(1usize), 2 => Just(16usize), 1 => Just(512usize)]
}

/// A mapping's length in pages: 4 KiB to 4 MiB, often a whole block or 2 MiB.
fn map_pages() -> impl Strategy<Value = usize> {
    prop_oneof![
        1..=16usize,
        Just(16usize),
        Just(64usize),
        Just(512usize),
        17..=1024usize,
        Just(1024usize)
    ]
}

/// A range's length in pages: a few, a block, a part of 2 MiB, 2 MiB.
fn range_pages() -> impl Strategy<Value = usize> {
    prop_oneof![1..=20usize, Just(16usize), 17..=600usize, Just(512usize)]
}

fn at() -> impl Strategy<Value = At> {
    (0..4usize, 0..1024usize, align()).prop_map(|(vma, page, align)| At { vma, page, align })
}

fn prot() -> impl Strategy<Value = P> {
    prop_oneof![3 => Just(P::Rw), 1 => Just(P::R), 1 => Just(P::None)]
}

fn advice() -> impl Strategy<Value = Advice> {
    prop_oneof![
        Just(Advice::DontNeed),
        Just(Advice::Free),
        Just(Advice::PageOut),
        Just(Advice::HugePage),
        Just(Advice::NoHugePage),
        Just(Advice::Collapse),
        Just(Advice::DontFork),
        Just(Advice::WipeOnFork),
        Just(Advice::Fork),
        Just(Advice::Lock),
        Just(Advice::LockOnFault),
        Just(Advice::Unlock)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let mm = 0..MAX_MMS;
    prop_oneof![
        3 => (mm.clone(), 0..WINDOW_PAGES, align(), map_pages(), prot(), prop::bool::weighted(0.2))
            .prop_map(|(mm, page, align, pages, prot, populate)| Op::Mmap { mm, page, align, pages, prot, populate }),
        2 => (mm.clone(), 0..WINDOW_PAGES, align(), map_pages())
            .prop_map(|(mm, page, align, pages)| Op::MmapShared { mm, page, align, pages }),
        2 => (mm.clone(), 0..WINDOW_PAGES, align(), map_pages(), 0..8usize)
            .prop_map(|(mm, page, align, pages, file)| Op::MmapPrivateFile { mm, page, align, pages, file }),
        8 => (mm.clone(), at(), 0..PAGE_SIZE).prop_map(|(mm, at, byte)| Op::Write { mm, at, byte }),
        3 => (mm.clone(), at(), 0..PAGE_SIZE).prop_map(|(mm, at, byte)| Op::Read { mm, at, byte }),
        2 => (mm.clone(), at(), 0..PAGE_SIZE).prop_map(|(mm, at, byte)| Op::ForceWrite { mm, at, byte }),
        1 => (mm.clone(), at(), 0..PAGE_SIZE).prop_map(|(mm, at, byte)| Op::ForceRead { mm, at, byte }),
        2 => mm.clone().prop_map(|mm| Op::Fork { mm }),
        3 => (mm.clone(), at(), range_pages(), prot()).prop_map(|(mm, at, pages, prot)| Op::Mprotect { mm, at, pages, prot }),
        2 => (mm.clone(), at(), range_pages()).prop_map(|(mm, at, pages)| Op::Munmap { mm, at, pages }),
        2 => (mm.clone(), at(), range_pages(), advice()).prop_map(|(mm, at, pages, advice)| Op::Madvise { mm, at, pages, advice }),
        3 => (mm.clone(), at(), range_pages(), range_pages(), prop::sample::select(vec![0u64, 1, 1, 3, 3, 5, 7, 2, 3 | SAME_LEN, 7 | SAME_LEN]), 0..WINDOW_PAGES, align())
            .prop_map(|(mm, at, old_pages, new_pages, flags, dst_page, dst_align)| Op::Mremap { mm, at, old_pages, new_pages, flags, dst_page, dst_align }),
        1 => (prop::sample::select(vec![2usize, 3, 4, 5, 6, 9]), size_setting()).prop_map(|(order, setting)| Op::Policy { order, setting }),
        1 => Just(Op::Shrink),
        1 => mm.clone().prop_map(|mm| Op::Scan { mm }),
        1 => mm.clone().prop_map(|mm| Op::Exit { mm }),
        2 => (mm, at(), 1..=4usize, prop::bool::ANY).prop_map(|(mm, at, pages, write)| Op::Pin { mm, at, pages, write }),
        1 => (0..MAX_MMS * 8).prop_map(|which| Op::Unpin { which }),
    ]
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        // PROPS_CASES=N runs N (a long hunt after a change); the suite runs 12.
        cases: std::env::var("PROPS_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12),
        // Shrinking runs only after a failure: let it reach a short sequence.
        max_shrink_iters: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn sequence(mode: ContMode) -> impl Strategy<Value = (Config, Vec<Op>)> {
    (config(mode), prop::collection::vec(op(), 1..150))
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn address_spaces_keep_their_data_cont_on((cfg, ops) in sequence(ContMode::On)) {
        if let Err(e) = run(cfg, &ops) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn address_spaces_keep_their_data_cont_off((cfg, ops) in sequence(ContMode::Off)) {
        if let Err(e) = run(cfg, &ops) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn address_spaces_keep_their_data_cont_naive((cfg, ops) in sequence(ContMode::Naive)) {
        if let Err(e) = run(cfg, &ops) {
            prop_assert!(false, "{}", e);
        }
    }
}
