//! Host model: an in-memory machine for the page-table layer, and a software model of
//! the stage-1 walk. Compiled for tests and with the `model` feature only (uses `std`).
//!
//! * [`ModelMachine`] implements [`PtMachine`]: tables live in a fixed arena of "physical"
//!   pages (a freed table panics if it is walked again), folios are registered by
//!   [`ModelMachine::alloc_folio`], TLB maintenance is recorded in order ([`TlbOp`]); once
//!   [`ModelMachine::track_anon_exclusive`] is called it also answers which pages are
//!   anon-exclusive ([`ModelMachine::set_anon_exclusive`]), for the checker.
//! * [`walk`] and [`translate`] model the architecture's translation of a VA over any
//!   [`PtMachine`] (also `mm::host`, where the address space's tests run): descriptor
//!   types per level (blocks at levels 1 and 2, pages at level 3), permissions from
//!   AP/UXN/PXN for EL0 and EL1 (PSTATE.PAN = 0; a page writable at EL0 is never
//!   executable at EL1), the Access flag, and FEAT_HAFDBS updates when the features say
//!   so. QEMU ignores the Contiguous bit; this model instead reports a misprogrammed
//!   contiguous block it walks through ([`Fault::ContiguousMisprogrammed`], where real
//!   hardware may return any entry of the block or raise a TLB conflict abort).
//!
//! The model checks permissions before the Access flag, so that an access that is not
//! permitted never sets AF (the fault handler copes with either order).

use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::addr::{PhysAddr, VirtAddr, CONT_PTES, PAGE_SIZE, PTRS_PER_TABLE};

use super::counters::Counters;
use super::desc::{cont_block_violation, entry_size, Kind, Level, Pte, LAST_LEVEL};
use super::machine::{Asid, Features, FolioSpan, PtMachine, TableEntries, Tlb};

/// Physical address of the first table of the arena (tables and folios never overlap).
pub const TABLE_BASE: PhysAddr = PhysAddr(0x10_0000_0000);
/// Physical address of the first folio.
pub const FOLIO_BASE: PhysAddr = PhysAddr(0x4000_0000);

/// One recorded TLB maintenance operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbOp {
    Page {
        asid: Asid,
        va: VirtAddr,
        last_level: bool,
    },
    Range {
        asid: Asid,
        va: VirtAddr,
        pages: usize,
    },
    Asid(Asid),
    All,
    Dsb,
}

/// A TLB that records what it is asked to do.
#[derive(Default)]
pub struct HostTlb {
    log: RefCell<Vec<TlbOp>>,
}

impl HostTlb {
    /// Everything recorded since the last call.
    pub fn take_log(&self) -> Vec<TlbOp> {
        self.log.take()
    }
}

impl Tlb for HostTlb {
    fn page(&self, asid: Asid, va: VirtAddr, last_level: bool) {
        self.log.borrow_mut().push(TlbOp::Page {
            asid,
            va,
            last_level,
        });
    }
    fn range(&self, asid: Asid, va: VirtAddr, pages: usize) {
        self.log.borrow_mut().push(TlbOp::Range { asid, va, pages });
    }
    fn asid(&self, asid: Asid) {
        self.log.borrow_mut().push(TlbOp::Asid(asid));
    }
    fn all(&self) {
        self.log.borrow_mut().push(TlbOp::All);
    }
    fn dsb(&self) {
        self.log.borrow_mut().push(TlbOp::Dsb);
    }
}

/// The in-memory machine.
pub struct ModelMachine {
    tables: Vec<Box<TableEntries>>,
    live: RefCell<Vec<bool>>,
    free: RefCell<Vec<usize>>,
    /// Folio head -> pages.
    folios: RefCell<BTreeMap<PhysAddr, usize>>,
    next_folio: Cell<PhysAddr>,
    /// Anon-exclusive pages, once tracked (`None`: the model does not say).
    exclusive: RefCell<Option<BTreeSet<PhysAddr>>>,
    features: Features,
    tlb: HostTlb,
    counters: Counters,
}

