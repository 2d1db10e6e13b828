//! Collapse: give ranges mapped by small pages their large translation back, the
//! work of Linux's khugepaged for every mTHP order, plus what Linux lacks (collapse in
//! place) and MADV_COLLAPSE for every order.
//!
//! ```text
//! mod.rs       the tunables (khugepaged/ in sysfs), the limits, the outcomes
//! scan.rs      one block: survey its entries and decide; one 2 MiB window: the
//!              bitmap of occupied entries and the binary-tree search of orders
//! in_place.rs  entries already map one aligned run of frames: merge the folios'
//!              metadata if several, refold (64 KiB) or replace the table (2 MiB)
//! copy.rs      otherwise: allocate, copy, remap with one batched set_ptes
//! madvise.rs   MADV_COLLAPSE: the same engine, synchronous
//! hints.rs     where CoW copies and splits broke a mapping: visited first
//! ```
//!
//! The collapse thread itself, which walks the processes, is `proc::khugepaged`
//! (processes are above memory management: the arrows point down).
//!
//! ## Which blocks, which order
//!
//! Per 2 MiB window of a VMA the scan takes a bitmap of the occupied entries, then
//! searches the binary tree of orders from the largest (PMD, order 9) down to order 2,
//! as Nico Pache's mTHP khugepaged does: a block of an order the policy allows
//! (`mthp::Policy::allowed_orders`) is tried whole; if it does not qualify or its
//! collapse fails, its two halves are tried at the next order. A block already mapped
//! by one folio of at least its order with its contiguous blocks folded is left alone,
//! and so are the blocks inside it.
//!
//! `max_ptes_none` (Linux's default 511) bounds the unmapped entries a collapse may
//! fill with zeroes, scaled to the order: `max_ptes_none >> (9 - order)`. For the mTHP
//! orders only 0 and 511 are accepted, as in Linux's series; any other value skips
//! mTHP collapse (the PMD order still uses it). The reason is **creep**: with a value
//! above half the block, collapsing a half-full block of order n doubles the present
//! pages, which makes the enclosing block of order n + 1 at least half full, hence
//! eligible at the next scan, and so on up to 2 MiB: memory bloats one order per scan
//! from a single touched page. With 0 a collapse never adds present pages (no
//! creep); with 511 the largest allowed order is tried first and takes the block in
//! one step (there is nothing left to creep to). The host test
//! `mm::tests::collapse::max_ptes_none_does_not_creep` shows it.
//!
//! Clean lazyfree pages (MADV_FREE'd, not written since): the thread skips the block,
//! as Linux 7.x's khugepaged does, since a collapse would make memory that reclaim may
//! discard into memory it must keep (counted as `/proc/lazyfree`'s
//! `lazyfree_collapse_skipped`); MADV_COLLAPSE takes them.
//!
//! Shared pages (mapped by more than one address space): the thread skips an mTHP
//! block with any, a PMD block with more than `max_ptes_shared` (Linux's default
//! 256), counting `collapse_exceed_shared_pte`; MADV_COLLAPSE takes them (it copies:
//! the other mappings keep the old pages). No swap exists, so
//! `collapse_exceed_swap_pte` stays 0.
//!
//! ## Writes during a collapse
//!
//! The caller holds the `Mm` lock for one block's collapse. The process itself may
//! still store through its TLB on another CPU, so a copy first write-protects the
//! block (one batched `wrprotect`, TLBI included): from then on a store faults and its
//! fault waits for the `Mm` lock, and retries once the collapse has remapped the block
//! with the copy. A write is therefore either in the copy or made after it, never
//! lost. The lock is held for one block at most (a 2 MiB copy) and dropped between
//! windows, so faults elsewhere in the process wait at most one block's collapse.
//!
//! ## Folios
//!
//! A copy allocates a new folio (`folio::alloc_anon`), maps it and drops the old
//! pages' references through `install::release`, folio by folio under their locks. An
//! in-place collapse of a run of several folios merges them (`folio::merge`, rule 5 of
//! the folio protocol: try-locks only, refused while anyone else holds a reference or
//! the deferred-split queue has one), and refolds while holding the merged folio's
//! lock, as it holds the single folio's lock when there is one, so that no split
//! changes its shape under the refold.

mod copy;
mod hints;
mod in_place;
mod madvise;
mod scan;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::mthp::PMD_ORDER;

pub use hints::{
    follow_move, forget_range, hint, hint_edges, take_hint, CAPACITY, HINTS_DROPPED, HINTS_QUEUED,
};
pub use madvise::madvise_order;
pub use scan::WindowScan;

/// The largest `max_ptes_none` / `max_ptes_shared`: one less than a PMD's entries.
pub const MAX_PTES_LIMIT: u32 = (1 << PMD_ORDER) - 1;

/// A tunable under `/sys/kernel/mm/transparent_hugepage/khugepaged/`.
pub struct Tunable {
    value: AtomicU32,
    min: u32,
    max: u32,
}

impl Tunable {
    const fn new(default: u32, min: u32, max: u32) -> Self {
        Tunable {
            value: AtomicU32::new(default),
            min,
            max,
        }
    }

