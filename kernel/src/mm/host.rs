//! The address space on the host: a simulated machine for `Mm` (host tests only).
//!
//! One simulated RAM of [`RAM_FRAMES`] frames from [`RAM_BASE`] holds page tables and
//! folios alike, as RAM does (and, past them, the zero page): the global frame allocator (`frame::frames`) manages it
//! with its per-frame metadata, so the folio layer, the deferred-split queue and the
//! audit run unchanged. RAM is words of `AtomicU64`, so tables are borrowed straight
//! out of it (the layer only ever accesses them atomically) and no `unsafe` is needed.
//! [`HostMachine`] is the machine as `pgtable` and `Mm` see it (`PtMachine` + `MmMachine`): CPU
//! features and contiguous mode per instance, TLB maintenance left to the checker (it
//! observes every TLBI through the layer's wrapper; there is no TLB to model), the
//! checker on (`pgtable` turns it on under `cfg(test)`).
//!
//! The RAM, the allocator, the folio queue and the mTHP policy are global, as in the
//! kernel: a test takes the machine with [`machine`], which serialises tests and hands
//! the RAM over with every frame free.

use std::boxed::Box;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::frame::{self, frames, FrameAllocator, FrameMeta};
use super::machine::{check_page_access, MmMachine};
use super::pgtable::{
    Asid, ContMode, Counters, Features, FolioSpan, MapError, PageTable, PtMachine, TableEntries,
    Tlb,
};
use super::{folio, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::mm::addr::PTRS_PER_TABLE;

/// Where the simulated RAM starts (QEMU virt's RAM base) and how many frames it has.
pub const RAM_BASE: PhysAddr = PhysAddr(0x4000_0000);
pub const RAM_FRAMES: usize = 3 * 8192;

const WORDS_PER_PAGE: usize = PAGE_SIZE / 8;

struct Ram {
    words: Box<[AtomicU64]>,
}

static RAM: spin::Once<Ram> = spin::Once::new();
static MACHINE: Mutex<()> = Mutex::new(());
static COUNTERS: Counters = Counters::new();
static NEXT_ASID: AtomicU16 = AtomicU16::new(1);

fn ram() -> &'static Ram {
    RAM.call_once(|| {
        // One frame more than the allocator manages: the zero page, reserved.
        let meta: &'static [FrameMeta] =
            Box::leak((0..RAM_FRAMES + 1).map(|_| FrameMeta::new()).collect());
        let base = RAM_BASE.pfn();
        frame::init_global(FrameAllocator::new(meta, base)).add_free_range(base, base + RAM_FRAMES);
        super::zero::set(RAM_BASE.add(RAM_FRAMES * PAGE_SIZE));
        Ram {
            words: (0..(RAM_FRAMES + 1) * WORDS_PER_PAGE)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    })
}

impl Ram {
    fn word(&self, pa: PhysAddr) -> &AtomicU64 {
        &self.words[pa.offset_from(RAM_BASE) / 8]
    }

    fn page(&self, pa: PhysAddr) -> &[AtomicU64] {
        let i = pa.align_down(PAGE_SIZE).offset_from(RAM_BASE) / 8;
        &self.words[i..i + WORDS_PER_PAGE]
    }
}

/// The machine, for one test at a time: every frame free, nothing queued for deferred
/// split, nothing on the lazyfree list. What a failed test left behind (its address
/// spaces leaked, the entries of address spaces gone) is taken back.
pub fn machine() -> MutexGuard<'static, ()> {
    let guard = MACHINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ram();
    super::lazyfree::forget_list();
    super::lazyfree::set_cap(None);
    super::hugetlb::forget_pools();
    super::zero::shrink();
    if folio::deferred_count() > 0 || frames().free_frames() != frames().managed_frames() {
        super::zero::forget_huge();
        folio::forget_deferred();
        frames().reclaim_all();
    }
    guard
}

