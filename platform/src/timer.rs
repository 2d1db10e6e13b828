//! The Arm generic timer's EL1 virtual timer (CNTV_*), the per-CPU tick source.
//!
//! It compares CNTVCT_EL0 (the system counter minus CNTVOFF_EL2) against
//! CNTV_CVAL_EL0 and raises PPI 11, INTID 27 on QEMU `virt`, while enabled and
//! unmasked. The interrupt is level-triggered: it stays asserted until the timer is
//! re-armed or disabled, so a handler must do one of the two before its EOI.

/// INTID of the EL1 virtual timer on QEMU `virt` (PPI 11), the fallback when the
/// device tree has no `/timer` node.
pub const VIRT_TIMER_INTID: u32 = 27;

/// INTID of the EL1 physical timer on QEMU `virt` (PPI 14), the same fallback.
pub const PHYS_TIMER_INTID: u32 = 30;

#[cfg(target_arch = "aarch64")]
pub use imp::{arm_after, counter, disable, frequency};

#[cfg(target_arch = "aarch64")]
mod imp {
    use aarch64_cpu::{
        asm::barrier,
        registers::{CNTFRQ_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0},
    };
    use tock_registers::interfaces::{Readable, Writeable};

    /// Counter ticks per second (CNTFRQ_EL0, set by firmware; 62.5 MHz on QEMU 7.2).
    pub fn frequency() -> u64 {
        CNTFRQ_EL0.get()
    }

    /// The virtual counter now.
    pub fn counter() -> u64 {
        // Without the ISB the read may be performed early, out of program order.
        barrier::isb(barrier::SY);
        CNTVCT_EL0.get()
    }

    /// Fires the timer interrupt `ticks` counter ticks from now, replacing any earlier
    /// deadline.
    pub fn arm_after(ticks: u64) {
        // CVAL rather than TVAL: TVAL is a signed 32-bit delta (34 s at 62.5 MHz).
        CNTV_CVAL_EL0.set(counter().saturating_add(ticks));
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
        // Make the new deadline take effect before whatever the caller does next
        // (typically WFI).
        barrier::isb(barrier::SY);
    }

    /// Stops the timer; its interrupt deasserts.
    pub fn disable() {
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR);
        barrier::isb(barrier::SY);
    }
}
