//! Physical frames: a buddy allocator for naturally aligned blocks of 2^order frames
//! (orders 0..=MAX_ORDER), and the per-frame metadata array, the role of Linux's
//! `struct page`: reference count, map count, flags, and the order of the block a
//! head frame starts. Folios (a later layer) are built on these heads.
//!
//! The buddy lists themselves are buddy_system_allocator's `FrameAllocator`, which
//! keeps no per-frame state; the metadata here is what lets the kernel catch double
//! frees, frees of the wrong order and frees of still-mapped frames.

use core::sync::atomic::{
    AtomicI32, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

use super::addr::PhysAddr;
use crate::sync::IrqSpinLock;

/// Largest folio order served: 2^10 frames = 4 MiB (a 2 MiB PMD folio is order 9).
pub const MAX_ORDER: usize = 10;
/// Largest block order served at all: 2^13 frames = 32 MiB, hugetlb's largest page
/// (`hugetlb`; Linux takes its gigantic pages with `alloc_contig_pages` instead).
pub const MAX_POOL_ORDER: usize = 13;
const BUDDY_ORDERS: usize = MAX_POOL_ORDER + 1;

/// Frame state bits (`FrameMeta::flags`).
pub mod flags {
    /// Never handed out: kernel image, DTB, the metadata array itself, holes.
    pub const RESERVED: u32 = 1 << 0;
    /// Part of an allocated block.
    pub const ALLOCATED: u32 = 1 << 1;
    /// First frame of an allocated block.
    pub const HEAD: u32 = 1 << 2;
    /// Head: the block is an anonymous folio (counted in the mTHP statistics).
    pub const ANON: u32 = 1 << 3;
    /// Page: mapped by one address space only, which may write it without copying.
    pub const ANON_EXCLUSIVE: u32 = 1 << 4;
    /// Head: the folio is on the deferred-split queue (it is partially mapped).
    pub const DEFERRED: u32 = 1 << 5;
    /// Head: the folio is locked (`folio::Folio::lock`): its shape and counts are the
    /// lock holder's to change.
    pub const LOCKED: u32 = 1 << 6;
    /// Head: the folio is lazyfree (MADV_FREE): clean, it may be discarded whole
    /// (`lazyfree`'s protocol); a split or a free drops the mark.
    pub const LAZYFREE: u32 = 1 << 7;
    /// Head of a large folio: every page is anon-exclusive, whatever its own
    /// `ANON_EXCLUSIVE` says (a fault or a reuse took the whole folio in one step).
    pub const ALL_EXCLUSIVE: u32 = 1 << 8;
    /// Head of a large folio: no page is anon-exclusive, whatever its own flag says
    /// (fork shared the whole folio in one step). Never set together with `ALL_EXCLUSIVE`.
    pub const ALL_SHARED: u32 = 1 << 9;
    /// Head: the block is a folio of a file's page cache (`shmem`): shared by design,
    /// never anon-exclusive, split, merged or lazyfree.
    pub const FILE: u32 = 1 << 10;
    /// Head of a `FILE` folio: its file's cache holds it (and one reference).
    pub const CACHED: u32 = 1 << 11;
    /// Head: some page of the folio is pinned (`FrameMeta::pins`; `mm::pin`): the
    /// folio is neither split, merged, collapsed by copy nor discarded while it is set.
    pub const PINNED: u32 = 1 << 12;
    /// Head: the folio is a hugetlb page (`hugetlb`): its last reference gives it back
    /// to its pool, never to the allocator; never split, merged or lazyfree.
    pub const HUGETLB: u32 = 1 << 13;
    /// What a split keeps per page (the rest describes the block structure).
    pub const PER_PAGE: u32 = ANON_EXCLUSIVE;
}

/// Per-frame metadata, 20 bytes per 4 KiB frame.
#[repr(C)]
pub struct FrameMeta {
    /// References to the block (head frame only): 1 after allocation.
    pub refcount: AtomicU32,
    /// Page-table entries mapping this frame, beyond its folio's entire map count.
    pub mapcount: AtomicI32,
    /// Head: page-table entries mapping any page of the block (the sum of the pages'
    /// map counts). Second frame of a large folio: the folio's entire map count
    /// (`folio`: mappings of every page at once; Linux keeps its `_entire_mapcount` in
    /// the first tail page too, where the head-only field is free).
    pub total_mapcount: AtomicI32,
    flags: AtomicU32,
    order: AtomicU8,
    /// Pins of this page (`mm::pin`: user pages held outside any mapping, each pin
    /// also a reference to the folio). In the padding after `order`: no extra bytes.
    pub pins: AtomicU16,
}

// The pin count lives in what was padding: the array costs RAM per frame.
const _: () = assert!(core::mem::size_of::<FrameMeta>() == 20);

impl FrameMeta {
    pub const fn new() -> Self {
        Self {
            refcount: AtomicU32::new(0),
            mapcount: AtomicI32::new(0),
            total_mapcount: AtomicI32::new(0),
            flags: AtomicU32::new(flags::RESERVED),
            order: AtomicU8::new(0),
            pins: AtomicU16::new(0),
        }
    }

    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Acquire)
    }

    pub fn is_head(&self) -> bool {
        self.flags() & flags::HEAD != 0
    }

    pub fn test(&self, flag: u32) -> bool {
        self.flags() & flag != 0
    }

    /// Set or clear `flag`; returns whether it was set before.
    pub fn set(&self, flag: u32, on: bool) -> bool {
        let old = if on {
            self.flags.fetch_or(flag, Ordering::AcqRel)
        } else {
            self.flags.fetch_and(!flag, Ordering::AcqRel)
        };
        old & flag != 0
    }

    /// Take the lock bit of an allocated block's head: fails if the bit is held or the
    /// frame is not (or no longer) the head of an allocated block, so a free frame is
    /// never marked (`alloc` requires free frames to have no flags at all).
    pub fn try_lock_head(&self) -> bool {
        let cur = self.flags();
        let head = flags::HEAD | flags::ALLOCATED;
        cur & (head | flags::LOCKED) == head
            && self
                .flags
                .compare_exchange(
                    cur,
                    cur | flags::LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Release the lock bit (the holder's stores before it become visible first).
    pub fn unlock_head(&self) {
        let old = self.flags.fetch_and(!flags::LOCKED, Ordering::Release);
        debug_assert!(old & flags::LOCKED != 0, "unlock of an unlocked block");
    }

    /// Order of the allocated block this frame belongs to (every frame of a block
    /// carries it, so the head of any frame is its address aligned down to the block).
    pub fn order(&self) -> usize {
        self.order.load(Ordering::Acquire) as usize
    }
}

impl Default for FrameMeta {
    fn default() -> Self {
        Self::new()
    }
}

/// Allocation counters, by order.
pub struct FrameStats {
    pub allocs: [AtomicU64; BUDDY_ORDERS],
    pub frees: [AtomicU64; BUDDY_ORDERS],
    pub failures: [AtomicU64; BUDDY_ORDERS],
}

pub struct FrameAllocator {
    buddy: IrqSpinLock<buddy_system_allocator::FrameAllocator<BUDDY_ORDERS>>,
    meta: &'static [FrameMeta],
    base_pfn: usize,
    free: AtomicUsize,
    managed: AtomicUsize,
    pub stats: FrameStats,
}

impl FrameAllocator {
    /// An allocator for frames `base_pfn .. base_pfn + meta.len()`, all reserved until
    /// `add_free_range` hands them over.
    pub fn new(meta: &'static [FrameMeta], base_pfn: usize) -> Self {
        Self {
            buddy: IrqSpinLock::new(buddy_system_allocator::FrameAllocator::new()),
            meta,
            base_pfn,
            free: AtomicUsize::new(0),
            managed: AtomicUsize::new(0),
            stats: FrameStats {
                allocs: [const { AtomicU64::new(0) }; BUDDY_ORDERS],
                frees: [const { AtomicU64::new(0) }; BUDDY_ORDERS],
                failures: [const { AtomicU64::new(0) }; BUDDY_ORDERS],
            },
        }
    }

    /// Make frames `[start_pfn, end_pfn)` available.
    pub fn add_free_range(&self, start_pfn: usize, end_pfn: usize) {
        assert!(
            start_pfn >= self.base_pfn
                && end_pfn <= self.base_pfn + self.meta.len()
                && start_pfn <= end_pfn
        );
        for pfn in start_pfn..end_pfn {
            self.meta_pfn(pfn).flags.store(0, Ordering::Release);
        }
        self.buddy.lock().add_frame(start_pfn, end_pfn);
        self.free.fetch_add(end_pfn - start_pfn, Ordering::AcqRel);
        self.managed
            .fetch_add(end_pfn - start_pfn, Ordering::AcqRel);
    }

    /// A naturally aligned block of 2^order frames, reference count 1, not zeroed.
    pub fn alloc(&self, order: usize) -> Option<PhysAddr> {
        assert!(
            order <= MAX_POOL_ORDER,
            "frame order {order} above MAX_POOL_ORDER"
        );
        let n = 1usize << order;
        let Some(pfn) = self.buddy.lock().alloc(n) else {
            self.stats.failures[order].fetch_add(1, Ordering::Relaxed);
            return None;
        };
        debug_assert_eq!(pfn % n, 0, "buddy blocks are naturally aligned");
        for (i, m) in self.meta_range(pfn, n).iter().enumerate() {
            let old = m.flags.swap(
                if i == 0 {
                    flags::ALLOCATED | flags::HEAD
                } else {
                    flags::ALLOCATED
                },
                Ordering::AcqRel,
            );
            assert!(
                old == 0,
                "frame {} handed out while in state {old:#x}",
                PhysAddr::from_pfn(pfn + i)
            );
            m.mapcount.store(0, Ordering::Relaxed);
            m.order.store(order as u8, Ordering::Release);
        }
        // The head's total, and a large block's entire map count in its second frame.
        for m in self.meta_range(pfn, n.min(2)) {
            m.total_mapcount.store(0, Ordering::Relaxed);
        }
        self.meta_pfn(pfn).refcount.store(1, Ordering::Release);
        self.free.fetch_sub(n, Ordering::AcqRel);
        self.stats.allocs[order].fetch_add(1, Ordering::Relaxed);
        Some(PhysAddr::from_pfn(pfn))
    }

    /// Return a block obtained from `alloc(order)`. Freeing a frame twice, with another
    /// order, or while page tables still map it is a kernel bug and panics.
    pub fn free(&self, pa: PhysAddr, order: usize) {
        let pfn = pa.pfn();
        let n = 1usize << order;
        let head = self.meta_pfn(pfn);
        let f = head.flags();
        assert!(
            f & flags::HEAD != 0 && f & flags::ALLOCATED != 0,
            "free of {pa} which is not an allocated block (state {f:#x})"
        );
        assert!(
            head.order() == order,
            "free of {pa} as order {order}, allocated as order {}",
            head.order()
        );
        for (i, m) in self.meta_range(pfn, n).iter().enumerate() {
            let mc = m.mapcount.load(Ordering::Acquire);
            assert!(
                mc == 0 && m.pins.load(Ordering::Acquire) == 0,
                "free of {} while mapped {mc} times or pinned",
                PhysAddr::from_pfn(pfn + i)
            );
            m.flags.store(0, Ordering::Release);
        }
        head.refcount.store(0, Ordering::Release);
        self.buddy.lock().dealloc(pfn, n);
        self.free.fetch_add(n, Ordering::AcqRel);
        self.stats.frees[order].fetch_add(1, Ordering::Relaxed);
    }

    /// Describe the allocated block at `head` (order `from`) as blocks of order `to`,
    /// each with the reference count `refs(sub_head)`; per-page flags are kept, the
    /// sub-blocks' total map counts are the sums of their pages' map counts. A sub-block
    /// with no reference is then freed by the caller like any block of order `to`.
    /// The block must be locked (`flags::LOCKED`); every sub-block is born locked, so
    /// no one sees its metadata half written: the caller unlocks (or frees) each one.
    pub fn split_block(
        &self,
        head: PhysAddr,
        from: usize,
        to: usize,
        refs: impl Fn(PhysAddr) -> u32,
    ) {
        let m = self.meta(head);
        assert!(
            to < from && m.is_head() && m.test(flags::LOCKED) && m.order() == from,
            "split of {head} from order {from} to {to} (state {:#x})",
            m.flags()
        );
        debug_assert_eq!(
            self.meta(head.add(super::PAGE_SIZE))
                .total_mapcount
                .load(Ordering::Relaxed),
            0,
            "split of {head}: the folio's entire map count was not spread to its pages"
        );
        let n = 1usize << to;
        for sub in (0..1usize << from)
            .step_by(n)
            .map(|i| head.add(i * super::PAGE_SIZE))
        {
            let pages = self.meta_range(sub.pfn(), n);
            for (i, m) in pages.iter().enumerate() {
                let keep = m.flags() & flags::PER_PAGE;
                m.flags.store(
                    keep | flags::ALLOCATED
                        | if i == 0 {
                            flags::HEAD | flags::LOCKED
                        } else {
                            0
                        },
                    Ordering::Release,
                );
                m.order.store(to as u8, Ordering::Release);
            }
            let total: i32 = pages
                .iter()
                .map(|m| m.mapcount.load(Ordering::Acquire))
                .sum();
            pages[0].total_mapcount.store(total, Ordering::Release);
            pages[0].refcount.store(refs(sub), Ordering::Release);
        }
    }

    /// The reverse of `split_block`: describe the allocated blocks that tile the
    /// naturally aligned `[head, head + 2^to frames)` as one block of order `to`, with
    /// reference count `refs`; per-page flags are kept, the total map count is the sum
    /// of the pages' map counts. Every block in the range must be locked by the caller;
    /// the merged block is born locked (its head keeps the bit), the other former
    /// heads lose theirs with their `HEAD` flag, so a waiter spinning on one of them
    /// finds the new head when it re-reads (folio protocol, rule 2).
    pub fn merge_blocks(&self, head: PhysAddr, to: usize, refs: u32) {
        let n = 1usize << to;
        assert!(
            head.pfn().is_multiple_of(n),
            "merge of {head} to order {to}: not aligned"
        );
        let pages = self.meta_range(head.pfn(), n);
        let mut i = 0;
        while i < n {
            let m = &pages[i];
            assert!(
                m.is_head() && m.test(flags::LOCKED) && i + (1 << m.order()) <= n,
                "merge of {head} to order {to}: frame {i} is not a locked head inside (state {:#x})",
                m.flags()
            );
            i += 1 << m.order();
        }
        for (i, m) in pages.iter().enumerate() {
            let keep = m.flags() & flags::PER_PAGE;
            let head_bits = if i == 0 {
                flags::HEAD | flags::LOCKED | (m.flags() & flags::ANON)
            } else {
                0
            };
            m.flags
                .store(keep | flags::ALLOCATED | head_bits, Ordering::Release);
            m.order.store(to as u8, Ordering::Release);
            if i > 0 {
                m.refcount.store(0, Ordering::Relaxed);
                m.total_mapcount.store(0, Ordering::Relaxed);
            }
        }
        let total: i32 = pages
            .iter()
            .map(|m| m.mapcount.load(Ordering::Acquire))
            .sum();
        pages[0].total_mapcount.store(total, Ordering::Release);
        pages[0].refcount.store(refs, Ordering::Release);
    }

    /// The allocated block containing `pa`: its head and order (`None` if free or reserved).
    pub fn block_of(&self, pa: PhysAddr) -> Option<(PhysAddr, usize)> {
        let m = self.meta(pa);
        if m.flags() & flags::ALLOCATED == 0 {
            return None;
        }
        let order = m.order();
        Some((PhysAddr::from_pfn(pa.pfn() & !((1 << order) - 1)), order))
    }

    /// Whether frame `pfn` is one this allocator describes (RAM, not a hole).
    pub fn covers(&self, pfn: usize) -> bool {
        pfn.checked_sub(self.base_pfn)
            .is_some_and(|i| i < self.meta.len())
    }

    pub fn meta(&self, pa: PhysAddr) -> &FrameMeta {
        self.meta_pfn(pa.pfn())
    }

    fn meta_pfn(&self, pfn: usize) -> &FrameMeta {
        &self.meta[pfn - self.base_pfn]
    }

    fn meta_range(&self, pfn: usize, n: usize) -> &[FrameMeta] {
        &self.meta[pfn - self.base_pfn..pfn - self.base_pfn + n]
    }

    /// Every allocated block: its head and order, in address order.
    pub fn for_each_block(&self, mut f: impl FnMut(PhysAddr, usize)) {
        let mut i = 0;
        while i < self.meta.len() {
            let m = &self.meta[i];
            if m.is_head() && m.test(flags::ALLOCATED) {
                f(PhysAddr::from_pfn(self.base_pfn + i), m.order());
                i += 1 << m.order();
            } else {
                i += 1;
            }
        }
    }

    /// Host tests: take back every allocated block whatever its state (a failed test
    /// leaks its address spaces; the next one needs every frame free).
    #[cfg(test)]
    pub fn reclaim_all(&self) {
        let mut blocks = Vec::new();
        self.for_each_block(|head, order| blocks.push((head, order)));
        for (head, order) in blocks {
            for (i, m) in self.meta_range(head.pfn(), 1 << order).iter().enumerate() {
                m.mapcount.store(0, Ordering::Relaxed);
                m.pins.store(0, Ordering::Relaxed);
                let head_flag = if i == 0 { flags::HEAD } else { 0 };
                m.flags
                    .store(flags::ALLOCATED | head_flag, Ordering::Release);
            }
            self.free(head, order);
        }
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }

    /// Frames the allocator manages (free or allocated).
    pub fn managed_frames(&self) -> usize {
        self.managed.load(Ordering::Acquire)
    }
}

static FRAMES: spin::Once<FrameAllocator> = spin::Once::new();

/// Install the global frame allocator (boot, once).
pub fn init_global(a: FrameAllocator) -> &'static FrameAllocator {
    FRAMES.call_once(|| a)
}

/// The global frame allocator.
pub fn frames() -> &'static FrameAllocator {
    FRAMES
        .get()
        .expect("frame allocator used before boot set it up")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator(frames: usize, base_pfn: usize) -> FrameAllocator {
        let meta: &'static [FrameMeta] = Box::leak((0..frames).map(|_| FrameMeta::new()).collect());
        FrameAllocator::new(meta, base_pfn)
    }

    #[test]
    fn every_order_is_naturally_aligned_and_returns() {
        let base = 0x40000; // 0x4000_0000
        let a = allocator(4096, base);
        a.add_free_range(base + 3, base + 4096);
        let free0 = a.free_frames();
        let mut got = Vec::new();
        for order in 0..=MAX_ORDER.min(9) {
            let pa = a.alloc(order).unwrap();
            assert_eq!(pa.pfn() % (1 << order), 0, "order {order} at {pa:?}");
            assert_eq!(a.meta(pa).order(), order);
            assert_eq!(a.meta(pa).refcount.load(Ordering::Relaxed), 1);
            got.push((pa, order));
        }
        assert_eq!(
            free0 - a.free_frames(),
            got.iter().map(|(_, o)| 1 << o).sum::<usize>()
        );
        for (pa, order) in got {
            a.free(pa, order);
        }
        assert_eq!(a.free_frames(), free0);
        assert_eq!(a.stats.allocs[9].load(Ordering::Relaxed), 1);
    }

    /// Frees in any order merge back: after every frame went out one by one and came
    /// back shuffled, the whole aligned range is one block again (a lost merge
    /// would leave the order-10 allocation failing; a frame handed out twice trips
    /// `alloc`'s state check).
    #[test]
    fn frees_in_any_order_merge_back_into_the_largest_blocks() {
        let base = 0x40000;
        let n = 2 << MAX_ORDER;
        let a = allocator(n, base);
        a.add_free_range(base, base + n);
        let mut pages: Vec<PhysAddr> = (0..n).map(|_| a.alloc(0).unwrap()).collect();
        assert!(a.alloc(0).is_none(), "every frame handed out once");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in (1..pages.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            pages.swap(i, seed as usize % (i + 1));
        }
        for pa in pages {
            a.free(pa, 0);
        }
        let big = [a.alloc(MAX_ORDER).unwrap(), a.alloc(MAX_ORDER).unwrap()];
        assert!(big.iter().all(|pa| pa.pfn() % (1 << MAX_ORDER) == 0));
        assert!(a.alloc(0).is_none());
        for pa in big {
            a.free(pa, MAX_ORDER);
        }
        assert_eq!(a.free_frames(), n);
    }

    #[test]
    fn any_frame_finds_its_block() {
        let a = allocator(64, 0x40000);
        a.add_free_range(0x40000, 0x40040);
        let small = a.alloc(0).unwrap();
        let block = a.alloc(4).unwrap();
        assert_eq!(a.block_of(block.add(5 * 4096)), Some((block, 4)));
        assert_eq!(a.block_of(block), Some((block, 4)));
        assert_eq!(a.block_of(small), Some((small, 0)));
        a.free(block, 4);
        assert_eq!(a.block_of(block.add(4096)), None);
    }

    #[test]
    fn split_block_keeps_per_page_flags_and_frees_piecewise() {
        let a = allocator(64, 0x40000);
        a.add_free_range(0x40000, 0x40040);
        let free = a.free_frames();
        let pa = a.alloc(4).unwrap();
        a.meta(pa.add(5 * 4096)).set(flags::ANON_EXCLUSIVE, true);
        a.meta(pa.add(5 * 4096))
            .mapcount
            .store(1, Ordering::Relaxed);
        a.meta(pa).set(flags::LOCKED, true);
        a.split_block(pa, 4, 2, |sub| if sub == pa.add(4 * 4096) { 1 } else { 0 });
        assert_eq!(a.block_of(pa.add(6 * 4096)), Some((pa.add(4 * 4096), 2)));
        for sub in [0, 4, 8, 12] {
            assert!(
                a.meta(pa.add(sub * 4096)).test(flags::LOCKED),
                "born locked"
            );
        }
        assert!(!a.meta(pa.add(5 * 4096)).test(flags::LOCKED));
        assert!(a.meta(pa.add(5 * 4096)).test(flags::ANON_EXCLUSIVE));
        assert_eq!(
            a.meta(pa.add(4 * 4096))
                .total_mapcount
                .load(Ordering::Relaxed),
            1
        );
        for sub in [0, 8, 12] {
            a.free(pa.add(sub * 4096), 2);
        }
        a.meta(pa.add(5 * 4096))
            .mapcount
            .store(0, Ordering::Relaxed);
        a.free(pa.add(4 * 4096), 2);
        assert_eq!(a.free_frames(), free);
        assert_eq!(a.alloc(4), Some(pa), "the buddies merged back");
    }

    #[test]
    #[should_panic(expected = "split of")]
    fn split_of_an_unlocked_block_panics() {
        let a = allocator(16, 0x40000);
        a.add_free_range(0x40000, 0x40010);
        let pa = a.alloc(2).unwrap();
        a.split_block(pa, 2, 0, |_| 1);
    }

    #[test]
    fn reserved_frames_are_never_handed_out() {
        let base = 0x40000;
        let a = allocator(64, base);
        a.add_free_range(base + 16, base + 32);
        let mut seen = Vec::new();
        while let Some(pa) = a.alloc(0) {
            seen.push(pa.pfn());
        }
        assert_eq!(seen.len(), 16);
        assert!(seen.iter().all(|p| (base + 16..base + 32).contains(p)));
        assert_eq!(a.stats.failures[0].load(Ordering::Relaxed), 1);
    }

    #[test]
    #[should_panic(expected = "not an allocated block")]
    fn double_free_panics() {
        let a = allocator(16, 0x40000);
        a.add_free_range(0x40000, 0x40010);
        let pa = a.alloc(1).unwrap();
        a.free(pa, 1);
        a.free(pa, 1);
    }

    #[test]
    #[should_panic(expected = "allocated as order 2")]
    fn wrong_order_free_panics() {
        let a = allocator(16, 0x40000);
        a.add_free_range(0x40000, 0x40010);
        let pa = a.alloc(2).unwrap();
        a.free(pa, 1);
    }

    #[test]
    #[should_panic(expected = "while mapped")]
    fn free_of_mapped_frame_panics() {
        let a = allocator(16, 0x40000);
        a.add_free_range(0x40000, 0x40010);
        let pa = a.alloc(0).unwrap();
        a.meta(pa).mapcount.store(1, Ordering::Relaxed);
        a.free(pa, 0);
    }
}
