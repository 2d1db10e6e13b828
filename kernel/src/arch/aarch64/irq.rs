//! Masking of IRQ and FIQ on the local CPU (PSTATE.DAIF). On the host, where the pure
//! parts of the kernel are unit-tested, there are no interrupts to mask.

/// The DAIF bits as they were before masking.
pub type IrqState = u64;

#[cfg(target_os = "none")]
mod imp {
    use super::IrqState;

    pub fn save_and_disable() -> IrqState {
        let daif: u64;
        // SAFETY: reads DAIF and masks IRQ/FIQ; no memory is touched.
        unsafe {
            core::arch::asm!("mrs {}, daif", "msr daifset, #3", out(reg) daif, options(nomem, nostack))
        };
        daif
    }

    pub fn restore(state: IrqState) {
        // SAFETY: puts back a DAIF value read by save_and_disable.
        unsafe { core::arch::asm!("msr daif, {}", in(reg) state, options(nomem, nostack)) };
    }

    pub fn enable() {
        // SAFETY: unmasks IRQ/FIQ; handlers are installed before this is called.
        unsafe { core::arch::asm!("msr daifclr, #3", options(nomem, nostack)) };
    }

    pub fn enabled() -> bool {
        let daif: u64;
        // SAFETY: register read.
        unsafe {
            core::arch::asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags))
        };
        daif & (1 << 7) == 0
    }

    /// Wait for an interrupt; returns after it has been taken (if unmasked).
    pub fn wait() {
        // SAFETY: wfi only suspends the CPU until an interrupt or event.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::IrqState;

    pub fn save_and_disable() -> IrqState {
        0
    }

    pub fn restore(_state: IrqState) {}
}

pub use imp::*;
