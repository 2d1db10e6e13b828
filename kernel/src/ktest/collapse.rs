//! Tests of collapse on the real machine (real TLB maintenance) under memory
//! exhaustion, where user space cannot reach: an in-place collapse of a split 2 MiB
//! folio succeeds with not one frame free (it allocates nothing), and a collapse by
//! copy with no frame for the target fails with ENOMEM, counts
//! `collapse_alloc_failed` and leaves the data and the frames as they were.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::TestResult;
use crate::arch::aarch64::mm::machine::Mm;
use crate::mm::fault::Access;
use crate::mm::folio;
use crate::mm::frame::frames;
use crate::mm::mthp::{self, POLICY};
use crate::mm::pgtable::ContMode;
use crate::mm::vma::VmProt;
use crate::mm::{phys_to_virt, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::{ENOMEM, MADV_COLLAPSE};
use crate::{kassert, kassert_eq};

const RW: VmProt = VmProt {
    read: true,
    write: true,
    exec: false,
};
const PMD: usize = crate::mm::addr::PMD_SIZE;

/// Every free frame, to give back with `release`.
fn hog() -> Vec<PhysAddr> {
    let mut got = Vec::new();
    while let Some(pa) = frames().alloc(0) {
        got.push(pa);
    }
    got
}

fn release(hogged: Vec<PhysAddr>) {
    for pa in hogged {
        frames().free(pa, 0);
    }
}

fn byte(mm: &Mm, va: VirtAddr) -> Option<u8> {
    let pa = mm.tables.get(va)?.pa_of(va);
    // SAFETY: a mapped page of this address space, read through the linear map.
    Some(unsafe { *phys_to_virt(pa).as_ptr::<u8>() })
}

/// Only `order` allowed (the PMD size `inherit` otherwise), for the test's duration.
fn with_only<R>(order: usize, f: impl FnOnce() -> R) -> R {
    let saved: Vec<_> = mthp::MTHP_ORDERS.map(|o| POLICY.render_size(o)).collect();
    for o in mthp::MTHP_ORDERS {
        let _ = POLICY.write_size(o, if o == order { "always" } else { "never" });
    }
    let r = f();
    for (o, s) in mthp::MTHP_ORDERS.zip(saved) {
        let _ = POLICY.write_size(o, s.trim());
    }
    r
}

/// A 2 MiB folio split by mprotect of one page and back: MADV_COLLAPSE makes it a
/// block again while no frame at all is free.
pub fn in_place_needs_no_memory() -> TestResult {
    with_only(9, || {
        let mut mm = Mm::new().map_err(|_| "no address space")?;
        let start = mm
            .mmap(0, 4 << 20, RW, 0)
            .map_err(|_| "mmap failed")?
            .align_up(PMD);
        mm.handle_fault(start, Access::Write)
            .map_err(|_| "fault failed")?;
        mm.write_bytes(start.add(3 * PAGE_SIZE), &[0x5a])
            .map_err(|_| "write failed")?;
        kassert!(
            mm.tables.get(start).is_some_and(|l| l.level == 2),
            "not a block"
        );
        let page = start.add(7 * PAGE_SIZE);
        let ro = VmProt { write: false, ..RW };
        mm.mprotect(page, page.add(PAGE_SIZE), ro)
            .map_err(|_| "mprotect failed")?;
        mm.mprotect(page, page.add(PAGE_SIZE), RW)
            .map_err(|_| "mprotect failed")?;
        kassert!(
            mm.tables.get(start).is_some_and(|l| l.level == 3),
            "not split"
        );
        let in_place = mthp::stats(9).collapse_in_place.load(Ordering::Relaxed);
        let hogged = hog();
        let r = mm.madvise(start, start.add(PMD), MADV_COLLAPSE);
        let level = mm.tables.get(start).map(|l| l.level);
        release(hogged);
        kassert_eq!(r, Ok(()));
        kassert_eq!(level, Some(2));
        kassert_eq!(
            mthp::stats(9).collapse_in_place.load(Ordering::Relaxed),
            in_place + 1
        );
        kassert_eq!(byte(&mm, start.add(3 * PAGE_SIZE)), Some(0x5a));
        Ok(())
    })
}

/// 64 KiB of base pages faulted from the top down (scattered frames): with no frame
/// free MADV_COLLAPSE is ENOMEM and changes nothing; with memory it collapses.
pub fn copy_without_memory_fails_cleanly() -> TestResult {
    let mut mm = Mm::new().map_err(|_| "no address space")?;
    let start = with_only(0, || -> Result<VirtAddr, &'static str> {
        let start = mm
            .mmap(0, 1 << 20, RW, 0)
            .map_err(|_| "mmap failed")?
            .align_up(64 << 10);
        for i in (0..16).rev() {
            mm.write_bytes(start.add(i * PAGE_SIZE), &[i as u8 + 1])
                .map_err(|_| "write failed")?;
        }
        Ok(start)
    })?;
    with_only(4, || {
        let failed = mthp::stats(4).collapse_alloc_failed.load(Ordering::Relaxed);
        let hogged = hog();
        let r = mm.madvise(start, start.add(64 << 10), MADV_COLLAPSE);
        release(hogged);
        kassert_eq!(r, Err(ENOMEM));
        kassert_eq!(
            mthp::stats(4).collapse_alloc_failed.load(Ordering::Relaxed),
            failed + 1
        );
        let free = frames().free_frames();
        kassert_eq!(
            mm.madvise(start, start.add(64 << 10), MADV_COLLAPSE),
            Ok(())
        );
        kassert_eq!(frames().free_frames(), free, "16 pages in, 16 pages out");
        let pa = mm.tables.get(start).ok_or("unmapped")?.pa_of(start);
        kassert_eq!(folio::span_of(pa).nr_pages, 16, "not one 64 KiB folio");
        if mm.tables.mode() != ContMode::Off {
            kassert!(
                mm.tables.get(start).is_some_and(|l| l.pte.is_cont()),
                "not contiguous"
            );
        }
        for i in 0..16 {
            kassert_eq!(byte(&mm, start.add(i * PAGE_SIZE)), Some(i as u8 + 1));
        }
        Ok(())
    })
}
