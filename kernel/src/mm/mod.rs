//! Memory management: physical frames and their metadata (`frame`), folios and their
//! SMP protocol (`folio`), the mTHP policy and statistics (`mthp`), the page tables of
//! user address spaces with the contiguous layer (`pgtable`), ASIDs (`asid`), and the
//! user address space above them: `aspace` (Mm), `vma`, and the files a write fault after
//! fork passes through in order: `fault` -> `cow` -> `pgtable` -> `pgtable/contpte`;
//! `zero` (the shared zero page read faults map, and the write that replaces it);
//! `map` (mmap, munmap, mprotect, madvise, mincore, brk), `mremap` (folios move whole),
//! `fork` (with MADV_DONTFORK and MADV_WIPEONFORK), `mlock` (locked VMAs), `pin`
//! (pages held outside any mapping, and what that means for each of the above),
//! `userfault` (userfaultfd's registrations and fills),
//! `report`, `audit`; `hugetlb` (the pools of fixed-size pages for `MAP_HUGETLB`);
//! `collapse` gives split ranges their large translation back (the collapse thread,
//! collapse in place, MADV_COLLAPSE).
//! `lazyfree` (MADV_FREE of whole folios, their discard, the lazyfree list as reverse
//! map) and `reclaim` (the pass that discards them and runs the deferred-split shrinker).
//! The address space is generic over its machine (`machine::MmMachine`): on the host, `host`
//! simulates RAM under it and `tests` runs it against the software walk. Everything
//! here runs on the host; the real machine, the kernel heap and the kernel's own
//! translation tables are `arch::aarch64::mm`.
//!
//! Address map: the kernel and all of RAM live in the high half (TTBR1) at
//! `PA + KERNEL_VA_OFFSET` (the linear map); device MMIO likewise; TTBR0 is left for
//! user address spaces.
//!
//! # The lock table
//!
//! Every lock memory management takes, in the order they nest (a lock may be taken
//! while holding only those above it). "Try" means a caller that may already hold a
//! lock of the same row only try-locks, and gives up if it is held. The files cite
//! their rows as `L1`..`L9`.
//!
//! | row | lock | protects | taken by | waits? |
//! |---|---|---|---|---|
//! | L1 | a process's `sigaction` (`proc::task::Group`) | every thread's copy of the signal actions, the one trampoline | rt_sigaction | waits |
//! | L2 | `Mm` lock (`proc::mmlock`, shared by the threads of a process: spins briefly, then sleeps) | the VMAs, the page tables (every software write of an entry) and the folio accounting of its mappings | faults of every thread, system calls, fork, exit, the collapse thread | waits (its holder never sleeps); a reclaimer holding one *tries* a second (lazyfree's protocol) |
//! | L3 | a file's `cache` lock (`shmem`); a shared hugetlb mapping's pages (`hugetlb::resv::HugeFile`) | the file's size and its page-cache folio map (each folio in it holds a reference and is marked `CACHED`); the hugetlb file's pages and unused reservations | faults on its mappings, read, write, ftruncate, fallocate, the file's last reference | waits |
//! | L4 | `SHRINKER` (`folio`) | one deferred-split shrinker at a time | reclaim passes | waits |
//! | L5 | a folio's lock bit (`folio`, rule 1) | its shape, counts (references, map counts, pages' pins) and flags | whoever changes them; a pin or unpin (`pin`: a pipe's read or close, gup_test) | waits; a merge try-locks the second and later folios |
//! | L6 | `DEFERRED` queue (`folio`), lazyfree `LIST` (`lazyfree`), collapse hints (`collapse::hints`) | their lists | under a folio lock or alone | waits (IRQ-safe) |
//! | L7 | `HUGE_LOCK` (`zero`); a hugetlb pool (`hugetlb`; never two at once) | the huge zero page and its mapping count; a pool's free pages and counters | a fault mapping it, the shrinker freeing it; mmap's reservation, hugetlb faults and unmaps, the pool files | waits |
//! | L8 | ASID allocator (`asid`) | the ASID bitmap | a new or dying address space | waits (IRQ-safe) |
//! | L9 | frame allocator (`frame`), kernel heap (`arch::aarch64::mm::heap`) | free frames, heap blocks | everyone | waits (IRQ-safe) |
//!
//! A userfaultfd context's lock (`proc::userfault`) is outside the table: taken with
//! none of it held. A fault waits for its user-space handler only with the L2 lock
//! dropped, and retries (`userfault`, docs/userfaultfd.md).
//!
//! **Threads and the hardware.** The `Mm` lock serialises every *software* change of
//! a process's tables, so faults of two threads run one after the other, the waiting
//! one asleep (Linux 6.4+ takes per-VMA locks instead; see docs/threads.md). The hardware is not serialised:
//! while one CPU changes the tables, other CPUs run the process's other threads, and
//! their walkers set AF and dirty (FEAT_HAFDBS) in valid entries and use any entry
//! that is valid. Hence every change of a valid entry is one atomic swap or
//! compare-and-swap (`pgtable::ctx`), so a flag set by a walker between the read and
//! the write is never lost; a break-before-make (`pgtable::contpte`'s convert) clears
//! the 16 entries with swaps and gathers their AF and dirty state from what the swaps
//! returned; lazyfree write-protects (one TLBI) before it reads the dirty state it
//! decides on. A thread that touches an entry inside another CPU's break-before-make
//! window takes a translation fault, waits for the `Mm` lock, finds the entry valid and
//! returns: a spurious fault (`pgtable` counts it: `spurious_faults`). TLB
//! invalidation is broadcast (TLBI ...IS) and ASID-tagged, so it reaches every CPU the
//! process runs on.

// No `unsafe` in memory management: what touches the machine (frames through the
// linear map, the kernel's tables, the heap) is `arch::aarch64::mm`, behind safe
// functions; everything here runs on the host under the model.
#![forbid(unsafe_code)]

pub mod addr;
pub mod asid;
pub mod folio;
pub mod frame;
pub mod mthp;
pub mod pgtable;
pub mod shmem;
pub mod vma;

mod anon;
pub mod aspace;
pub mod audit;
mod batch;
pub mod collapse;
pub mod cow;
pub mod fault;
mod filemap;
mod fork;
#[cfg(test)]
pub mod host;
pub mod hugetlb;
pub mod install;
pub mod lazyfree;
pub mod machine;
mod map;
pub mod mlock;
mod mremap;
pub mod pin;
pub mod reclaim;
mod report;
#[cfg(test)]
mod tests;
pub mod userfault;
pub mod zero;

// The names most of the kernel uses, each defined in its own file: this file defines
// nothing, so a file of `mm/` naming `super::PAGE_SIZE` depends on `addr.rs` alone and
// not on everything this file declares (tests/tests/layers.rs).
pub use addr::{phys_to_virt, virt_to_phys, PhysAddr, VirtAddr, KERNEL_VA_OFFSET, PAGE_SIZE};
pub use pgtable::MemType;
pub use report::kpageflags;
