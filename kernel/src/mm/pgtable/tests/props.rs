//! Property tests: random sequences of operations against a reference model of what
//! each page of a 4 MiB window (straddling the 1 GiB level-1 boundary) should translate
//! to, with which permissions, and (as lower bounds) whether it is young and dirty.
//! After every step the whole window is walked by the software model, the layer's own
//! answers (`get`, `unmap` records, `test_and_clear_young`) are compared, and the
//! checker has run on every operation. Every ContMode, with software AF/dirty, hardware
//! AF only, hardware AF and dirty, with and without range TLBIs and BBM level 2.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const WINDOW_PAGES: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct RefPage {
    pa: PhysAddr,
    prot: Prot,
    young: bool,
    dirty: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        page: usize,
        order: u32,
        skip: usize,
        nr: usize,
        prot: Prot,
    },
    MapPmd {
        pmd: usize,
        prot: Prot,
    },
    Unmap {
        page: usize,
        nr: usize,
    },
    Protect {
        page: usize,
        nr: usize,
        prot: Prot,
    },
    Wrprotect {
        page: usize,
        nr: usize,
    },
    ClearYoungDirty {
        page: usize,
        nr: usize,
    },
    MakeWritable {
        page: usize,
        nr: usize,
    },
    TestAndClearYoung {
        page: usize,
    },
    Access {
        page: usize,
        access: Access,
    },
    Get {
        page: usize,
    },
}

fn prot() -> impl Strategy<Value = Prot> {
    (any::<bool>(), any::<bool>(), prop::bool::weighted(0.8)).prop_map(|(write, exec, user)| Prot {
        write,
        exec,
        user,
    })
}

/// A page index, 64 KiB aligned half of the time.
fn page_index() -> impl Strategy<Value = usize> {
    (0..WINDOW_PAGES, any::<bool>()).prop_map(|(p, align)| if align { p & !15 } else { p })
}

/// Where to map: 64 KiB aligned most of the time, so that blocks fold.
fn map_page_index() -> impl Strategy<Value = usize> {
    (0..WINDOW_PAGES, prop::bool::weighted(0.8))
        .prop_map(|(p, align)| if align { p & !15 } else { p })
}

/// A page count: small, a block, a few blocks, or a table's worth.
fn count() -> impl Strategy<Value = usize> {
    prop_oneof![1..20usize, Just(16usize), 17..80usize, Just(512usize)]
}

/// Which pages of a folio to map: all of it half of the time, else a random part
/// (`skip` pages in, `nr` pages, both reduced modulo the folio size when used).
fn folio_part() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![Just((0, usize::MAX)), (0..64usize, 1..600usize)]
}

fn access() -> impl Strategy<Value = Access> {
    let el = prop_oneof![3 => Just(El::El0), 1 => Just(El::El1)];
    let kind = prop_oneof![
        Just(AccessKind::Read),
        Just(AccessKind::Write),
        Just(AccessKind::Exec)
    ];
    (el, kind).prop_map(|(el, kind)| Access { el, kind })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (map_page_index(), prop::sample::select(vec![0u32, 2, 4, 4, 5, 6, 9]), folio_part(), prot())
            .prop_map(|(page, order, (skip, nr), prot)| Op::Map { page, order, skip, nr, prot }),
        1 => (0..2usize, prot()).prop_map(|(pmd, prot)| Op::MapPmd { pmd, prot }),
        2 => (page_index(), count()).prop_map(|(page, nr)| Op::Unmap { page, nr }),
        2 => (page_index(), count(), prot()).prop_map(|(page, nr, prot)| Op::Protect { page, nr, prot }),
        1 => (page_index(), count()).prop_map(|(page, nr)| Op::Wrprotect { page, nr }),
        1 => (page_index(), count()).prop_map(|(page, nr)| Op::ClearYoungDirty { page, nr }),
        1 => (page_index(), count()).prop_map(|(page, nr)| Op::MakeWritable { page, nr }),
        1 => page_index().prop_map(|page| Op::TestAndClearYoung { page }),
        5 => (page_index(), access()).prop_map(|(page, access)| Op::Access { page, access }),
        1 => page_index().prop_map(|page| Op::Get { page }),
    ]
}

fn features() -> impl Strategy<Value = Features> {
    (0..3u8, any::<bool>(), any::<bool>()).prop_map(|(hw, range_tlbi, bbml2)| Features {
        hw_af: hw >= 1,
        hw_dirty: hw == 2,
        range_tlbi,
        bbml2,
    })
}

/// The architecture's permission rules, stated on `Prot`.
fn permits(prot: Prot, access: Access) -> bool {
    match (access.el, access.kind) {
        (El::El0, AccessKind::Read) => prot.user,
        (El::El0, AccessKind::Write) => prot.user && prot.write,
        (El::El0, AccessKind::Exec) => prot.user && prot.exec,
        (El::El1, AccessKind::Read) => true,
        (El::El1, AccessKind::Write) => prot.write,
        (El::El1, AccessKind::Exec) => prot.exec && !prot.user,
    }
}

