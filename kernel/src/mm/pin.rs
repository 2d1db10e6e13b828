//! Pins: user pages held outside any mapping (Linux's `pin_user_pages` with
//! FOLL_LONGTERM), by vmsplice's pipe buffers and the gup_test device. A pin is a
//! count on the page (`FrameMeta::pins`, the head's `PINNED` while any page of the
//! folio has one) and a reference to its folio, so the frame outlives munmap,
//! MADV_DONTNEED and exit, and comes back at [`unpin`].
//!
//! A pin must keep seeing the page the process reads and writes, and the process's
//! data must never leak into another process through it (CVE-2020-29374, the bug
//! class Linux closed in 5.8-5.19 with `PageAnonExclusive`). Linux's rules, here:
//!
//! 1. **A pin refers to an exclusive anonymous page** in a private mapping. A
//!    read-only pin of a page that is not (shared since fork, the zero page, a file's
//!    page in a private mapping) first *unshares* it: the copy-on-write path without
//!    a write (`cow`; Linux's FAULT_FLAG_UNSHARE and `gup_must_unshare`). A pin in a
//!    shared mapping holds the file's page, which every mapper writes in place.
//! 2. **A pinned page stays exclusive.** Fork copies the exclusive pages of a pinned
//!    folio for the child instead of sharing them (`fork`: the whole folio into a new
//!    one of its order when the child maps all of it, a page at a time otherwise;
//!    Linux copies 4 KiB pages and splits a PMD mapping first). Copy-on-write reuses
//!    an exclusive page whatever else holds a reference to it (`cow`). The checker
//!    and the audit enforce it: a pinned anonymous page that is mapped is exclusive.
//! 3. **A pinned folio keeps its shape and its data**: the shrinker does not split it
//!    (it stays queued: `split_failed`), collapse neither merges it nor copies it
//!    (`collapse_exceed_pinned`), and it is never lazyfree: a pin drops the mark
//!    (Linux's reclaim finds the extra reference and keeps the folio) and MADV_FREE
//!    skips a pinned folio (`lazyfree_pinned_skipped`).
//!
//! Pins are taken under the `Mm` lock of the address space (L2) and the folio's lock
//! (L5, rule 1 of `folio`'s protocol); an unpin takes only the folio lock, from any
//! context that may take it (a pipe read, a close, the exit of the pinner).

use core::sync::atomic::{AtomicU64, Ordering};

use super::aspace::Mm;
use super::cow;
use super::fault::Access;
use super::folio::{self, Folio};
use super::install::FaultError;
use super::machine::MmMachine;
use super::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::uapi::{Errno, EFAULT, ENOMEM};

/// Pages pinned and unpinned since boot (Linux's `nr_foll_pin_acquired` and
/// `nr_foll_pin_released` in /proc/vmstat), and read-only pins that unshared a page.
pub static PINNED: AtomicU64 = AtomicU64::new(0);
pub static UNPINNED: AtomicU64 = AtomicU64::new(0);
pub static UNSHARED: AtomicU64 = AtomicU64::new(0);

impl<E: MmMachine> Mm<E> {
    /// Pin the pages from `start` (page aligned), one per slot of `out`, for reading,
    /// or for writing if `write`, and write their frames into `out`. Returns how many
    /// were pinned: fewer than asked at the first page that cannot be, whose error is
    /// returned only if it is the first (Linux's `pin_user_pages`): EFAULT outside
    /// every VMA or where the VMA forbids the access, ENOMEM without memory or with a
    /// page's pin count full.
    pub fn pin_pages(
        &mut self,
        start: VirtAddr,
        out: &mut [PhysAddr],
        write: bool,
    ) -> Result<usize, Errno> {
        for (i, slot) in out.iter_mut().enumerate() {
            let page = start
                .as_u64()
                .checked_add((i * PAGE_SIZE) as u64)
                .map(VirtAddr);
            match page.ok_or(EFAULT).and_then(|p| self.pin_page(p, write)) {
                Ok(pa) => *slot = pa,
                Err(e) if i == 0 => return Err(e),
                Err(_) => return Ok(i),
            }
        }
        Ok(out.len())
    }

    /// Fault `page` in as the pin needs it (rule 1), then pin it.
    fn pin_page(&mut self, page: VirtAddr, write: bool) -> Result<PhysAddr, Errno> {
        let vma = self.vmas.find(page).cloned().ok_or(EFAULT)?;
        // A write pin needs a writable VMA; a read pin one the process can read, which
        // on arm64 includes PROT_WRITE alone (its entries are readable, and Linux's
        // GUP-fast, which vmsplice uses, looks at the entry, not at VM_READ).
        let allowed = if write {
            vma.prot.write
        } else {
            vma.prot.read || vma.prot.write
        };
        if !allowed {
            return Err(EFAULT);
        }
        let errno = |e: FaultError| if e == FaultError::Oom { ENOMEM } else { EFAULT };
        // Each step below leaves the page closer to pinnable; the third look finds it so
        // (a fault maps it, then a copy makes it exclusive). A fourth never comes.
        for _ in 0..4 {
            let Some(leaf) = self.tables.get(page) else {
                let access = if write { Access::Write } else { Access::Read };
                self.handle_fault(page, access).map_err(errno)?;
                continue;
            };
            let pa = leaf.pa_of(page);
            if write && !leaf.pte.is_writable() {
                // Copy-on-write (or the zero page's replacement) first.
                self.handle_fault(page, Access::Write).map_err(errno)?;
                continue;
            }
            if !vma.is_shared() && folio::anon_exclusive(pa) != Some(true) {
                // Rule 1: unshare. Writable entries map exclusive pages, so this is a
                // read pin over a read-only entry.
                cow::copy_on_write(self, page, pa, vma.clone()).map_err(errno)?;
                UNSHARED.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if write {
                // The pinner will write it: dirty now (Linux's FOLL_WRITE fault).
                self.tables.write_fault(page);
            }
            let f = Folio::lock(pa);
            if !f.pin(f.index(pa)) {
                return Err(ENOMEM);
            }
            // Rule 3: the data is wanted.
            f.set_lazyfree(false);
            PINNED.fetch_add(1, Ordering::Relaxed);
            return Ok(pa);
        }
        Err(EFAULT)
    }
}

/// Drop one pin of the page at `pa` (a frame [`Mm::pin_pages`] returned): the last
/// reference to its folio frees it.
pub fn unpin(pa: PhysAddr) {
    let f = Folio::lock(pa);
    let i = f.index(pa);
    drop(f.unpin(i));
    UNPINNED.fetch_add(1, Ordering::Relaxed);
}

/// Copy bytes of a pinned page out, from `pa` (`buf.len()` bytes inside its page):
/// a pipe reading what vmsplice pinned.
pub fn read_pinned<E: MmMachine>(env: &E, pa: PhysAddr, buf: &mut [u8]) {
    env.read_page(pa, buf);
}
