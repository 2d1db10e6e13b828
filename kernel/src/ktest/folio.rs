//! Tests of folios: accounting across a split, the deferred-split queue and its
//! statistics, and the low-memory trigger of the shrinker. Mappings are accounted
//! directly through the folio API (what the fault path does after mapping).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::TestResult;
use crate::arch::aarch64::mm::machine::KernelMachine;
use crate::mm::folio::{self, Folio};
use crate::mm::frame::frames;
use crate::mm::mthp;
use crate::{kassert, kassert_eq};

fn stat(order: usize) -> (u64, u64, i64) {
    let s = mthp::stats(order);
    (
        s.split_deferred.load(Ordering::Relaxed),
        s.split.load(Ordering::Relaxed),
        s.nr_anon_partially_mapped.load(Ordering::Relaxed),
    )
}

/// A 256 KiB folio mapped whole, then: its first 64 KiB stays mapped, one page of the
/// second is unmapped, the third and fourth are unmapped entirely. Unmapping queues it
/// (partially mapped); the split keeps the first part as a 64 KiB folio, makes 4 KiB
/// folios of the second's 15 mapped pages, and frees the rest.
pub fn split_keeps_accounting_exact() -> TestResult {
    let free0 = frames().free_frames();
    let f = folio::alloc_anon(&KernelMachine, 6).ok_or("no 256 KiB folio")?;
    let l = Folio::lock(f.head());
    l.map(0, 64);
    let l = l.put(1).ok_or("freed while mapped")?;
    let (deferred0, split0, partial0) = stat(6);
    l.unmap(16 + 7, 1);
    Folio::lock(f.head()).unmap(32, 32);
    kassert!(f.is_deferred(), "a partially mapped folio is queued");
    kassert_eq!(stat(6), (deferred0 + 1, split0, partial0 + 1));
    kassert_eq!(f.refcount(), 63 - 32 + 1, "the queue holds a reference");
    kassert_eq!(
        frames().free_frames(),
        free0 - 64,
        "nothing freed before the split"
    );

    folio::shrink_deferred();
    kassert_eq!(stat(6), (deferred0 + 1, split0 + 1, partial0));
    let first = Folio::of(f.page(0));
    kassert_eq!(
        (first.head(), first.order(), first.refcount()),
        (f.page(0), 4, 16)
    );
    let page = Folio::of(f.page(16 + 3));
    kassert_eq!(
        (page.order(), page.refcount(), page.total_mapcount()),
        (0, 1, 1)
    );
    kassert_eq!(
        frames().free_frames(),
        free0 - 16 - 15,
        "the unmapped 33 pages are free"
    );

    Folio::lock(first.head()).unmap(0, 16);
    for i in (16..32).filter(|&i| i != 16 + 7) {
        Folio::lock(f.page(i)).unmap(0, 1);
    }
    kassert_eq!(frames().free_frames(), free0);
    Ok(())
}

/// The shrinker runs by itself when free memory falls under the low watermark.
pub fn low_memory_runs_the_shrinker() -> TestResult {
    let f = folio::alloc_anon(&KernelMachine, 4).ok_or("no 64 KiB folio")?;
    let l = Folio::lock(f.head());
    l.map(0, 16);
    l.put(1).ok_or("freed while mapped")?.unmap(5, 1);
    kassert!(f.is_deferred());
    folio::shrink_if_low();
    kassert!(f.is_deferred(), "split with plenty of memory free");
    let mut hog = Vec::new();
    let low = frames().managed_frames() / 64;
    while frames().free_frames() >= low {
        match frames().alloc(9).or_else(|| frames().alloc(0)) {
            Some(pa) => hog.push(pa),
            None => break,
        }
    }
    folio::shrink_if_low();
    let split = !Folio::of(f.page(0)).is_large();
    for pa in hog {
        let (_, order) = frames().block_of(pa).expect("allocated");
        frames().free(pa, order);
    }
    kassert!(split, "the shrinker did not run under the watermark");
    for i in (0..16).filter(|&i| i != 5) {
        Folio::lock(f.page(i)).unmap(0, 1);
    }
    Ok(())
}

/// A queued folio whose last mapping goes leaves the queue and is freed at once: the
/// queue's reference is handed to the unmap, not leaked or dropped twice.
pub fn fully_unmapped_folio_leaves_the_queue() -> TestResult {
    let free0 = frames().free_frames();
    let f = folio::alloc_anon(&KernelMachine, 4).ok_or("no 64 KiB folio")?;
    let l = Folio::lock(f.head());
    l.map(0, 16);
    l.put(1).ok_or("freed while mapped")?.unmap(3, 1);
    kassert!(f.is_deferred());
    let queued = folio::deferred_count();
    Folio::lock(f.head()).unmap(0, 3);
    kassert!(f.is_deferred(), "still partially mapped");
    Folio::lock(f.head()).unmap(4, 12);
    kassert_eq!(folio::deferred_count(), queued - 1);
    kassert_eq!(
        frames().free_frames(),
        free0,
        "freed without a shrinker pass"
    );
    Ok(())
}
