//! /sys/kernel/mm/transparent_hugepage, as Linux lays it out: `enabled`, `defrag`,
//! `shmem_enabled`, `use_zero_page`, `hpage_pmd_size`, and per mTHP size
//! `hugepages-<N>kB/{enabled,shmem_enabled}` and `hugepages-<N>kB/stats/<counter>`
//! (`defrag` keeps Linux's value but changes nothing here, the `shmem_enabled` files
//! choose the page cache's folio sizes: `mm::shmem`); plus this
//! kernel's `shrink_deferred` (write 1: run the deferred-split shrinker now; read: the
//! folios waiting), `cow` (`page` or `folio`: what a write to a shared large folio
//! copies, the boot option `cow=`), `khugepaged/` (the collapse thread's tunables and
//! counters with Linux's names and defaults, `mm::collapse`) and /proc/self/thpmaps (per VMA: bytes by folio order, contiguous
//! and PMD-mapped; see `mm::aspace::Mm::thp_report`).

use alloc::format;
use alloc::string::{String, ToString};

use super::Node;
use crate::mm::aspace::Mm;
use crate::mm::{collapse, folio, mthp};
use crate::uapi::EINVAL;

const ROOT: &str = "/sys/kernel/mm/transparent_hugepage";

macro_rules! size_nodes {
    ($($order:literal => $kb:literal),* $(,)?) => {
        [$(
            super::dir(concat!("/sys/kernel/mm/transparent_hugepage/hugepages-", $kb, "kB")),
            super::dir(concat!("/sys/kernel/mm/transparent_hugepage/hugepages-", $kb, "kB/stats")),
            Node {
                path: concat!("/sys/kernel/mm/transparent_hugepage/hugepages-", $kb, "kB/enabled"),
                render: Some(|| mthp::POLICY.render_size($order)),
                write: Some(|s| mthp::POLICY.write_size($order, s)),
            },
            Node {
                path: concat!("/sys/kernel/mm/transparent_hugepage/hugepages-", $kb, "kB/shmem_enabled"),
                render: Some(|| mthp::shmem_size_enabled($order).render()),
                write: Some(|s| mthp::shmem_size_enabled($order).write(s)),
            },
            stat!($order, $kb, "anon_fault_alloc"),
            stat!($order, $kb, "anon_fault_fallback"),
            stat!($order, $kb, "anon_fault_fallback_charge"),
            stat!($order, $kb, "split"),
            stat!($order, $kb, "split_failed"),
            stat!($order, $kb, "split_deferred"),
            stat!($order, $kb, "nr_anon"),
            stat!($order, $kb, "nr_anon_partially_mapped"),
            stat!($order, $kb, "cow_reuse"),
            stat!($order, $kb, "cow_folio_copy"),
            stat!($order, $kb, "spread_to_pages"),
            stat!($order, $kb, "collapse_alloc"),
            stat!($order, $kb, "collapse_alloc_failed"),
            stat!($order, $kb, "collapse_exceed_none_pte"),
            stat!($order, $kb, "collapse_exceed_swap_pte"),
            stat!($order, $kb, "collapse_exceed_shared_pte"),
            stat!($order, $kb, "collapse_exceed_pinned"),
            stat!($order, $kb, "collapse_in_place"),
            stat!($order, $kb, "shmem_alloc"),
            stat!($order, $kb, "shmem_fallback"),
            stat!($order, $kb, "shmem_fallback_charge"),
        )*]
    };
}

macro_rules! stat {
    ($order:literal, $kb:literal, $name:literal) => {
        Node {
            path: concat!(
                "/sys/kernel/mm/transparent_hugepage/hugepages-",
                $kb,
                "kB/stats/",
                $name
            ),
            render: Some(|| mthp::render_stat($order, $name).expect(concat!("counter ", $name))),
            write: None,
        }
    };
}

