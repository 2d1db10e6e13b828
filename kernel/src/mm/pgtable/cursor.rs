//! Walking the four levels of a user address space, allocating and freeing tables.
//!
//! A [`Cursor`] remembers the tables on the path to the last address it visited, so
//! that walking a range costs one descent per 2 MiB rather than per page (the shape of
//! Asterinas OSTD's page-table cursor). It holds physical addresses only; it borrows the
//! machine for the duration of one call.
//!
//! Invariants the cursor relies on (all operations run under the address-space lock,
//! which `&mut AddressSpace` stands for):
//! * tables are linked and unlinked only by this layer, under the lock, so the cached
//!   path stays valid for the whole operation except where the layer itself replaces a
//!   level-2 block by a table (it then calls [`Cursor::forget_below`]);
//! * tables are freed only at the end of an operation ([`free_empty_tables`]), after
//!   the cursor is gone;
//! * the hardware walker changes AF and dirty state only, never table descriptors.

use crate::mm::addr::{PhysAddr, VirtAddr, PTRS_PER_TABLE};

use super::ctx::{Ctx, Write};
use super::desc::{entry_size, Kind, Level, Pte, LAST_LEVEL};
use super::env::{PtEnv, TableEntries};
use super::MapError;

/// Bytes covered by a whole table at `level` (the root covers the 48-bit space).
const fn table_span(level: Level) -> u64 {
    (entry_size(level) * PTRS_PER_TABLE) as u64
}

/// One translation table, as found during a walk.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    pub pa: PhysAddr,
    pub level: Level,
    /// The virtual address that entry 0 maps.
    pub base: VirtAddr,
    pub entries: &'a TableEntries,
}

impl<'a> Table<'a> {
    pub fn new<E: PtEnv>(env: &'a E, pa: PhysAddr, level: Level, va: VirtAddr) -> Self {
        let base = VirtAddr(va.as_u64() & !(table_span(level) - 1));
        Table {
            pa,
            level,
            base,
            entries: env.table(pa),
        }
    }

    /// The end of the range this table maps.
    pub fn end(&self) -> VirtAddr {
        self.base.add(table_span(self.level) as usize)
    }

    pub fn index_of(&self, va: VirtAddr) -> usize {
        va.offset_from(self.base) / entry_size(self.level)
    }

    pub fn slot(&self, index: usize) -> Slot<'a> {
        assert!(index < PTRS_PER_TABLE);
        Slot {
            table: *self,
            index,
        }
    }

    pub fn slot_of(&self, va: VirtAddr) -> Slot<'a> {
        self.slot(self.index_of(va))
    }

    pub fn is_empty(&self) -> bool {
        (0..PTRS_PER_TABLE).all(|i| !self.slot(i).load().is_valid())
    }
}

/// One descriptor in a table: the unit the single store function writes.
#[derive(Clone, Copy)]
pub(crate) struct Slot<'a> {
    pub table: Table<'a>,
    pub index: usize,
}

impl Slot<'_> {
    pub fn level(&self) -> Level {
        self.table.level
    }

    /// The first virtual address this entry maps.
    pub fn va(&self) -> VirtAddr {
        self.table
            .base
            .add(self.index * entry_size(self.table.level))
    }

    pub fn load(&self) -> Pte {
        Pte::from_raw(self.table.entries[self.index].load(core::sync::atomic::Ordering::Relaxed))
    }
}