impl ModelMachine {
    /// A machine with room for `max_tables` tables.
    pub fn new(features: Features, max_tables: usize) -> Self {
        ModelMachine {
            tables: (0..max_tables)
                .map(|_| Box::new([const { AtomicU64::new(0) }; PTRS_PER_TABLE]))
                .collect(),
            live: RefCell::new(std::vec![false; max_tables]),
            free: RefCell::new((0..max_tables).rev().collect()),
            folios: RefCell::default(),
            next_folio: Cell::new(FOLIO_BASE),
            exclusive: RefCell::new(None),
            features,
            tlb: HostTlb::default(),
            counters: Counters::new(),
        }
    }

    /// A new folio of `2^order` pages, naturally aligned.
    pub fn alloc_folio(&self, order: u32) -> PhysAddr {
        let bytes = PAGE_SIZE << order;
        let head = self.next_folio.get().align_up(bytes);
        self.next_folio.set(head.add(bytes));
        self.folios.borrow_mut().insert(head, 1 << order);
        head
    }

    /// From now on the model answers [`PtMachine::anon_exclusive`]: a page is exclusive
    /// only once [`ModelMachine::set_anon_exclusive`] said so.
    pub fn track_anon_exclusive(&self) {
        self.exclusive
            .borrow_mut()
            .get_or_insert_with(BTreeSet::new);
    }

    /// Marks `pages` pages from `pa` anon-exclusive or shared (tracking must be on).
    pub fn set_anon_exclusive(&self, pa: PhysAddr, pages: usize, exclusive: bool) {
        let mut set = self.exclusive.borrow_mut();
        let set = set.as_mut().expect("track_anon_exclusive first");
        for i in 0..pages {
            let page = pa.add(i * PAGE_SIZE);
            if exclusive {
                set.insert(page);
            } else {
                set.remove(&page);
            }
        }
    }

    /// Tables currently allocated.
    pub fn tables_in_use(&self) -> usize {
        self.live.borrow().iter().filter(|&&l| l).count()
    }

    fn index(&self, pa: PhysAddr) -> usize {
        let i = pa.offset_from(TABLE_BASE) / PAGE_SIZE;
        assert!(
            pa.is_aligned(PAGE_SIZE) && self.live.borrow()[i],
            "{pa:?} is not a live table"
        );
        i
    }
}

impl PtMachine for ModelMachine {
    type Tlb = HostTlb;

    fn table(&self, pa: PhysAddr) -> &TableEntries {
        &self.tables[self.index(pa)]
    }

    fn alloc_table(&self) -> Option<PhysAddr> {
        let i = self.free.borrow_mut().pop()?;
        self.live.borrow_mut()[i] = true;
        Some(TABLE_BASE.add(i * PAGE_SIZE))
    }

    fn free_table(&self, pa: PhysAddr) {
        let i = self.index(pa);
        assert!(
            self.tables[i]
                .iter()
                .all(|e| e.load(Ordering::Relaxed) == 0),
            "freeing non-empty table {pa:?}"
        );
        self.live.borrow_mut()[i] = false;
        self.free.borrow_mut().push(i);
    }

    fn folio_of(&self, pa: PhysAddr) -> FolioSpan {
        let folios = self.folios.borrow();
        match folios.range(..=pa).next_back() {
            Some((&head, &nr_pages)) if pa < head.add(nr_pages * PAGE_SIZE) => {
                FolioSpan { head, nr_pages }
            }
            _ => FolioSpan {
                head: pa.align_down(PAGE_SIZE),
                nr_pages: 1,
            },
        }
    }

    fn tracks_anon_exclusive(&self) -> bool {
        self.exclusive.borrow().is_some()
    }

    fn anon_exclusive(&self, pa: PhysAddr) -> Option<bool> {
        self.exclusive
            .borrow()
            .as_ref()
            .map(|set| set.contains(&pa))
    }

    fn tlb(&self) -> &HostTlb {
        &self.tlb
    }