    pub fn get(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    pub fn set(&self, v: u32) {
        self.value.store(v, Ordering::Relaxed);
    }

    /// A sysfs write (Linux's `kstrtouint` then the range check): EINVAL leaves the
    /// value as it was.
    pub fn write(&self, buf: &str) -> Result<(), i32> {
        let v: u32 = buf
            .strip_suffix('\n')
            .unwrap_or(buf)
            .parse()
            .map_err(|_| crate::uapi::EINVAL)?;
        if v < self.min || v > self.max {
            return Err(crate::uapi::EINVAL);
        }
        self.set(v);
        Ok(())
    }
}

/// Entries the thread examines per wake-up (Linux: 8 PMDs' worth).
pub static PAGES_TO_SCAN: Tunable = Tunable::new(8 << PMD_ORDER, 1, u32::MAX);
/// Sleep between wake-ups.
pub static SCAN_SLEEP_MILLISECS: Tunable = Tunable::new(10_000, 0, u32::MAX);
/// Sleep after a failed allocation.
pub static ALLOC_SLEEP_MILLISECS: Tunable = Tunable::new(60_000, 0, u32::MAX);
/// Unmapped entries a PMD collapse may fill (scaled per order; see the module docs).
pub static MAX_PTES_NONE: Tunable = Tunable::new(MAX_PTES_LIMIT, 0, MAX_PTES_LIMIT);
/// Shared pages a PMD collapse by the thread may take.
pub static MAX_PTES_SHARED: Tunable = Tunable::new(1 << (PMD_ORDER - 1), 0, MAX_PTES_LIMIT);

/// Swapped-out entries a collapse may bring back (Linux's default, an eighth of a
/// PMD): this kernel has no swap, so no entry is ever swapped out and it changes nothing.
pub static MAX_PTES_SWAP: Tunable = Tunable::new(1 << (PMD_ORDER - 3), 0, MAX_PTES_LIMIT);
/// Whether the thread may stall to allocate (Linux's `khugepaged/defrag`, default 1):
/// this kernel's allocations never stall (no compaction), so it changes nothing.
pub static DEFRAG: Tunable = Tunable::new(1, 0, 1);

/// Blocks the thread collapsed, of any order, by copy or in place.
pub static PAGES_COLLAPSED: AtomicU64 = AtomicU64::new(0);
/// Times the thread went round every process.
pub static FULL_SCANS: AtomicU64 = AtomicU64::new(0);

/// What a collapse of one block may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `max_ptes_none` on the PMD scale (0..=511).
    pub max_none: u32,
    /// `max_ptes_shared` on the PMD scale; mTHP orders take none when `thread`.
    pub max_shared: u32,
    /// The collapse thread (counts `pages_collapsed`, applies the mTHP rules) rather
    /// than MADV_COLLAPSE.
    pub thread: bool,
}

impl Limits {
    /// The thread's, from the tunables.
    pub fn thread() -> Limits {
        Limits {
            max_none: MAX_PTES_NONE.get(),
            max_shared: MAX_PTES_SHARED.get(),
            thread: true,
        }
    }

    /// MADV_COLLAPSE's: as Linux, the tunables do not apply.
    pub const MADVISE: Limits = Limits {
        max_none: MAX_PTES_LIMIT,
        max_shared: MAX_PTES_LIMIT,
        thread: false,
    };

    /// Unmapped entries a block of `order` may have, or `None` if mTHP collapse is
    /// refused for this value (anything but 0 and 511 for orders below PMD).
    pub fn none_allowed(&self, order: usize) -> Option<usize> {
        if order < PMD_ORDER && self.max_none != 0 && self.max_none != MAX_PTES_LIMIT {
            return None;
        }
        Some((self.max_none >> (PMD_ORDER - order)) as usize)
    }

    /// Shared pages a block of `order` may have.
    pub fn shared_allowed(&self, order: usize) -> usize {
        if order < PMD_ORDER && self.thread {
            0
        } else {
            self.max_shared as usize
        }
    }
}

/// How a block came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collapsed {
    /// It was mapped by one folio of at least its order already: nothing done.
    Already,
    /// Refolded in place: no copy, no allocation.
    InPlace,
    /// Copied into a new folio.
    Copied,
}

/// Why a block was not collapsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// Nothing is mapped in it.
    Empty,
    /// More unmapped entries than `max_ptes_none` allows (or a refused value).
    ExceedNone,
    /// More shared pages than allowed.
    ExceedShared,
    /// No folio of the order could be allocated.
    NoMemory,
    /// A folio was locked by someone else: try again later.
    Busy,
    /// Clean lazyfree pages: the thread leaves them to reclaim.
    Lazyfree,
    /// Pages someone holds beyond their mappings (pinned): a copy would leave the
    /// holder behind.
    Pinned,
}

impl Fail {
    /// MADV_COLLAPSE's errno for it (Linux's `madvise_collapse_errno`).
    pub fn errno(self) -> crate::uapi::Errno {
        use crate::uapi::{EAGAIN, EBUSY, EINVAL, ENOMEM};
        match self {
            Fail::NoMemory => ENOMEM,
            Fail::Busy | Fail::Lazyfree | Fail::Pinned => EAGAIN,
            Fail::ExceedNone => EBUSY,
            Fail::Empty | Fail::ExceedShared => EINVAL,
        }
    }
}
