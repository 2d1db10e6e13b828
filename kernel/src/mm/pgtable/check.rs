//! The page-table checker: the architecture's rules, verified on every change.
//!
//! QEMU ignores the Contiguous bit and never enforces break-before-make, so a wrong
//! sequence passes every emulated run and fails on hardware. The checker sees every
//! descriptor store (through `Ctx::store`) and every TLBI and DSB (through the `Ctx`
//! TLB wrapper), and panics on the first violation with the operation, its caller, the
//! store site and a dump of the 16-entry block.
//!
//! Rules, where they are checked:
//! * **At each store** ([`Checker::after_store`]):
//!   - the store lies in the operation's range (widened to whole 64 KiB blocks for
//!     level-3 entries, since an unfold rewrites the whole block);
//!   - the Contiguous bit is used at levels 3 and 2 only (`contpmd.rs`: 16 level-2
//!     blocks, hugetlb's 32 MiB pages); a level-2 group a store touches is checked
//!     whole at the end of the operation;
//!   - break-before-make (Arm ARM, "Using break-before-make when updating translation
//!     table entries"): a live valid entry is never replaced by one with a different
//!     output address, memory attributes, shareability, nG, type or Contiguous bit; an
//!     entry that was invalidated is not made valid again with such a difference until
//!     a TLBI covering it and a DSB have completed. With BBM level 2 (`bbml2`), a
//!     change of the Contiguous bit alone may skip the TLBI;
//!   - a table moved to another slot (mremap's `move_table`) is linked there only
//!     once the TLBI and DSB of its old link have completed: a table is reachable
//!     through one address at a time, so no CPU writes its frames through the old
//!     range once they are mapped at the new one.
//! * **At each TLBI/DSB**: entries waiting for invalidation are marked covered, then
//!   completed.
//! * **When a table is freed**: no walk cache may still hold a pointer to it.
//! * **At the end of the operation** ([`Checker::end_op`]):
//!   - no entry still waits for its TLBI or DSB: every unmapped entry, every entry
//!     whose permissions or AF were reduced (`Pte::restricts`), and every entry that
//!     was valid and whose permissions were relaxed (`Pte::relaxes_permission`: made
//!     writable, or executable, or EL0-accessible) has been invalidated. The second
//!     half is Arm ARM D8.16 "Translation Lookaside Buffers": "Translation table
//!     entries that generate a Translation fault, an Address size fault, or an Access
//!     flag fault are never cached in a TLB" (R_XCLRD), while an entry "that does not
//!     cause a Translation fault, an Address size fault, or an Access flag fault is
//!     permitted to be cached in a TLB ... as the result of an explicit or speculative
//!     access" (R_SQBCS). A read-only entry that generates a Permission fault on a
//!     write is such an entry: after copy-on-write reuse (`make_writable`), the
//!     software dirty fault (`write_fault`) or `protect` makes it writable, the TLB may
//!     still hold the read-only one and the write faults again, for as long as the
//!     stale entry stays. The TLBI covers the page, or the whole contiguous block
//!     (each of its 16 entries changes; Linux's `contpte_ptep_set_access_flags`
//!     flushes the block too), or the 2 MiB block entry. Setting AF alone needs no
//!     TLBI: an entry with AF = 0 generates an Access flag fault, so it was never
//!     cached (R_XCLRD);
//!   - every touched 64 KiB block is a well-formed contiguous block or has no
//!     Contiguous bit (`desc::cont_block_violation`), and a contiguous block maps one
//!     folio; likewise every touched 32 MiB group of level-2 entries (the same rule
//!     at level 2, Arm ARM "The Contiguous bit": 16 valid block entries, output
//!     addresses 2 MiB apart from a 32 MiB-aligned base, identical attributes but AF
//!     and dirty), so an operation that changes or clears only part of a group fails;
//!   - per page of every touched block, comparing the state before the operation with
//!     the state after (AF and dirty read as the block-wide OR for contiguous blocks):
//!     only unmapping operations remove mappings, only mapping operations create them,
//!     no output address changes under a live mapping (except by `replace_page`, whose
//!     break the store-level rule has checked), and AF and dirty state are lost
//!     only by the operations that clear them;
//!   - every writable or DBM user entry (level 3, or a level-2 block) in the
//!     operation's range maps an anon-exclusive page, when the environment knows
//!     ([`PtMachine::anon_exclusive`]): a page shared by two address spaces (after fork)
//!     must be written only after copy-on-write, never through an entry that already
//!     lets the hardware write it (or will, with hardware dirty state);
//!   - every user leaf in the operation's range maps no page that is pinned but not
//!     anon-exclusive ([`PtMachine::pinned_shared`]): a pin refers to an exclusive page,
//!     and fork copies rather than shares it (`mm::pin`'s rules 1 and 2).
//!
//! The checker is switched at run time ([`Checker::set_enabled`]); when off it keeps no
//! state and costs a branch per store.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::panic::Location;

