//! Folios: a naturally aligned block of 2^order frames that user memory is allocated,
//! mapped, shared and freed as, described by its head frame's metadata (`frame`): the
//! order, one reference per page-table entry mapping a page of it (plus short-lived
//! references such as the allocation's own), a map count per page and their total, and
//! flags (anonymous, anon-exclusive per page, queued for deferred split).
//!
//! A large folio whose pages are partly unmapped ("partially mapped": some page has map
//! count 0 while others are mapped) keeps its unmapped pages until it is split. It goes
//! on the deferred-split queue; the shrinker (`shrink_deferred`) splits it into 64 KiB
//! folios, and those that are themselves partially mapped into 4 KiB ones, freeing every
//! part no one maps. Since a page with map count 0 is mapped by nobody, no contiguous
//! block or 2 MiB block anywhere covers it, so a split never leaves a contiguous block
//! spanning two folios, and needs no reverse map to stay correct.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::frame::{flags, frames, FrameMeta};
use super::mthp;
use super::{PhysAddr, PAGE_SIZE};
use crate::sync::IrqSpinLock;

/// The order of a contiguous block of level-3 entries (64 KiB).
const CONT_ORDER: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folio {
    head: PhysAddr,
}

impl Folio {
    /// The folio containing `pa` (an allocated frame).
    pub fn of(pa: PhysAddr) -> Folio {
        let (head, _) = frames()
            .block_of(pa)
            .unwrap_or_else(|| panic!("folio of free frame {pa}"));
        Folio { head }
    }

    pub fn head(self) -> PhysAddr {
        self.head
    }

    pub fn order(self) -> usize {
        self.meta(0).order()
    }

    pub fn nr_pages(self) -> usize {
        1 << self.order()
    }

    /// Page `i` of the folio.
    pub fn page(self, i: usize) -> PhysAddr {
        self.head.add(i * PAGE_SIZE)
    }

    /// The index of `pa` in the folio.
    pub fn index(self, pa: PhysAddr) -> usize {
        (pa.as_u64() - self.head.as_u64()) as usize / PAGE_SIZE
    }

    fn meta(self, i: usize) -> &'static FrameMeta {
        frames().meta(self.page(i))
    }

    pub fn refcount(self) -> u32 {
        self.meta(0).refcount.load(Ordering::Acquire)
    }

    pub fn mapcount(self, i: usize) -> i32 {
        self.meta(i).mapcount.load(Ordering::Acquire)
    }

    pub fn total_mapcount(self) -> i32 {
        self.meta(0).total_mapcount.load(Ordering::Acquire)
    }

    pub fn is_large(self) -> bool {
        self.order() > 0
    }

    /// Account `n` new page-table entries mapping pages `first..first + n`.
    pub fn map(self, first: usize, n: usize) {
        for i in first..first + n {
            self.meta(i).mapcount.fetch_add(1, Ordering::AcqRel);
        }
        self.meta(0)
            .total_mapcount
            .fetch_add(n as i32, Ordering::AcqRel);
        self.meta(0).refcount.fetch_add(n as u32, Ordering::AcqRel);
    }

    /// Account `n` page-table entries gone from pages `first..first + n`: the last
    /// reference frees the folio; a large folio left partially mapped is queued for
    /// deferred split.
    pub fn unmap(self, first: usize, n: usize) {
        let mut emptied = false;
        for i in first..first + n {
            emptied |= self.meta(i).mapcount.fetch_sub(1, Ordering::AcqRel) == 1;
        }
        self.meta(0)
            .total_mapcount
            .fetch_sub(n as i32, Ordering::AcqRel);
        let freed = self.put(n as u32);
        if !freed && emptied && self.is_large() && self.total_mapcount() > 0 {
            queue_deferred(self);
        }
    }

    /// Drop `n` references; the last one frees the folio. Returns whether it did.
    pub fn put(self, n: u32) -> bool {
        let old = self.meta(0).refcount.fetch_sub(n, Ordering::AcqRel);
        assert!(old >= n, "folio {} put {n} with refcount {old}", self.head);
        if old == n {
            self.free();
            return true;
        }
        false
    }

    fn free(self) {
        let order = self.order();
        let head = self.meta(0);
        if head.set(flags::DEFERRED, false) {
            DEFERRED.lock().retain(|&h| h != self.head);
            mthp::stats(order)
                .nr_anon_partially_mapped
                .fetch_sub(1, Ordering::Relaxed);
        }
        if head.test(flags::ANON) {
            mthp::stats(order).nr_anon.fetch_sub(1, Ordering::Relaxed);
        }
        head.refcount.store(0, Ordering::Release);
        frames().free(self.head, order);
    }

    /// Every page is mapped exactly once and nothing else holds a reference: the one
    /// mapping may take the whole folio over (copy-on-write reuse).
    pub fn mapped_exactly_once(self) -> bool {
        let n = self.nr_pages();
        self.refcount() as usize == n
            && self.total_mapcount() as usize == n
            && (0..n).all(|i| self.mapcount(i) == 1)
    }

    /// Mark pages `first..first + n` exclusive to one address space, or shared.
    pub fn set_exclusive(self, first: usize, n: usize, exclusive: bool) {
        for i in first..first + n {
            self.meta(i).set(flags::ANON_EXCLUSIVE, exclusive);
        }
    }

    pub fn is_exclusive(self, i: usize) -> bool {
        self.meta(i).test(flags::ANON_EXCLUSIVE)
    }

    /// Whether the folio is waiting for a deferred split.
    pub fn is_deferred(self) -> bool {
        self.meta(0).test(flags::DEFERRED)
    }
}

