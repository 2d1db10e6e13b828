//! Walking the four levels of a user address space, allocating and freeing tables.
//!
//! A [`Cursor`] remembers the tables on the path to the last address it visited, so
//! that walking a range costs one descent per 2 MiB rather than per page (the shape of
//! Asterinas OSTD's page-table cursor). It holds physical addresses only; it borrows the
//! machine for the duration of one call.
//!
//! Invariants the cursor relies on (all operations run under the address-space lock,
//! which `&mut PageTable` stands for):
//! * tables are linked and unlinked only by this layer, under the lock, so the cached
//!   path stays valid for the whole operation except where the layer itself replaces a
//!   level-2 block by a table (it then calls [`Cursor::forget_below`]);
//! * tables are freed only at the end of an operation ([`free_empty_tables`]), after
//!   the cursor is gone;
//! * the hardware walker changes AF and dirty state only, never table descriptors.

use crate::mm::addr::{PhysAddr, VirtAddr, PTRS_PER_TABLE};

use super::desc::{entry_size, Kind, Level, Pte, LAST_LEVEL};
use super::machine::{PtMachine, TableEntries};

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
    pub fn new<E: PtMachine>(env: &'a E, pa: PhysAddr, level: Level, va: VirtAddr) -> Self {
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

    /// No entry is valid. Runs after every unmap on tables that are then mostly
    /// empty, so it ORs 16 entries at a time and tests once per 16 loads.
    pub fn is_empty(&self) -> bool {
        self.entries.chunks_exact(16).all(|chunk| {
            let any = chunk.iter().fold(0, |acc, e| {
                acc | e.load(core::sync::atomic::Ordering::Relaxed)
            });
            !Pte::from_raw(any).is_valid()
        })
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
    pub fn find<'a, E: PtMachine>(&mut self, env: &'a E, va: VirtAddr) -> Found<'a> {
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

    /// The table at `level` on the path to the address last found (after `find`
    /// reported a hole at that level).
    pub fn table_at<'a, E: PtMachine>(&self, env: &'a E, level: Level) -> Table<'a> {
        Table::new(env, self.path[level].expect("cached path"), level, self.va)
    }
}