/// What a walk toward a level-3 entry found.
pub(crate) enum Found<'a> {
    /// The entry at `level` (0..=2) is invalid: nothing is mapped in its range.
    Hole { level: Level },
    /// A level-1 or level-2 block maps the address.
    Block(Slot<'a>),
    /// The level-3 table covering the address.
    Ptes(Table<'a>),
}

/// A position in one address space, with the path of tables to it.
pub(crate) struct Cursor {
    va: VirtAddr,
    /// `path[l]` is the table at level `l` on the way to `va`, when known.
    path: [Option<PhysAddr>; LAST_LEVEL + 1],
}

impl Cursor {
    pub fn new(root: PhysAddr) -> Self {
        Cursor {
            va: VirtAddr(0),
            path: [Some(root), None, None, None],
        }
    }

    /// Moves to `va`, keeping the part of the path that still leads there.
    fn seek(&mut self, va: VirtAddr) {
        for level in 1..=LAST_LEVEL {
            let span = table_span(level);
            if va.as_u64() / span != self.va.as_u64() / span {
                self.forget_below(level - 1);
                break;
            }
        }
        self.va = va;
    }

    /// Drops the cached tables below `level` (after the entry at `level` changed).
    pub fn forget_below(&mut self, level: Level) {
        self.path[level + 1..].fill(None);
    }

    fn deepest(&self) -> Level {
        (0..=LAST_LEVEL)
            .rev()
            .find(|&l| self.path[l].is_some())
            .unwrap_or(0)
    }

    /// Walks toward the level-3 entry of `va` without changing anything.
    pub fn find<'a, E: PtEnv>(&mut self, env: &'a E, va: VirtAddr) -> Found<'a> {
        self.seek(va);
        let mut level = self.deepest();
        loop {
            let table = Table::new(env, self.path[level].expect("cached path"), level, va);
            if level == LAST_LEVEL {
                return Found::Ptes(table);
            }
            let slot = table.slot_of(va);
            match slot.load().kind(level) {
                Kind::Invalid => return Found::Hole { level },
                Kind::Block | Kind::Page => return Found::Block(slot),
                Kind::Table(next) => {
                    self.path[level + 1] = Some(next);
                    level += 1;
                }
            }
        }
    }

    /// Walks to the entry of `va` at `target` (2 or 3), allocating missing tables on
    /// the way. Fails if a block maps `va` above `target`, or on allocation failure.
    pub fn slot_alloc<'a, E: PtEnv>(
        &mut self,
        ctx: &mut Ctx<'a, E>,
        va: VirtAddr,
        target: Level,
    ) -> Result<Slot<'a>, MapError> {
        loop {
            match self.find(ctx.env, va) {
                Found::Ptes(table) if target == LAST_LEVEL => return Ok(table.slot_of(va)),
                Found::Block(slot) if slot.level() == target => return Ok(slot),
                Found::Ptes(_) | Found::Block(_) => return Err(MapError::AlreadyMapped),
                Found::Hole { level } => {
                    let table =
                        Table::new(ctx.env, self.path[level].expect("cached path"), level, va);
                    if level == target {
                        return Ok(table.slot_of(va));
                    }
                    let new = ctx.alloc_table(va)?;
                    ctx.publish_barrier();
                    ctx.store(table.slot_of(va), Write::Swap(Pte::table(new)));
                }
            }
        }
    }
}

/// Frees the tables on the path to `va` that have become empty, deepest first; the
/// root is never freed.
///
/// Each one is unlinked, then a TLBI by VA that includes walk-cache entries (not
/// last-level only) and a DSB remove it from the walk caches, and only then is it
/// freed: a table must not be reused while a walker may still read it
/// (break-before-make applies to table descriptors too; the checker verifies it).
pub(crate) fn free_empty_tables<E: PtEnv>(ctx: &mut Ctx<'_, E>, va: VirtAddr) {
    let mut path = [ctx.root; LAST_LEVEL + 1];
    let mut depth = 0;
    while depth < LAST_LEVEL {
        let table = Table::new(ctx.env, path[depth], depth, va);
        match table.slot_of(va).load().kind(depth) {
            Kind::Table(next) => {
                depth += 1;
                path[depth] = next;
            }
            _ => break,
        }
    }
    for level in (1..=depth).rev() {
        let table = Table::new(ctx.env, path[level], level, va);
        if !table.is_empty() {
            return;
        }
        let parent = Table::new(ctx.env, path[level - 1], level - 1, va);
        ctx.store(parent.slot_of(va), Write::Swap(Pte::INVALID));
        ctx.tlbi_page(va, false);
        ctx.dsb();
        ctx.free_table(table.pa);
    }
}