use crate::mm::addr::{
    PhysAddr, VirtAddr, CONT_PMDS, CONT_PMD_SIZE, CONT_PTES, CONT_SIZE, PAGE_SIZE, PMD_SIZE,
    PTRS_PER_TABLE,
};

/// The level of the entries of a level-2 contiguous block (`contpmd.rs`).
const CONT_PMD_LEVEL: Level = 2;

use super::cursor::{Cursor, Found, Slot};
use super::desc::{
    cont_block_violation, entry_size, view, BbmChange, Kind, Level, Pte, LAST_LEVEL,
};
use super::machine::{block_in_one_folio, Features, PtMachine};

/// The operations of the page-table API, as the checker needs to know them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Map,
    MapPmd,
    Unmap,
    /// One page's frame replaced by another, by break-before-make (copy-on-write).
    Replace,
    SplitAt,
    UnfoldEdges,
    Protect,
    Wrprotect,
    ClearYoungDirty,
    MakeWritable,
    TestAndClearYoung,
    AccessFlagFault,
    WriteFault,
    /// Entries taken from one range and stored at another (mremap): unmaps there,
    /// maps here.
    Move,
}

impl OpKind {
    fn may_map(self) -> bool {
        matches!(self, OpKind::Map | OpKind::MapPmd | OpKind::Move)
    }

    fn may_unmap(self) -> bool {
        matches!(self, OpKind::Unmap | OpKind::Move)
    }

    /// The output address may differ between the operation's start and end (the
    /// store-level rules still require the break: invalid entry, TLBI, DSB, new one).
    fn may_replace(self) -> bool {
        self == OpKind::Replace
    }

    fn may_clean(self) -> bool {
        self == OpKind::ClearYoungDirty
    }

    fn may_age(self) -> bool {
        matches!(self, OpKind::ClearYoungDirty | OpKind::TestAndClearYoung)
    }
}

/// What a TLBI covers, as the checker sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TlbiScope {
    Page { va: VirtAddr, last_level: bool },
    Range { va: VirtAddr, pages: usize },
    Asid,
}

struct Op {
    kind: OpKind,
    ranges: Vec<(VirtAddr, VirtAddr)>,
    bbml2: bool,
    /// Hardware dirty-state management: DBM then grants write permission.
    hw_dirty: bool,
    caller: &'static Location<'static>,
}

/// An entry the TLB may still hold although the tables no longer say so.
#[derive(Clone, Copy)]
struct Stale {
    old: Pte,
    tlbi_done: bool,
}

/// A 64 KiB block of level-3 entries touched by the current operation.
struct Touched {
    table: PhysAddr,
    before: [Pte; CONT_PTES],
    site: &'static Location<'static>,
}

/// The checker's state for one address space.
#[derive(Default)]
pub struct Checker {
    enabled: bool,
    op: Option<Op>,
    /// Keyed by (level, first VA of the entry).
    stale: BTreeMap<(Level, VirtAddr), Stale>,
    /// Keyed by the block's VA.
    touched: BTreeMap<VirtAddr, Touched>,
    /// 32 MiB groups of level-2 entries touched where a Contiguous bit was or is:
    /// the group's VA, its level-2 table.
    touched_l2: BTreeMap<VirtAddr, PhysAddr>,
}

impl Checker {
    pub fn new(enabled: bool) -> Self {
        Checker {
            enabled,
            ..Default::default()
        }
    }

    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Switches checking on or off, between operations.
    pub fn set_enabled(&mut self, enabled: bool) {
        assert!(self.op.is_none(), "checker switched during an operation");
        self.enabled = enabled;
    }

    #[inline]
    pub(crate) fn begin_op(
        &mut self,
        kind: OpKind,
        range: (VirtAddr, VirtAddr),
        features: Features,
        caller: &'static Location<'static>,
    ) {
        if self.enabled {
            self.op = Some(Op {
                kind,
                ranges: alloc::vec![range],
                bbml2: features.bbml2,
                hw_dirty: features.hw_dirty,
                caller,
            });
        }
    }

    pub(crate) fn widen(&mut self, start: VirtAddr, end: VirtAddr) {
        if let Some(op) = &mut self.op {
            op.ranges.push((start, end));
        }
    }

