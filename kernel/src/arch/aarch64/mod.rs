//! AArch64: exception syndromes, CPU features, interrupt masking, trap entry, MMU
//! control, TLB maintenance, PMU counters, and the machine under `mm` (`mm`). Entry
//! assembly: `boot.s` (reset, EL2 drop, MMU on) and `vectors.s` (exception vectors),
//! included by the kernel binary.

pub mod esr;
pub mod features;
pub mod irq;

#[cfg(target_os = "none")]
pub mod context;
#[cfg(target_os = "none")]
pub mod mm;
#[cfg(target_os = "none")]
pub mod mmu;
#[cfg(target_os = "none")]
pub mod pmu;
#[cfg(target_os = "none")]
pub mod regs;
pub mod tlb;
#[cfg(target_os = "none")]
pub mod trap;
#[cfg(target_os = "none")]
pub mod uaccess;
