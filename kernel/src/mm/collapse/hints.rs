//! Hints: where a copy-on-write copy, a split of a 2 MiB block or a partial unmap
//! just broke a large mapping, the collapse thread looks first (the maintainers' own
//! suggestion, seed 004). A hint names the address space by its root table and the
//! 2 MiB window. The queue is bounded ([`CAPACITY`]); a hint arriving when it is full
//! is dropped and counted: hints only reorder the scan, which reaches every window
//! anyway. The queue lock is a leaf (nothing is taken under it).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::addr::PMD_SIZE;
use crate::mm::aspace::Mm;
use crate::mm::machine::MmMachine;
use crate::mm::{PhysAddr, VirtAddr};
use crate::sync::IrqSpinLock;

/// Hints the queue holds at most.
pub const CAPACITY: usize = 64;

/// Hints queued, and dropped because the queue was full.
pub static HINTS_QUEUED: AtomicU64 = AtomicU64::new(0);
pub static HINTS_DROPPED: AtomicU64 = AtomicU64::new(0);

struct Ring {
    items: [(PhysAddr, VirtAddr); CAPACITY],
    head: usize,
    len: usize,
}

static QUEUE: IrqSpinLock<Ring> = IrqSpinLock::new(Ring {
    items: [(PhysAddr(0), VirtAddr(0)); CAPACITY],
    head: 0,
    len: 0,
});

/// Queue the 2 MiB window around `va` of `mm` (a duplicate of a queued one is not
/// queued twice).
pub fn hint<E: MmMachine>(mm: &Mm<E>, va: VirtAddr) {
    let item = (mm.tables.root(), va.align_down(PMD_SIZE));
    let mut q = QUEUE.lock();
    let queued = (0..q.len).any(|i| q.items[(q.head + i) % CAPACITY] == item);
    if queued {
        return;
    }
    if q.len == CAPACITY {
        HINTS_DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let tail = (q.head + q.len) % CAPACITY;
    q.items[tail] = item;
    q.len += 1;
    HINTS_QUEUED.fetch_add(1, Ordering::Relaxed);
}

/// Hint the windows that `start` and `end` cut (a split or partial unmap there).
pub fn hint_edges<E: MmMachine>(mm: &Mm<E>, start: VirtAddr, end: VirtAddr) {
    for va in [start, end] {
        if !va.is_aligned(PMD_SIZE) {
            hint(mm, va);
        }
    }
}

/// `mm`'s pages in `[start, end)` moved by `delta` bytes up or down (mremap): its
/// hints for windows there follow them.
pub fn follow_move<E: MmMachine>(mm: &Mm<E>, start: VirtAddr, end: VirtAddr, to: VirtAddr) {
    let root = mm.tables.root();
    let mut q = QUEUE.lock();
    let (head, len) = (q.head, q.len);
    for i in 0..len {
        let (r, va) = q.items[(head + i) % CAPACITY];
        let window_end = va.add(PMD_SIZE);
        if r == root && va < end && start < window_end {
            let at = va.max(start);
            let moved = to.add(at.offset_from(start));
            q.items[(head + i) % CAPACITY] = (root, moved.align_down(PMD_SIZE));
        }
    }
}

/// `mm`'s pages in `[start, end)` are gone (munmap): the hints for windows wholly
/// inside name nothing to collapse and go. Left queued they kept the queue full until
/// the collapse thread's next round, and every new hint scans the queue for its
/// duplicate: a 64 MiB copy at 64 KiB after an mremap's hints cost 380 instructions
/// more per copy-on-write fault than after none (bench_mm).
pub fn forget_range<E: MmMachine>(mm: &Mm<E>, start: VirtAddr, end: VirtAddr) {
    let root = mm.tables.root();
    let mut q = QUEUE.lock();
    let (head, len) = (q.head, q.len);
    let mut kept = 0;
    for i in 0..len {
        let (r, va) = q.items[(head + i) % CAPACITY];
        if r == root && start <= va && va.add(PMD_SIZE) <= end {
            continue;
        }
        // In place and in order: `kept <= i`, so no hint is overwritten unread.
        q.items[(head + kept) % CAPACITY] = (r, va);
        kept += 1;
    }
    q.len = kept;
}

/// The oldest hint: (root table of the address space, 2 MiB window).
pub fn take_hint() -> Option<(PhysAddr, VirtAddr)> {
    let mut q = QUEUE.lock();
    if q.len == 0 {
        return None;
    }
    let item = q.items[q.head];
    q.head = (q.head + 1) % CAPACITY;
    q.len -= 1;
    Some(item)
}