/// Split the consecutive pages `[pa, pa + n pages)` at folio boundaries: calls
/// `f(folio, first page index, count)` for each folio the range touches, in order.
pub fn for_each_folio(pa: PhysAddr, n: usize, mut f: impl FnMut(Folio, usize, usize)) {
    let mut k = 0;
    while k < n {
        let p = pa.add(k * PAGE_SIZE);
        let folio = Folio::of(p);
        let first = folio.index(p);
        let count = (folio.nr_pages() - first).min(n - k);
        f(folio, first, count);
        k += count;
    }
}

/// A zeroed anonymous folio of `order`, holding the allocation's reference (drop it
/// with `put(1)` once the pages are mapped).
#[cfg(target_os = "none")]
pub fn alloc_anon(order: usize) -> Option<Folio> {
    let head = super::frame::alloc_zeroed(order)?;
    let f = Folio { head };
    f.meta(0).set(flags::ANON, true);
    mthp::stats(order).nr_anon.fetch_add(1, Ordering::Relaxed);
    Some(f)
}

static DEFERRED: IrqSpinLock<Vec<PhysAddr>> = IrqSpinLock::new(Vec::new());

fn queue_deferred(f: Folio) {
    if !f.meta(0).set(flags::DEFERRED, true) {
        DEFERRED.lock().push(f.head);
        let s = mthp::stats(f.order());
        s.split_deferred.fetch_add(1, Ordering::Relaxed);
        s.nr_anon_partially_mapped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Folios waiting on the deferred-split queue.
pub fn deferred_count() -> usize {
    DEFERRED.lock().len()
}

/// Free memory below 1/64 of RAM: time to give back what partially mapped folios hold.
const LOW_WATERMARK_DIVISOR: usize = 64;

/// Run the shrinker if free memory is under the low watermark and folios are waiting.
pub fn shrink_if_low() {
    let f = frames();
    if f.free_frames() < f.managed_frames() / LOW_WATERMARK_DIVISOR && deferred_count() > 0 {
        shrink_deferred();
    }
}

/// The shrinker: split every queued folio that can be split; returns how many were.
/// A folio someone holds an extra reference to (beyond its mappings) cannot be split
/// now and stays queued.
pub fn shrink_deferred() -> usize {
    let queued = core::mem::take(&mut *DEFERRED.lock());
    let mut done = 0;
    for head in queued {
        let f = Folio { head };
        f.meta(0).set(flags::DEFERRED, false);
        let order = f.order();
        let s = mthp::stats(order);
        s.nr_anon_partially_mapped.fetch_sub(1, Ordering::Relaxed);
        if f.refcount() != f.total_mapcount() as u32 {
            s.split_failed.fetch_add(1, Ordering::Relaxed);
            queue_deferred(f);
            continue;
        }
        split(f);
        s.split.fetch_add(1, Ordering::Relaxed);
        done += 1;
    }
    done
}

/// Split `f` (refcount == total map count): into 64 KiB folios, then the partially
/// mapped ones into 4 KiB folios; every resulting folio no one maps is freed.
fn split(f: Folio) {
    let order = f.order();
    let anon = f.meta(0).test(flags::ANON);
    if anon {
        mthp::stats(order).nr_anon.fetch_sub(1, Ordering::Relaxed);
    }
    let mapped = |sub: PhysAddr, n: usize| {
        (0..n)
            .map(|i| {
                frames()
                    .meta(sub.add(i * PAGE_SIZE))
                    .mapcount
                    .load(Ordering::Acquire) as u32
            })
            .sum::<u32>()
    };
    let mid = if order > CONT_ORDER { CONT_ORDER } else { 0 };
    frames().split_block(f.head, order, mid, |sub| mapped(sub, 1 << mid));
    // f's own metadata now says order `mid`: the loop covers the old extent.
    for sub in (0..1usize << order)
        .step_by(1 << mid)
        .map(|i| Folio { head: f.page(i) })
    {
        let n = 1usize << mid;
        let mapped_pages = (0..n).filter(|&i| sub.mapcount(i) > 0).count();
        if mid > 0 && mapped_pages > 0 && mapped_pages < n {
            frames().split_block(sub.head, mid, 0, |p| mapped(p, 1));
            for page in (0..n).map(|i| Folio { head: sub.page(i) }) {
                settle(page, anon);
            }
        } else {
            settle(sub, anon);
        }
    }
}

/// A folio just made by a split: freed if nothing maps it, else counted as anonymous.
fn settle(f: Folio, anon: bool) {
    if f.refcount() == 0 {
        frames().free(f.head, f.order());
        return;
    }
    if anon {
        f.meta(0).set(flags::ANON, true);
        mthp::stats(f.order())
            .nr_anon
            .fetch_add(1, Ordering::Relaxed);
    }
}