    pub(crate) fn before_store(&mut self, slot: &Slot<'_>) {
        if !self.enabled || slot.level() != LAST_LEVEL {
            return;
        }
        let first = slot.index & !(CONT_PTES - 1);
        let va = slot.va().align_down(CONT_SIZE);
        self.touched.entry(va).or_insert_with(|| Touched {
            table: slot.table.pa,
            before: core::array::from_fn(|i| slot.table.slot(first + i).load()),
            site: Location::caller(),
        });
    }

    pub(crate) fn after_store(
        &mut self,
        slot: &Slot<'_>,
        old: Pte,
        new: Pte,
        site: &'static Location<'static>,
    ) {
        if !self.enabled {
            return;
        }
        let (level, va) = (slot.level(), slot.va());
        if let Some(t) = self
            .touched
            .get_mut(&va.align_down(CONT_SIZE))
            .filter(|_| level == LAST_LEVEL)
        {
            t.site = site;
        }
        let op = self
            .op
            .as_ref()
            .expect("descriptor store outside a page-table operation");
        let (lo, hi) = match level {
            LAST_LEVEL => (
                va.align_down(CONT_SIZE),
                va.align_down(CONT_SIZE).add(CONT_SIZE),
            ),
            _ => (va, va.add(entry_size(level))),
        };
        if !op.ranges.iter().any(|&(s, e)| lo < e && s < hi) {
            self.fail_at(
                *slot,
                site,
                format_args!("store outside the operation's range {:?}", op.ranges),
            );
        }
        if (new.is_cont() || old.is_cont()) && level == CONT_PMD_LEVEL {
            self.touched_l2
                .insert(va.align_down(CONT_PMD_SIZE), slot.table.pa);
        } else if new.is_cont() && level != LAST_LEVEL {
            self.fail_at(*slot, site, format_args!("Contiguous bit at level {level}"));
        }
        self.track_break_before_make(*slot, old, new, site);
    }

    fn track_break_before_make(
        &mut self,
        slot: Slot<'_>,
        old: Pte,
        new: Pte,
        site: &'static Location<'static>,
    ) {
        let key = (slot.level(), slot.va());
        let hw_dirty = self.op.as_ref().is_some_and(|op| op.hw_dirty);
        match (old.is_valid(), new.is_valid()) {
            (true, true) => {
                self.check_make(
                    slot,
                    old,
                    new,
                    site,
                    "live entry replaced without break-before-make",
                );
                if Pte::needs_tlbi(old, new, hw_dirty) {
                    self.stale.insert(
                        key,
                        Stale {
                            old,
                            tlbi_done: false,
                        },
                    );
                }
            }
            (true, false) => {
                self.stale.insert(
                    key,
                    Stale {
                        old,
                        tlbi_done: false,
                    },
                );
            }
            (false, true) => {
                if let Kind::Table(pa) = new.kind(slot.level()) {
                    let linked = |(&(l, _), s): (&(Level, VirtAddr), &Stale)| {
                        s.old.kind(l) == Kind::Table(pa)
                    };
                    if let Some(((l, va), _)) = self.stale.iter().find(|e| linked(*e)) {
                        self.fail_at(
                            slot,
                            site,
                            format_args!(
                                "table {pa:?} linked before the TLBI and DSB of its old link (level-{l} entry at {va:?})"
                            ),
                        );
                    }
                }
                if let Some(s) = self.stale.get(&key).copied() {
                    self.check_make(
                        slot,
                        s.old,
                        new,
                        site,
                        "entry made before the TLBI and DSB of its break",
                    );
                    if !Pte::needs_tlbi(s.old, new, hw_dirty) {
                        self.stale.remove(&key);
                    }
                }
            }
            (false, false) => {}
        }
    }

    fn check_make(
        &self,
        slot: Slot<'_>,
        old: Pte,
        new: Pte,
        site: &'static Location<'static>,
        rule: &str,
    ) {
        let bbml2 = self.op.as_ref().is_some_and(|op| op.bbml2);
        match Pte::bbm_change(old, new) {
            BbmChange::None => {}
            BbmChange::ContOnly if bbml2 => {}
            BbmChange::ContOnly | BbmChange::Required => {
                self.fail_at(slot, site, format_args!("{rule}: {old:?} -> {new:?}"))
            }
        }
    }

    pub(crate) fn on_tlbi(&mut self, scope: TlbiScope) {
        for (&(level, va), s) in self.stale.iter_mut() {
            let (lo, hi) = (va, va.add(entry_size(level)));
            let leaf = s.old.is_leaf(level);
            s.tlbi_done |= match scope {
                TlbiScope::Page { va: t, last_level } => lo <= t && t < hi && (leaf || !last_level),
                TlbiScope::Range { va: t, pages } => {
                    leaf && lo < t.add(pages * PAGE_SIZE) && t < hi
                }
                TlbiScope::Asid => true,
            };
        }
    }

