//! /proc/lazyfree: this kernel's lazyfree and reclaim counters (`mm::lazyfree::Stats`),
//! one `name value` per line; Linux's names among them are also in /proc/vmstat. Plus
//! `lazyfree_list`, the entries on the lazyfree list (live or stale), and the reclaim
//! thread's `kswapd_wakeups` and `kswapd_passes`. Writing `1` runs
//! a reclaim pass now over every address space (`mm::reclaim::pass_all`).

use alloc::string::String;
use core::fmt::Write;

use crate::arch::aarch64::mm::machine::KernelMachine;
use crate::mm::{lazyfree, reclaim};
use crate::uapi::{Errno, EINVAL};

pub fn render() -> String {
    let mut out = String::new();
    for (name, v) in lazyfree::STATS.all() {
        let _ = writeln!(out, "{name} {v}");
    }
    let _ = writeln!(out, "lazyfree_list {}", lazyfree::list_len());
    let rc = &reclaim::RECLAIM;
    for (name, c) in [
        ("kswapd_wakeups", &rc.kswapd_wakeups),
        ("kswapd_passes", &rc.kswapd_passes),
    ] {
        let _ = writeln!(
            out,
            "{name} {}",
            c.load(core::sync::atomic::Ordering::Relaxed)
        );
    }
    out
}

pub fn write(s: &str) -> Result<(), Errno> {
    match s.trim_end() {
        "1" => {
            reclaim::pass_all::<KernelMachine>();
            Ok(())
        }
        _ => Err(EINVAL),
    }
}