    fn features(&self) -> Features {
        self.features
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Exception level of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum El {
    El0,
    El1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
    Exec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub el: El,
    pub kind: AccessKind,
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Translation {
        level: Level,
    },
    AccessFlag {
        level: Level,
    },
    Permission {
        level: Level,
    },
    /// The walk met a contiguous block that breaks the architecture's rules.
    ContiguousMisprogrammed {
        va: VirtAddr,
        why: &'static str,
    },
}

/// A successful walk: the leaf and the output address.
#[derive(Clone, Copy, Debug)]
pub struct Walked {
    pub level: Level,
    pub pte: Pte,
    pub pa: PhysAddr,
}

/// Walks the tables for `va` without side effects (no AF or dirty update, no
/// permission check).
pub fn walk<E: PtMachine>(env: &E, root: PhysAddr, va: VirtAddr) -> Result<Walked, Fault> {
    walk_entry(env, root, va).map(|(w, _)| w)
}

fn walk_entry<E: PtMachine>(
    env: &E,
    root: PhysAddr,
    va: VirtAddr,
) -> Result<(Walked, &AtomicU64), Fault> {
    if va.as_u64() >> 48 != 0 {
        return Err(Fault::Translation { level: 0 });
    }
    let mut table = root;
    for level in 0..=LAST_LEVEL {
        let size = entry_size(level) as u64;
        let index = (va.as_u64() / size) as usize % PTRS_PER_TABLE;
        let entries = env.table(table);
        let pte = Pte::from_raw(entries[index].load(Ordering::Relaxed));
        match pte.kind(level) {
            Kind::Invalid => return Err(Fault::Translation { level }),
            Kind::Table(next) => table = next,
            Kind::Block | Kind::Page => {
                if pte.is_cont() {
                    check_cont_block(entries, index, level, va)?;
                }
                let pa = pte.output_addr().add((va.as_u64() % size) as usize);
                return Ok((Walked { level, pte, pa }, &entries[index]));
            }
        }
    }
    unreachable!("level 3 entries are pages or invalid")
}

fn check_cont_block(
    entries: &TableEntries,
    index: usize,
    level: Level,
    va: VirtAddr,
) -> Result<(), Fault> {
    let first = index & !(CONT_PTES - 1);
    let block: [Pte; CONT_PTES] =
        core::array::from_fn(|i| Pte::from_raw(entries[first + i].load(Ordering::Relaxed)));
    match cont_block_violation(&block, level) {
        None => Ok(()),
        Some(why) => Err(Fault::ContiguousMisprogrammed { va, why }),
    }
}

/// Whether the hardware allows `access` through `pte` (AF aside).
fn permits(pte: Pte, access: Access, hw_dirty: bool) -> bool {
    let writable = pte.is_hw_writable() || (hw_dirty && pte.is_writable());
    match (access.el, access.kind) {
        (El::El0, AccessKind::Read) => pte.is_user(),
        (El::El0, AccessKind::Write) => pte.is_user() && writable,
        (El::El0, AccessKind::Exec) => pte.is_user() && !pte.is_uxn(),
        (El::El1, AccessKind::Read) => true,
        (El::El1, AccessKind::Write) => writable,
        // A page writable at EL0 is never executable at EL1.
        (El::El1, AccessKind::Exec) => !(pte.is_pxn() || (pte.is_user() && pte.is_hw_writable())),
    }
}

/// Translates `va` for `access` as the CPU would, updating AF and dirty state in the
/// descriptor when hardware management is on. The update is atomic with the walk
/// (Arm ARM D8.4.2, "Hardware management of the Access flag and dirty state": the
/// hardware's update is an atomic read-modify-write that takes effect only if the
/// descriptor is still the one the walk used): if software changed the entry
/// meanwhile (write-protected it, broke a block), the walk starts over and sees the
/// new entry, fault and all. A model that applied the update to whatever the entry
/// held made the threaded host test panic (a dirty update of an entry lazyfree had
/// just write-protected) and, holding its locks, hang the suite one run in five.
pub fn translate<E: PtMachine>(
    env: &E,
    root: PhysAddr,
    va: VirtAddr,
    access: Access,
) -> Result<Walked, Fault> {
    loop {
        let (walked, entry) = walk_entry(env, root, va)?;
        let features = env.features();
        let (pte, level) = (walked.pte, walked.level);
        if !permits(pte, access, features.hw_dirty) {
            return Err(Fault::Permission { level });
        }
        if !pte.is_young() && !features.hw_af {
            return Err(Fault::AccessFlag { level });
        }
        let hw_dirtying = access.kind == AccessKind::Write && !pte.is_hw_writable();
        let young = pte.mkyoung();
        let new = if hw_dirtying {
            young.hw_mkdirty()
        } else {
            young
        };
        if new.raw() == pte.raw()
            || entry
                .compare_exchange(pte.raw(), new.raw(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(walked);
        }
    }
}
