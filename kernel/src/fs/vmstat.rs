//! /proc/vmstat: the kernel's counters under Linux's names, one `name value` per line,
//! for the counters this kernel has (a program that reads Linux's file finds the same
//! names here). The PMD-sized (order 9) mTHP counters are Linux's `thp_*` ones.

use alloc::string::String;
use core::fmt::Write;
use core::sync::atomic::Ordering;

use crate::mm::{frame, mthp};

/// The order of a PMD-sized folio (2 MiB).
const PMD_ORDER: usize = 9;

pub fn render() -> String {
    let s9 = mthp::stats(PMD_ORDER);
    let load = |c: &core::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let cont = crate::arch::aarch64::mm::machine::counters().snapshot();
    let lf = &crate::mm::lazyfree::STATS;
    let rc = &crate::mm::reclaim::RECLAIM;
    let mut out = String::new();
    for (name, v) in [
        ("nr_free_pages", frame::frames().free_frames() as u64),
        ("pgfault", load(&crate::mm::fault::PGFAULT)),
        (
            "nr_anon_transparent_hugepages",
            s9.nr_anon.load(Ordering::Relaxed).max(0) as u64,
        ),
        ("thp_fault_alloc", load(&s9.anon_fault_alloc)),
        ("thp_fault_fallback", load(&s9.anon_fault_fallback)),
        ("thp_split_page", load(&s9.split)),
        ("thp_split_page_failed", load(&s9.split_failed)),
        ("thp_deferred_split_page", load(&s9.split_deferred)),
        ("thp_split_pmd", cont.pmd_splits),
        (
            "thp_zero_page_alloc",
            load(&crate::mm::zero::THP_ZERO_PAGE_ALLOC),
        ),
        (
            "thp_zero_page_alloc_failed",
            load(&crate::mm::zero::THP_ZERO_PAGE_ALLOC_FAILED),
        ),
        ("pglazyfree", load(&lf.pglazyfree)),
        ("pglazyfreed", load(&lf.pglazyfreed)),
        ("pgscan_anon", load(&lf.pgscan)),
        ("pgsteal_anon", load(&lf.pgsteal)),
        ("pgscan_kswapd", load(&rc.pgscan_kswapd)),
        ("pgscan_direct", load(&rc.pgscan_direct)),
        ("pgsteal_kswapd", load(&rc.pgsteal_kswapd)),
        ("pgsteal_direct", load(&rc.pgsteal_direct)),
        // This kernel's own: read faults that mapped the zero page, and writes that
        // replaced zero-page entries with a folio (`mm::zero`).
        ("zero_page_faults", load(&crate::mm::zero::ZERO_PAGE_FAULTS)),
        ("zero_page_cow", load(&crate::mm::zero::ZERO_PAGE_COW)),
    ] {
        let _ = writeln!(out, "{name} {v}");
    }
    out
}
