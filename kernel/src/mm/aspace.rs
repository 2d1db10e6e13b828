//! A user address space (`Mm`): its page tables, its VMAs and its heap (brk). What
//! happens to it is split by the path a reader follows:
//!
//! ```text
//! aspace.rs   Mm and the invariants below
//! fault.rs    a fault: classify and hand on; populate; a debugger's access
//! anon.rs     demand-zero: the largest mTHP folio that fits
//! cow.rs      a write to a shared page: reuse the folio or the page, copy the folio or the page
//! zero.rs     the shared zero page (read faults) and a write over it
//! install.rs  a folio into the tables and out, with its accounting (below all of the above)
//! batch.rs    range work in bounded batches
//! map.rs      mmap, munmap, mprotect, madvise, mincore, brk
//! mremap.rs   mremap: shrink, grow in place, move (folios whole)
//! fork.rs     the child's copy (MADV_DONTFORK, MADV_WIPEONFORK)
//! mlock.rs    mlock, munlock, mlockall: locked VMAs, populated, never discarded
//! report.rs   /proc/self/thpmaps
//! ```
//!
//! `Mm` is generic over the machine it runs on ([`MmMachine`]: the page-table environment
//! plus page contents and the tables' owner), as `pgtable` is over `PtMachine`: the kernel
//! runs it on `KernelMachine` (`arch::aarch64::mm::machine`, monomorphised: no dynamic dispatch), host tests
//! on `host::HostMachine`, a simulated RAM walked by the software model (`mm/tests`).
//!
//! Every page-table entry holds one reference and one map count on its page's folio.
//!
//! Invariants every operation keeps (the audit checks them in test builds):
//! - *Who may write a page*: an entry is writable (or DBM) only if it maps a page
//!   that is anon-exclusive to this address space. fork clears exclusivity, so
//!   nothing but the write fault (reuse or copy) makes a shared page writable again;
//!   mprotect grants write only to exclusive pages (Linux: `can_change_pte_writable`).
//! - *Blocks and VMAs agree*: no 2 MiB block straddles a VMA boundary. Every VMA
//!   split (mprotect, madvise, munmap, mmap over a part) splits a block cut by the new
//!   edge first, and fails before changing anything if that needs a table it cannot get.
//! - *Bounded kernel memory*: no operation allocates kernel memory in proportion to a
//!   user range. Ranges are worked in 2 MiB batches (`batch`), so an unmap collects
//!   at most 512 records whatever its length; VMAs are capped at `MAX_MAP_COUNT`.
//!
//! Locking: the owning process's `Mm` lock is held for every call here; nothing here
//! touches user memory through user addresses (uaccess happens outside the lock).
//! Folio counts change only under the folio lock (`folio`'s protocol); a page this
//! address space maps pins its folio, and its anon-exclusive flag changes only under
//! the lock of an address space that maps it.

use super::machine::MmMachine;
use super::vma::{VmaFlags, VmaSet};
use super::VirtAddr;
use crate::uapi::{Errno, ENOMEM};

/// Top of the initial stack, and its reserved size.
pub const STACK_TOP: u64 = 0x0000_ffff_f000_0000;
pub const STACK_SIZE: u64 = 8 << 20;
/// mmap searches downwards from here (below the stack and a gap).
pub const MMAP_BASE: u64 = STACK_TOP - STACK_SIZE - (256 << 20);
/// Lowest address mmap hands out (the first 64 KiB stay unmapped: NULL dereferences).
pub const MMAP_MIN: u64 = 0x1_0000;

/// An address space on the machine `E`: the kernel's (`arch::aarch64::mm::machine`
/// names it `Mm` there) or the simulated RAM of host tests.
pub struct Mm<E: MmMachine> {
    pub tables: E::Tables,
    pub vmas: VmaSet,
    pub brk_start: VirtAddr,
    pub brk: VirtAddr,
    /// prctl(PR_SET_THP_DISABLE): no large folio is allocated or collapsed here,
    /// whatever the policy and the VMA's hint (Linux's MMF_DISABLE_THP). The process
    /// layer carries it across fork and exec.
    pub thp_disabled: bool,
    /// mlockall(MCL_FUTURE): the lock flags every new VMA gets (Linux's `def_flags`).
    /// A new address space (exec, fork's child) starts without, as on Linux.
    pub def_flags: VmaFlags,
}

impl<E: MmMachine> Mm<E> {
    /// An empty address space on the machine `env`.
    pub fn new_in(env: &E) -> Result<Self, Errno> {
        Ok(Mm {
            tables: env.new_tables().map_err(|_| ENOMEM)?,
            vmas: VmaSet::new(),
            brk_start: VirtAddr(0),
            brk: VirtAddr(0),
            thp_disabled: false,
            def_flags: VmaFlags::default(),
        })
    }

    /// The folio orders a fault in a VMA with this hint may allocate.
    pub fn thp_orders(&self, hint: super::vma::HugeHint) -> u16 {
        if self.thp_disabled {
            0
        } else {
            super::mthp::POLICY.allowed_orders(hint)
        }
    }

    /// The machine this address space runs on.
    pub(super) fn env(&self) -> &E {
        self.tables.env()
    }
}

impl<E: MmMachine> Drop for Mm<E> {
    fn drop(&mut self) {
        while let Some(v) = self.vmas.next_from(VirtAddr(0)).cloned() {
            // Whole VMAs: their edges cut no block, so this needs no memory.
            self.munmap(v.start, v.end)
                .expect("unmapping a whole VMA splits nothing");
        }
        super::lazyfree::forget_owner(self.tables.root());
    }
}
