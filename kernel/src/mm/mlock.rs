//! mlock, mlock2, munlock, mlockall and munlockall, with Linux's semantics (mm/mlock.c).
//!
//! A lock is a VMA flag (`VmaFlags::locked`, with `lockonfault` for MLOCK_ONFAULT and
//! MCL_ONFAULT): setting it splits the VMAs at the range's ends like mprotect, and
//! clearing it merges them back. What the lock means here, where nothing is swapped:
//! - the range is populated when it is locked (unless on-fault), as Linux's
//!   `__mm_populate`: a write fault per page of a writable VMA (which breaks
//!   copy-on-write), a read fault otherwise; a PROT_NONE VMA stops it with EFAULT
//!   (mlock's ENOMEM, the VMA locked all the same: Linux 6.12 and 7.3 do so). Faults
//!   go one page at a time, so the call allocates no kernel memory in proportion to
//!   the range;
//! - Linux's population touches every present page of a writable VMA with a write,
//!   which dirties a MADV_FREE'd folio so that reclaim keeps it; here the lazyfree mark
//!   of such a folio goes (`lazyfree::unmark_written`);
//! - a reclaim pass never discards a folio through a locked mapping (`reclaim_entry`
//!   keeps the entry: after munlock the folio can go, as Linux puts an unlocked folio
//!   back on its LRU); MADV_FREE, MADV_DONTNEED and MADV_PAGEOUT on a locked VMA are
//!   EINVAL (`map`'s madvise), MADV_DONTNEED_LOCKED is not;
//! - fork's child inherits no lock (`fork`); mlockall(MCL_FUTURE) sets `def_flags`,
//!   which mmap and brk give every new VMA (and the stack's growth keeps its VMA's);
//! - a hugetlb VMA is never locked (Linux's `mlock_fixup` passes it by, and
//!   `mmap_region` clears the lock of a new one: its pages are never reclaimed
//!   anyway), so mlock neither splits it (a cut inside a huge page would leave a VMA
//!   no unmap can take) nor marks it, but the population faults its pages in, as
//!   Linux's `__mm_populate` does for every VMA of the range.
//!
//! RLIMIT_MEMLOCK does not apply: every process here is root, which has
//! CAP_IPC_LOCK, so Linux's `can_do_mlock` and the limit always allow.

use super::aspace::Mm;
use super::fault::Access;
use super::install::FaultError;
use super::machine::MmMachine;
use super::vma::VmaFlags;
use super::VirtAddr;
use crate::uapi::{Errno, EAGAIN, ENOMEM, MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT};

/// How a range is locked: populated now, or only as faults come (MLOCK_ONFAULT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    Populate,
    OnFault,
}

/// `flags` with the lock `lock` (or none).
fn with_lock(flags: VmaFlags, lock: Option<Lock>) -> VmaFlags {
    VmaFlags {
        locked: lock.is_some(),
        lockonfault: lock == Some(Lock::OnFault),
        ..flags
    }
}

impl<E: MmMachine> Mm<E> {
    /// mlock, mlock2 (`Some`) and munlock (`None`) of `[start, end)` (page-aligned,
    /// non-empty): VMA by VMA from `start`, a hole stops it with ENOMEM (what came
    /// before stays changed, as Linux's `apply_vma_lock_flags`), then the population,
    /// whose failure for want of memory is EAGAIN and on an inaccessible VMA ENOMEM
    /// (Linux's `__mlock_posix_error_return`).
    pub fn mlock(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
        lock: Option<Lock>,
    ) -> Result<(), Errno> {
        let mut at = start;
        while at < end {
            let vma = self.vmas.find(at).cloned().ok_or(ENOMEM)?;
            let to = vma.end.min(end);
            // Already so, or hugetlb: nothing to split (Linux's mlock_fixup returns
            // early for both).
            if with_lock(vma.flags, lock) != vma.flags && vma.hugetlb().is_none() {
                self.change_flags(at, to, |f| *f = with_lock(*f, lock))?;
            }
            at = to;
        }
        if lock == Some(Lock::Populate) {
            self.populate_locked(start, end).map_err(|e| match e {
                FaultError::Oom => EAGAIN,
                FaultError::Segv | FaultError::Bus | FaultError::Userfault(_) => ENOMEM,
            })?;
        }
        Ok(())
    }

    /// mlockall (`flags` checked: MCL_CURRENT and/or MCL_FUTURE, maybe MCL_ONFAULT) and
    /// munlockall (0), as Linux's `apply_mlockall_flags`: `def_flags` take the future
    /// lock (or none), every VMA the current one if MCL_CURRENT (or none), and the
    /// population's failures are ignored.
    pub fn mlockall(&mut self, flags: u64) -> Result<(), Errno> {
        let lock = |on: bool| {
            on.then_some(if flags & MCL_ONFAULT != 0 {
                Lock::OnFault
            } else {
                Lock::Populate
            })
        };
        self.def_flags = with_lock(self.def_flags, lock(flags & MCL_FUTURE != 0));
        if flags & MCL_FUTURE != 0 && flags & MCL_CURRENT == 0 {
            return Ok(());
        }
        let current = lock(flags & MCL_CURRENT != 0);
        let mut next = VirtAddr(0);
        while let Some(vma) = self.vmas.next_from(next).cloned() {
            next = vma.end;
            if with_lock(vma.flags, current) != vma.flags && vma.hugetlb().is_none() {
                self.change_flags(vma.start, vma.end, |f| *f = with_lock(*f, current))?;
            }
        }
        if current == Some(Lock::Populate) {
            let mut next = VirtAddr(0);
            while let Some(vma) = self.vmas.next_from(next).cloned() {
                next = vma.end;
                let _ = self.populate_locked(vma.start, vma.end);
            }
        }
        Ok(())
    }

    /// A new VMA (mmap, brk) under mlockall(MCL_FUTURE): its flags and whether it is
    /// to be populated now.
    pub(super) fn new_vma_flags(&self) -> (VmaFlags, bool) {
        let f = self.def_flags;
        (f, f.locked && !f.lockonfault)
    }

    /// Fault in the locked, populate-now VMA pieces of `[start, end)` and its hugetlb
    /// ones (never locked, module doc), as Linux's `__mm_populate`: the first failure
    /// stops it, an inaccessible VMA is `Segv`.
    pub(super) fn populate_locked(
        &mut self,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), FaultError> {
        let mut at = start;
        // `at < end` first: a locked neighbour merged into the range's VMA makes it
        // reach past `end`, and `next_from(end)` would find it again (a hang).
        while let Some(vma) = self
            .vmas
            .next_from(at)
            .cloned()
            .filter(|v| at < end && v.start < end)
        {
            let (a, b) = (vma.start.max(at), vma.end.min(end));
            at = b;
            if vma.flags.lockonfault || !(vma.flags.locked || vma.hugetlb().is_some()) {
                continue;
            }
            let p = vma.prot;
            if !(p.read || p.write || p.exec) {
                return Err(FaultError::Segv);
            }
            let access = if vma.prot.write {
                Access::Write
            } else {
                Access::Read
            };
            self.populate(a, b, access)?;
            if vma.prot.write {
                self.unmark_written(a, b);
            }
        }
        Ok(())
    }

    /// The bytes of locked VMAs (/proc/self/status VmLck: Linux's `locked_vm`, which
    /// counts the VMAs' length, not what is resident).
    pub fn locked_bytes(&self) -> u64 {
        self.vmas
            .iter()
            .filter(|v| v.flags.locked)
            .map(|v| v.end.as_u64() - v.start.as_u64())
            .sum()
    }
}