/// The byte at `pa`.
pub fn read_byte(pa: PhysAddr) -> u8 {
    let shift = (pa.as_u64() % 8) * 8;
    (ram().word(pa).load(Ordering::Relaxed) >> shift) as u8
}

/// Store `byte` at `pa` (what a CPU store through a translation does).
pub fn write_byte(pa: PhysAddr, byte: u8) {
    let shift = (pa.as_u64() % 8) * 8;
    let mask = !(0xffu64 << shift);
    let set = u64::from(byte) << shift;
    ram()
        .word(pa)
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            Some(w & mask | set)
        })
        .expect("update always applies");
}

/// TLB maintenance on the host: nothing to do (the checker sees every TLBI).
pub struct NoTlb;

impl Tlb for NoTlb {
    fn page(&self, _: Asid, _: VirtAddr, _: bool) {}
    fn range(&self, _: Asid, _: VirtAddr, _: usize) {}
    fn asid(&self, _: Asid) {}
    fn all(&self) {}
    fn dsb(&self) {}
}

/// The simulated machine as `pgtable` and `Mm` see it.
#[derive(Clone, Copy, Debug)]
pub struct HostMachine {
    pub features: Features,
    pub mode: ContMode,
}

impl PtMachine for HostMachine {
    type Tlb = NoTlb;

    fn table(&self, pa: PhysAddr) -> &TableEntries {
        assert!(
            frames().block_of(pa) == Some((pa, 0)),
            "{pa} is not an allocated table"
        );
        ram().page(pa).try_into().expect("a page is a table")
    }

    fn alloc_table(&self) -> Option<PhysAddr> {
        let pa = frames().alloc(0)?;
        self.zero_pages(pa, 1);
        Some(pa)
    }

    fn free_table(&self, pa: PhysAddr) {
        frames().free(pa, 0);
    }

    fn folio_of(&self, pa: PhysAddr) -> FolioSpan {
        crate::mm::folio::span_of(pa)
    }

    fn tracks_anon_exclusive(&self) -> bool {
        true
    }

    fn anon_exclusive(&self, pa: PhysAddr) -> Option<bool> {
        crate::mm::folio::anon_exclusive(pa)
    }

    fn pinned_shared(&self, pa: PhysAddr, n: usize) -> Option<PhysAddr> {
        crate::mm::folio::pinned_shared(pa, n)
    }

    fn tlb(&self) -> &NoTlb {
        &NoTlb
    }

    fn features(&self) -> Features {
        self.features
    }

    fn counters(&self) -> &Counters {
        &COUNTERS
    }
}

impl MmMachine for HostMachine {
    type Tables = Box<PageTable<HostMachine>>;

    fn new_tables(&self) -> Result<Self::Tables, MapError> {
        let asid = NEXT_ASID.fetch_add(1, Ordering::Relaxed);
        PageTable::new(*self, asid, self.mode).map(Box::new)
    }

    fn zero_pages(&self, pa: PhysAddr, n: usize) {
        for i in 0..n {
            for w in ram().page(pa.add(i * PAGE_SIZE)) {
                w.store(0, Ordering::Relaxed);
            }
        }
    }

    fn copy_pages(&self, from: PhysAddr, to: PhysAddr, n: usize) {
        for i in 0..n {
            let (src, dst) = (
                ram().page(from.add(i * PAGE_SIZE)),
                ram().page(to.add(i * PAGE_SIZE)),
            );
            for (s, d) in src.iter().zip(dst) {
                d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    fn write_page(&self, pa: PhysAddr, data: &[u8]) {
        check_page_access(pa, data.len(), true);
        for (i, &b) in data.iter().enumerate() {
            write_byte(pa.add(i), b);
        }
    }

    fn read_page(&self, pa: PhysAddr, buf: &mut [u8]) {
        check_page_access(pa, buf.len(), false);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = read_byte(pa.add(i));
        }
    }
}

const _: () = assert!(PTRS_PER_TABLE == WORDS_PER_PAGE);
