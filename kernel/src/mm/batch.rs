//! Range work in bounded batches (*bounded kernel memory*, `aspace`): a user range
//! of any length is worked a 2 MiB piece at a time, so an unmap collects at most 512
//! records whatever its length.

use super::addr::PTRS_PER_TABLE;
use super::{VirtAddr, PAGE_SIZE};

/// Pages per batch of range work (2 MiB, aligned): bounds what one step collects.
pub(super) const BATCH_PAGES: usize = PTRS_PER_TABLE;
/// Pages per page-table operation of work that collects nothing (64 MiB, aligned):
/// bounds only what the checker records of one operation in test builds (a block's
/// entries per 64 KiB touched, 1024 blocks), and costs one operation per 32 tables.
pub(super) const WIDE_BATCH_PAGES: usize = 16 * 1024;

/// The pages of `[start, end)`.
pub(super) fn pages(start: VirtAddr, end: VirtAddr) -> usize {
    ((end.as_u64() - start.as_u64()) / PAGE_SIZE as u64) as usize
}

/// `[start, end)` cut at 2 MiB boundaries: pieces of at most `BATCH_PAGES` pages, none
/// cutting a block that the range does not cut itself.
pub(super) fn batches(
    start: VirtAddr,
    end: VirtAddr,
) -> impl Iterator<Item = (VirtAddr, VirtAddr)> {
    batches_of(start, end, BATCH_PAGES)
}

/// `[start, end)` cut at multiples of `batch` pages (a multiple of 512): pieces of at
/// most `batch` pages, none cutting a block that the range does not cut itself.
pub(super) fn batches_of(
    start: VirtAddr,
    end: VirtAddr,
    batch: usize,
) -> impl Iterator<Item = (VirtAddr, VirtAddr)> {
    let step = batch * PAGE_SIZE;
    let mut at = start;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let to = at.align_down(step).add(step).min(end);
        let piece = (at, to);
        at = to;
        Some(piece)
    })
}
