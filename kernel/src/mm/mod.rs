//! Memory management: physical frames and their metadata (`frame`), folios and their
//! SMP protocol (`folio`), the mTHP policy and statistics (`mthp`), the kernel heap
//! (`heap`), the kernel's own translation tables (`kmap`), the page tables of user
//! address spaces with the contiguous layer (`pgtable`, machine-independent and
//! host-tested; `ptenv` runs it on the real machine), ASIDs (`asid`), and the user
//! address space above them: `aspace` (Mm), `vma`, and the files a write fault after
//! fork passes through in order: `fault` -> `cow` -> `pgtable` -> `pgtable/contpte`;
//! `zero` (the shared zero page read faults map, and the write that replaces it);
//! `map` (mmap, munmap, mprotect, madvise, mincore, brk), `mremap` (folios move whole),
//! `fork` (with MADV_DONTFORK and MADV_WIPEONFORK), `mlock` (locked VMAs), `report`,
//! `audit`;
//! `collapse` gives split ranges their large translation back (the collapse thread,
//! collapse in place, MADV_COLLAPSE).
//! `lazyfree` (MADV_FREE of whole folios, their discard, the lazyfree list as reverse
//! map) and `reclaim` (the pass that discards them and runs the deferred-split shrinker).
//! The address space is generic over its machine (`env::MmEnv`): on the host, `host`
//! simulates RAM under it and `tests` runs it against the software walk.
//!
//! Address map: the kernel and all of RAM live in the high half (TTBR1) at
//! `PA + KERNEL_VA_OFFSET` (the linear map); device MMIO likewise; TTBR0 is left for
//! user address spaces.

pub mod addr;
pub mod asid;
pub mod folio;
pub mod frame;
pub mod mthp;
pub mod pgtable;
pub mod vma;

#[cfg(any(target_os = "none", test))]
pub mod aspace;
#[cfg(any(target_os = "none", test))]
pub mod audit;
#[cfg(any(target_os = "none", test))]
pub mod collapse;
#[cfg(any(target_os = "none", test))]
pub mod cow;
pub mod env;
#[cfg(any(target_os = "none", test))]
pub mod fault;
#[cfg(any(target_os = "none", test))]
mod fork;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(all(test, not(target_os = "none")))]
pub mod host;
#[cfg(target_os = "none")]
pub mod kmap;
#[cfg(any(target_os = "none", test))]
pub mod lazyfree;
#[cfg(any(target_os = "none", test))]
mod map;
#[cfg(any(target_os = "none", test))]
pub mod mlock;
#[cfg(any(target_os = "none", test))]
mod mremap;
#[cfg(target_os = "none")]
pub mod ptenv;
#[cfg(any(target_os = "none", test))]
pub mod reclaim;
#[cfg(any(target_os = "none", test))]
mod report;
#[cfg(all(test, not(target_os = "none")))]
mod tests;
#[cfg(any(target_os = "none", test))]
pub mod zero;

pub use addr::{PhysAddr, VirtAddr, PAGE_SIZE};
pub use pgtable::MemType;
#[cfg(any(target_os = "none", test))]
pub use report::kpageflags;

/// Offset of the linear map (and of the kernel image): VA = PA + KERNEL_VA_OFFSET.
pub const KERNEL_VA_OFFSET: u64 = 0xffff_0000_0000_0000;

/// Linear-map address of a physical address.
pub fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(pa.as_u64() + KERNEL_VA_OFFSET)
}

/// Physical address of a linear-map (or kernel image) address.
pub fn virt_to_phys(va: VirtAddr) -> PhysAddr {
    debug_assert!(va.as_u64() >= KERNEL_VA_OFFSET);
    PhysAddr::new(va.as_u64() - KERNEL_VA_OFFSET)
}