fn shrink(s: &str) -> Result<(), crate::uapi::Errno> {
    match s.trim_end() {
        "1" => {
            folio::shrink_deferred();
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

fn cow() -> String {
    let folio = crate::mm::cow::COW_COPIES_FOLIO.load(core::sync::atomic::Ordering::Relaxed);
    String::from(if folio { "folio\n" } else { "page\n" })
}

fn thpmaps() -> String {
    super::procfs::render(Mm::thp_report)
}

fn smaps() -> String {
    super::procfs::render(Mm::smaps)
}

macro_rules! khugepaged {
    ($name:literal, $tunable:path) => {
        Node {
            path: concat!("/sys/kernel/mm/transparent_hugepage/khugepaged/", $name),
            render: Some(|| format!("{}\n", $tunable.get())),
            write: Some(|s| $tunable.write(s)),
        }
    };
    ($name:literal, counter $counter:path) => {
        Node {
            path: concat!("/sys/kernel/mm/transparent_hugepage/khugepaged/", $name),
            render: Some(|| format!("{}\n", $counter.load(core::sync::atomic::Ordering::Relaxed))),
            write: None,
        }
    };
}

/// Eight sizes of 24 nodes each (the directory, `stats/`, `enabled`, `shmem_enabled`,
/// 20 counters).
const SIZE_NODES: usize = 8 * 25;
const KHUGEPAGED_NODES: usize = 10;
const TOP_NODES: usize = 10;

pub static NODES: [Node; TOP_NODES + SIZE_NODES + KHUGEPAGED_NODES] = {
    let sizes = size_nodes!(2 => "16", 3 => "32", 4 => "64", 5 => "128", 6 => "256", 7 => "512", 8 => "1024", 9 => "2048");
    let khugepaged: [Node; KHUGEPAGED_NODES] = [
        super::dir("/sys/kernel/mm/transparent_hugepage/khugepaged"),
        khugepaged!("pages_to_scan", collapse::PAGES_TO_SCAN),
        khugepaged!("scan_sleep_millisecs", collapse::SCAN_SLEEP_MILLISECS),
        khugepaged!("alloc_sleep_millisecs", collapse::ALLOC_SLEEP_MILLISECS),
        khugepaged!("max_ptes_none", collapse::MAX_PTES_NONE),
        khugepaged!("max_ptes_shared", collapse::MAX_PTES_SHARED),
        khugepaged!("max_ptes_swap", collapse::MAX_PTES_SWAP),
        khugepaged!("defrag", collapse::DEFRAG),
        khugepaged!("pages_collapsed", counter collapse::PAGES_COLLAPSED),
        khugepaged!("full_scans", counter collapse::FULL_SCANS),
    ];
    let mut all = [const { super::dir("") }; TOP_NODES + SIZE_NODES + KHUGEPAGED_NODES];
    all[0] = super::dir(ROOT);
    all[1] = Node {
        path: "/sys/kernel/mm/transparent_hugepage/enabled",
        render: Some(|| mthp::POLICY.render_top()),
        write: Some(|s| mthp::POLICY.write_top(s)),
    };
    all[2] = Node {
        path: "/sys/kernel/mm/transparent_hugepage/shrink_deferred",
        render: Some(|| folio::deferred_count().to_string() + "\n"),
        write: Some(shrink),
    };
    all[3] = Node {
        path: "/proc/self/thpmaps",
        render: Some(thpmaps),
        write: None,
    };
    all[4] = Node {
        path: "/sys/kernel/mm/transparent_hugepage/cow",
        render: Some(cow),
        write: None,
    };
    all[5] = Node {
        path: "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size",
        render: Some(|| "2097152\n".to_string()),
        write: None,
    };
    all[6] = Node {
        path: "/proc/self/smaps",
        render: Some(smaps),
        write: None,
    };
    all[7] = Node {
        path: "/sys/kernel/mm/transparent_hugepage/defrag",
        render: Some(|| mthp::DEFRAG.render()),
        write: Some(|s| mthp::DEFRAG.write(s)),
    };
    all[8] = Node {
        path: "/sys/kernel/mm/transparent_hugepage/shmem_enabled",
        render: Some(|| mthp::SHMEM_ENABLED.render()),
        write: Some(|s| mthp::SHMEM_ENABLED.write(s)),
    };
    all[9] = Node {
        path: "/sys/kernel/mm/transparent_hugepage/use_zero_page",
        render: Some(|| {
            format!(
                "{}\n",
                mthp::USE_ZERO_PAGE.load(core::sync::atomic::Ordering::Relaxed) as u8
            )
        }),
        write: Some(mthp::write_use_zero_page),
    };
    // A node added to `size_nodes!` without counting it here would overwrite others.
    assert!(
        sizes.len() == SIZE_NODES,
        "SIZE_NODES does not match size_nodes!"
    );
    let mut i = 0;
    while i < sizes.len() {
        all[TOP_NODES + i] = sizes[i];
        i += 1;
    }
    let mut k = 0;
    while k < KHUGEPAGED_NODES {
        all[TOP_NODES + SIZE_NODES + k] = khugepaged[k];
        k += 1;
    }
    all
};