struct World {
    asp: Asp,
    reference: BTreeMap<usize, RefPage>,
}

impl World {
    /// Clamps `nr` pages from `page` to the window.
    fn clamp(page: usize, nr: usize) -> usize {
        nr.min(WINDOW_PAGES - page)
    }

    fn mapped_in(&self, page: usize, nr: usize) -> bool {
        self.reference.range(page..page + nr).next().is_some()
    }

    fn update(&mut self, page: usize, nr: usize, f: impl Fn(&mut RefPage)) {
        self.reference
            .range_mut(page..page + nr)
            .for_each(|(_, r)| f(r));
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Map {
                page: p,
                order,
                skip,
                nr,
                prot,
            } => {
                let pages = 1usize << order;
                let skip = skip % pages;
                let nr = Self::clamp(p, nr.min(pages - skip));
                let pa = self.asp.env().alloc_folio(order).add(skip * PAGE_SIZE);
                let result = self.asp.map(
                    page(p),
                    pa,
                    nr,
                    PteAttrs {
                        prot,
                        mem: MemType::Normal,
                    },
                );
                if self.mapped_in(p, nr) {
                    assert_eq!(result, Err(MapError::AlreadyMapped));
                } else {
                    assert_eq!(result, Ok(()));
                    for i in 0..nr {
                        let r = RefPage {
                            pa: pa.add(i * PAGE_SIZE),
                            prot,
                            young: true,
                            dirty: false,
                        };
                        self.reference.insert(p + i, r);
                    }
                }
            }
            Op::MapPmd { pmd, prot } => {
                let p = pmd * 512;
                let pa = self.asp.env().alloc_folio(9);
                let result = self.asp.map_pmd(
                    page(p),
                    pa,
                    PteAttrs {
                        prot,
                        mem: MemType::Normal,
                    },
                );
                if self.mapped_in(p, 512) {
                    assert_eq!(result, Err(MapError::AlreadyMapped));
                } else {
                    assert_eq!(result, Ok(()));
                    for i in 0..512 {
                        let r = RefPage {
                            pa: pa.add(i * PAGE_SIZE),
                            prot,
                            young: true,
                            dirty: false,
                        };
                        self.reference.insert(p + i, r);
                    }
                }
            }
            Op::Unmap { page: p, nr } => {
                let nr = Self::clamp(p, nr);
                let records = self.asp.unmap(page(p), nr).unwrap();
                self.check_unmapped(p, nr, &records);
            }
            Op::Protect { page: p, nr, prot } => {
                let nr = Self::clamp(p, nr);
                self.asp.protect(page(p), nr, prot).unwrap();
                self.update(p, nr, |r| r.prot = prot);
            }
            Op::Wrprotect { page: p, nr } => {
                let nr = Self::clamp(p, nr);
                self.asp.wrprotect(page(p), nr).unwrap();
                self.update(p, nr, |r| r.prot.write = false);
            }
            Op::ClearYoungDirty { page: p, nr } => {
                let nr = Self::clamp(p, nr);
                self.asp.clear_young_dirty(page(p), nr).unwrap();
                self.update(p, nr, |r| (r.young, r.dirty) = (false, false));
            }
            Op::MakeWritable { page: p, nr } => {
                let nr = Self::clamp(p, nr);
                self.asp.make_writable(page(p), nr).unwrap();
                self.update(p, nr, |r| (r.prot.write, r.dirty) = (true, true));
            }
            Op::TestAndClearYoung { page: p } => {
                let unit = match self.asp.get(page(p)) {
                    Some(leaf) if leaf.level == 2 => 512,
                    _ => CONT_PTES,
                };
                let young = self.asp.test_and_clear_young(page(p));
                match self.reference.get(&p) {
                    None => assert!(!young),
                    Some(r) => assert!(young || !r.young, "young page {p} reported old"),
                }
                self.update(p & !(unit - 1), unit, |r| r.young = false);
            }
            Op::Access { page: p, access } => self.access(p, access),
            Op::Get { page: p } => self.check_get(p),
        }
    }

    fn access(&mut self, p: usize, access: Access) {
        let outcome = run_access(&mut self.asp, page(p), access, handle_fault);
        match self.reference.get_mut(&p) {
            Some(r) if permits(r.prot, access) => {
                assert_eq!(outcome, Outcome::Done(r.pa), "{access:?} at page {p}");
                r.young = true;
                r.dirty |= access.kind == AccessKind::Write;
            }
            _ => assert!(
                matches!(outcome, Outcome::Denied(f) | Outcome::NoProgress(f)
                    if !matches!(f, Fault::ContiguousMisprogrammed { .. })),
                "{access:?} at page {p}: {outcome:?}"
            ),
        }
    }

    fn check_get(&self, p: usize) {
        let leaf = self.asp.get(page(p));
        match (self.reference.get(&p), leaf) {
            (None, None) => {}
            (Some(r), Some(leaf)) => {
                assert_eq!(
                    (leaf.pa_of(page(p)), leaf.pte.prot()),
                    (r.pa, r.prot),
                    "page {p}"
                );
                assert!(leaf.pte.is_young() || !r.young, "page {p} lost AF");
                assert!(leaf.pte.is_dirty() || !r.dirty, "page {p} lost dirty");
            }
            (r, leaf) => panic!("page {p}: reference {r:?}, get {leaf:?}"),
        }
    }

    fn check_unmapped(&mut self, p: usize, nr: usize, records: &[Unmapped]) {
        let mut seen = BTreeMap::new();
        for rec in records {
            for i in 0..rec.pages {
                let q = rec.va.add(i * PAGE_SIZE).offset_from(BASE) / PAGE_SIZE;
                assert!((p..p + nr).contains(&q), "record {rec:?} outside the range");
                assert!(
                    seen.insert(q, (rec.pa.add(i * PAGE_SIZE), rec.dirty))
                        .is_none(),
                    "page {q} twice"
                );
            }
        }
        let expected: Vec<usize> = self.reference.range(p..p + nr).map(|(&q, _)| q).collect();
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), expected);
        for q in expected {
            let r = self.reference.remove(&q).unwrap();
            let (pa, dirty) = seen[&q];
            assert_eq!(pa, r.pa, "page {q}");
            assert!(dirty || !r.dirty, "page {q} lost dirty");
        }
    }

    /// Walks every page of the window through the model.
    fn check_window(&self) {
        let off = self.asp.mode() == ContMode::Off;
        for p in 0..WINDOW_PAGES {
            match (walk(&self.asp, page(p)), self.reference.get(&p)) {
                (Err(Fault::Translation { .. }), None) => {}
                (Ok(w), Some(r)) => {
                    assert_eq!((w.pa, w.pte.prot()), (r.pa, r.prot), "page {p}");
                    assert!(!(off && w.pte.is_cont()), "Contiguous bit in mode Off");
                }
                (w, r) => panic!("page {p}: walk {w:?}, reference {r:?}"),
            }
        }
    }
}

