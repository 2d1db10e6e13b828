//! /sys/kernel/mm/transparent_hugepage, as Linux lays it out: `enabled`, and per mTHP
//! size `hugepages-<N>kB/enabled` and `hugepages-<N>kB/stats/<counter>`; plus this
//! kernel's `shrink_deferred` (write 1: run the deferred-split shrinker now; read: the
//! folios waiting), `cow` (`page` or `folio`: what a write to a shared large folio
//! copies, the boot option `cow=`) and /proc/self/thpmaps (per VMA: bytes by folio order, contiguous
//! and PMD-mapped; see `mm::aspace::Mm::thp_report`).

use alloc::string::{String, ToString};

use super::Node;
use crate::mm::{folio, mthp};
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
    let t = crate::proc::sched::me();
    let mm = t.mm.lock();
    mm.as_ref().map_or_else(String::new, |m| m.thp_report())
}

fn smaps() -> String {
    let t = crate::proc::sched::me();
    let mm = t.mm.lock();
    mm.as_ref().map_or_else(String::new, |m| m.smaps())
}

pub static NODES: [Node; 7 + 8 * 13] = {
    let sizes = size_nodes!(2 => "16", 3 => "32", 4 => "64", 5 => "128", 6 => "256", 7 => "512", 8 => "1024", 9 => "2048");
    let mut all = [const { super::dir("") }; 7 + 8 * 13];
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
    let mut i = 0;
    while i < sizes.len() {
        all[7 + i] = sizes[i];
        i += 1;
    }
    all
};
