//! /proc/lazyfree: this kernel's lazyfree and reclaim counters (`mm::lazyfree::Stats`),
//! one `name value` per line; Linux's names among them are also in /proc/vmstat. Plus
//! `lazyfree_list`, the entries on the lazyfree list (live or stale).

use alloc::string::String;
use core::fmt::Write;

use crate::mm::lazyfree;

pub fn render() -> String {
    let mut out = String::new();
    for (name, v) in lazyfree::STATS.all() {
        let _ = writeln!(out, "{name} {v}");
    }
    let _ = writeln!(out, "lazyfree_list {}", lazyfree::list_len());
    out
}