fn run(mode: ContMode, features: Features, ops: &[Op]) {
    let mut world = World {
        asp: PageTable::new(ModelMachine::new(features, 32), 3, mode).unwrap(),
        reference: BTreeMap::new(),
    };
    for op in ops {
        world.step(op);
        world.check_window();
    }
    let records = world.asp.unmap(BASE, WINDOW_PAGES).unwrap();
    world.check_unmapped(0, WINDOW_PAGES, &records);
    assert_eq!(
        world.asp.env().tables_in_use(),
        1,
        "only the root table is left"
    );
}

/// The checker-off paths (the checker watches `Ctx::store_block` make 16 calls of
/// `Ctx::store`; off, the block is written by a loop of its own): the same operations
/// on two address spaces, one checked and one not, leave the same entries, walked page
/// by page, and the same counters.
fn run_unchecked_twin(mode: ContMode, features: Features, ops: &[Op]) {
    let world = || World {
        asp: PageTable::new(ModelMachine::new(features, 32), 3, mode).unwrap(),
        reference: BTreeMap::new(),
    };
    let (mut checked, mut unchecked) = (world(), world());
    unchecked.asp.checker_mut().set_enabled(false);
    for op in ops {
        checked.step(op);
        unchecked.step(op);
        unchecked.check_window();
        for p in 0..WINDOW_PAGES {
            let raw = |w: &World| walk(&w.asp, page(p)).map(|w| w.pte.raw()).ok();
            assert_eq!(raw(&checked), raw(&unchecked), "page {p} after {op:?}");
        }
        assert_eq!(
            stats(&checked.asp),
            stats(&unchecked.asp),
            "counters after {op:?}"
        );
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_sequences_mode_on(features in features(), ops in prop::collection::vec(op(), 1..60)) {
        run(ContMode::On, features, &ops);
    }

    #[test]
    fn random_sequences_mode_off(features in features(), ops in prop::collection::vec(op(), 1..60)) {
        run(ContMode::Off, features, &ops);
    }

    #[test]
    fn random_sequences_without_the_checker(
        mode in prop::sample::select(vec![ContMode::On, ContMode::Off, ContMode::Naive]),
        features in features(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run_unchecked_twin(mode, features, &ops);
    }

    #[test]
    fn random_sequences_mode_naive(features in features(), ops in prop::collection::vec(op(), 1..60)) {
        run(ContMode::Naive, features, &ops);
    }
}