    pub(crate) fn on_dsb(&mut self) {
        self.stale.retain(|_, s| !s.tlbi_done);
    }

    pub(crate) fn on_free_table(&mut self, pa: PhysAddr) {
        if let Some((&(level, va), s)) = self
            .stale
            .iter()
            .find(|(&(level, _), s)| s.old.kind(level) == Kind::Table(pa))
        {
            self.fail(format_args!(
                "table {pa:?} freed while walk caches may hold it (level-{level} entry at {va:?}, {:?})",
                s.old
            ));
        }
        self.touched.retain(|_, t| t.table != pa);
        // A freed table is empty: its groups were cleared whole.
        self.touched_l2.retain(|_, &mut t| t != pa);
    }

    /// The level-2 block `old` at `va` becomes the level-3 table `table`: the new
    /// entries must carry what the block said (output address, AF, dirty).
    pub(crate) fn on_split_l2(&mut self, va: VirtAddr, old: Pte, table: PhysAddr) {
        if !self.enabled {
            return;
        }
        for block in 0..PMD_SIZE / CONT_SIZE {
            let before = core::array::from_fn(|i| {
                old.block_to_page(old.output_addr().add((block * CONT_PTES + i) * PAGE_SIZE))
            });
            let t = Touched {
                table,
                before,
                site: Location::caller(),
            };
            self.touched.insert(va.add(block * CONT_SIZE), t);
        }
    }

    pub(crate) fn end_op<E: PtMachine>(&mut self, env: &E, root: PhysAddr) {
        if !self.enabled {
            return;
        }
        if env.tracks_anon_exclusive() {
            self.check_writable_entries_are_exclusive(env, root);
        }
        if let Some((&(level, va), s)) = self.stale.iter().next() {
            let what = if s.tlbi_done {
                "missing DSB after TLBI"
            } else {
                "missing TLBI"
            };
            self.fail(format_args!(
                "{what}: level-{level} entry at {va:?} was {:?}",
                s.old
            ));
        }
        for (va, table) in core::mem::take(&mut self.touched_l2) {
            let first = (va.as_u64() as usize / PMD_SIZE) % PTRS_PER_TABLE;
            let now: [Pte; CONT_PMDS] =
                core::array::from_fn(|i| Pte::from_raw(env.table(table)[first + i].load(RELAXED)));
            let err = cont_block_violation(&now, CONT_PMD_LEVEL).or_else(|| {
                let base = now[0].output_addr();
                (now[0].is_cont() && !env.folio_of(base).contains(base, CONT_PMD_SIZE))
                    .then_some("spans two folios")
            });
            if let Some(err) = err {
                self.fail(format_args!(
                    "misprogrammed level-2 contiguous block at {va:?}: {err}: {now:?}"
                ));
            }
        }
        let touched = core::mem::take(&mut self.touched);
        for (&va, t) in &touched {
            let now: [Pte; CONT_PTES] = core::array::from_fn(|i| {
                Pte::from_raw(env.table(t.table)[index_in_table(va) + i].load(RELAXED))
            });
            if let Some(err) = block_rule_violation(env, &now) {
                self.fail_block(
                    va,
                    &now,
                    t.site,
                    format_args!("misprogrammed contiguous block: {err}"),
                );
            }
            if let Some(err) = self.conservation_violation(&t.before, &now) {
                self.fail_block(
                    va,
                    &now,
                    t.site,
                    format_args!("{err}; before: {:?}", t.before),
                );
            }
        }
        self.op = None;
    }

    /// Walks the operation's ranges: every writable or DBM user leaf must map a page
    /// the environment says is anon-exclusive.
    fn check_writable_entries_are_exclusive<E: PtMachine>(&self, env: &E, root: PhysAddr) {
        let op = self.op.as_ref().expect("in an operation");
        let mut cursor = Cursor::new(root);
        for &(start, end) in &op.ranges {
            let mut va = start.align_down(PAGE_SIZE);
            while va < end {
                let (entry, level, next) = match cursor.find(env, va) {
                    Found::Hole { level } => {
                        let size = entry_size(level);
                        va = va.align_down(size).add(size);
                        continue;
                    }
                    Found::Block(slot) => {
                        let size = entry_size(slot.level());
                        (slot.load(), slot.level(), slot.va().add(size))
                    }
                    Found::Ptes(table) => (table.slot_of(va).load(), LAST_LEVEL, va.add(PAGE_SIZE)),
                };
                let writable = entry.is_writable() || entry.is_hw_writable();
                if entry.is_leaf(level) && entry.is_user() {
                    let pa = entry.output_addr();
                    if writable && env.anon_exclusive(pa) == Some(false) {
                        self.fail(format_args!(
                            "writable entry over a page that is not anon-exclusive: level-{level} entry at {:?}: {entry:?}",
                            va.align_down(entry_size(level))
                        ));
                    }
                    if let Some(p) = env.pinned_shared(pa, entry_size(level) / PAGE_SIZE) {
                        self.fail(format_args!(
                            "entry over pinned page {p} that is not anon-exclusive: level-{level} entry at {:?}: {entry:?}",
                            va.align_down(entry_size(level))
                        ));
                    }
                }
                va = next;
            }
        }
    }

