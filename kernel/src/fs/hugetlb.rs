//! The hugetlb pools' files, as Linux lays them out (`mm::hugetlb`):
//! `/sys/kernel/mm/hugepages/hugepages-<N>kB/{nr_hugepages, free_hugepages,
//! resv_hugepages, surplus_hugepages, nr_overcommit_hugepages}` per size, and the
//! default size's `/proc/sys/vm/nr_hugepages` and `/proc/sys/vm/nr_overcommit_hugepages`.
//! /proc/meminfo's hugetlb lines are `meminfo`'s, here too.

use alloc::string::String;
use core::fmt::Write;

use super::Node;
use crate::mm::hugetlb::{self, HugeSize, SIZES};
use crate::uapi::Errno;

fn figures(i: usize) -> hugetlb::Figures {
    hugetlb::pool(SIZES[i]).figures()
}

fn set_nr(size: HugeSize, s: &str) -> Result<(), Errno> {
    let n = hugetlb::parse_count(s)?;
    hugetlb::pool(size).set_persistent(n);
    Ok(())
}

fn set_overcommit(size: HugeSize, s: &str) -> Result<(), Errno> {
    let n = hugetlb::parse_count(s)?;
    hugetlb::pool(size).set_overcommit(n)
}

macro_rules! size_nodes {
    ($($i:literal => $kb:literal),* $(,)?) => {
        [$(
            super::dir(concat!("/sys/kernel/mm/hugepages/hugepages-", $kb, "kB")),
            Node {
                path: concat!("/sys/kernel/mm/hugepages/hugepages-", $kb, "kB/nr_hugepages"),
                render: Some(|| alloc::format!("{}\n", figures($i).nr)),
                write: Some(|s| set_nr(SIZES[$i], s)),
            },
            Node {
                path: concat!("/sys/kernel/mm/hugepages/hugepages-", $kb, "kB/free_hugepages"),
                render: Some(|| alloc::format!("{}\n", figures($i).free)),
                write: None,
            },
            Node {
                path: concat!("/sys/kernel/mm/hugepages/hugepages-", $kb, "kB/resv_hugepages"),
                render: Some(|| alloc::format!("{}\n", figures($i).resv)),
                write: None,
            },
            Node {
                path: concat!("/sys/kernel/mm/hugepages/hugepages-", $kb, "kB/surplus_hugepages"),
                render: Some(|| alloc::format!("{}\n", figures($i).surplus)),
                write: None,
            },
            Node {
                path: concat!("/sys/kernel/mm/hugepages/hugepages-", $kb, "kB/nr_overcommit_hugepages"),
                render: Some(|| alloc::format!("{}\n", figures($i).overcommit)),
                write: Some(|s| set_overcommit(SIZES[$i], s)),
            },
        )*]
    };
}

static SIZE_NODES: [Node; 18] = size_nodes!(0 => "64", 1 => "2048", 2 => "32768");

pub static NODES: &[Node] = &[
    super::dir("/sys/kernel/mm/hugepages"),
    // /proc/sys's integer files take blanks around the number (proc_doulongvec_minmax).
    Node {
        path: "/proc/sys/vm/nr_hugepages",
        render: Some(|| {
            alloc::format!("{}\n", hugetlb::pool(hugetlb::default_size()).figures().nr)
        }),
        write: Some(|s| set_nr(hugetlb::default_size(), s.trim())),
    },
    Node {
        path: "/proc/sys/vm/nr_overcommit_hugepages",
        render: Some(|| {
            alloc::format!(
                "{}\n",
                hugetlb::pool(hugetlb::default_size()).figures().overcommit
            )
        }),
        write: Some(|s| set_overcommit(hugetlb::default_size(), s.trim())),
    },
];

/// Every node: the size directories' and the /proc/sys ones.
pub fn nodes() -> impl Iterator<Item = &'static Node> {
    NODES.iter().chain(SIZE_NODES.iter())
}

/// /proc/meminfo's hugetlb lines: the default size's pool, then every pool's memory.
pub fn meminfo(s: &mut String) {
    let size = hugetlb::default_size();
    let f = hugetlb::pool(size).figures();
    for (name, v) in [
        ("HugePages_Total", f.nr),
        ("HugePages_Free", f.free),
        ("HugePages_Rsvd", f.resv),
        ("HugePages_Surp", f.surplus),
    ] {
        let _ = writeln!(s, "{:<16}{v:>5}", alloc::format!("{name}:"));
    }
    super::procfs::kb(s, "Hugepagesize", size.kb());
    super::procfs::kb(s, "Hugetlb", hugetlb::total_kb());
}