    fn conservation_violation(
        &self,
        before: &[Pte; CONT_PTES],
        now: &[Pte; CONT_PTES],
    ) -> Option<&'static str> {
        let kind = self.op.as_ref().expect("in an operation").kind;
        (0..CONT_PTES).find_map(|i| {
            let (b, a) = (view(before, i), view(now, i));
            match (b.is_valid(), a.is_valid()) {
                (true, false) if !kind.may_unmap() => {
                    Some("mapping removed by an operation that only changes entries")
                }
                (false, true) if !kind.may_map() => {
                    Some("mapping created by an operation that only changes entries")
                }
                (true, true) if b.output_addr() != a.output_addr() && !kind.may_replace() => {
                    Some("output address changed under a live mapping")
                }
                (true, true) if b.is_dirty() && !a.is_dirty() && !kind.may_clean() => {
                    Some("dirty state lost")
                }
                (true, true) if b.is_young() && !a.is_young() && !kind.may_age() => {
                    Some("access flag lost")
                }
                _ => None,
            }
        })
    }

    fn fail_at(
        &self,
        slot: Slot<'_>,
        site: &'static Location<'static>,
        what: fmt::Arguments<'_>,
    ) -> ! {
        if slot.level() == LAST_LEVEL {
            let first = slot.index & !(CONT_PTES - 1);
            let entries: [Pte; CONT_PTES] =
                core::array::from_fn(|i| slot.table.slot(first + i).load());
            self.fail_block(slot.va().align_down(CONT_SIZE), &entries, site, what)
        } else {
            let op = self.describe_op();
            panic!(
                "pgtable checker: {what}\n  {op}\n  store at {site}\n  level-{} entry at {:?}: {:?}",
                slot.level(),
                slot.va(),
                slot.load()
            )
        }
    }

    fn fail_block(
        &self,
        va: VirtAddr,
        entries: &[Pte; CONT_PTES],
        site: &'static Location<'static>,
        what: fmt::Arguments<'_>,
    ) -> ! {
        let op = self.describe_op();
        let dump = BlockDump { va, entries };
        panic!("pgtable checker: {what}\n  {op}\n  last store at {site}\n{dump}")
    }

    fn fail(&self, what: fmt::Arguments<'_>) -> ! {
        let op = self.describe_op();
        panic!("pgtable checker: {what}\n  {op}")
    }

    fn describe_op(&self) -> alloc::string::String {
        match &self.op {
            Some(op) => alloc::format!(
                "operation {:?} on {:?}, called at {}",
                op.kind,
                op.ranges[0],
                op.caller
            ),
            None => "outside an operation".into(),
        }
    }
}

const RELAXED: core::sync::atomic::Ordering = core::sync::atomic::Ordering::Relaxed;

fn index_in_table(va: VirtAddr) -> usize {
    (va.as_u64() as usize % PMD_SIZE) / PAGE_SIZE
}

/// The architecture's contiguous-block rule plus this kernel's own: a contiguous
/// block maps one folio (so that splitting or freeing a folio never leaves half a
/// block behind).
fn block_rule_violation<E: PtMachine>(env: &E, entries: &[Pte; CONT_PTES]) -> Option<&'static str> {
    if let Some(err) = cont_block_violation(entries, LAST_LEVEL) {
        return Some(err);
    }
    let cont = entries[0].is_cont();
    (cont && !block_in_one_folio(env, entries[0].output_addr())).then_some("spans two folios")
}

struct BlockDump<'a> {
    va: VirtAddr,
    entries: &'a [Pte; CONT_PTES],
}

impl fmt::Display for BlockDump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  block at {:?}:", self.va)?;
        for (i, e) in self.entries.iter().enumerate() {
            writeln!(f, "    [{i:2}] {:?} {e:?}", self.va.add(i * PAGE_SIZE))?;
        }
        Ok(())
    }
}
