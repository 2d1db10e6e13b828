//! System-register access for registers aarch64-cpu does not name (ID registers we
//! decode ourselves, PAN, the PMU), through `mrs`/`msr`.

/// Read a system register by name: `read_sysreg!(id_aa64mmfr2_el1)`.
#[macro_export]
macro_rules! read_sysreg {
    ($reg:tt) => {{
        let v: u64;
        // SAFETY: reading an ID or status register has no side effect.
        unsafe { core::arch::asm!(concat!("mrs {}, ", stringify!($reg)), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Write a system register by name; the caller supplies the ISB where one is needed.
#[macro_export]
macro_rules! write_sysreg {
    ($reg:tt, $val:expr) => {{
        let v: u64 = $val;
        // SAFETY: only used on registers whose new value the call site justifies.
        unsafe { core::arch::asm!(concat!("msr ", stringify!($reg), ", {}"), in(reg) v, options(nostack, preserves_flags)) };
    }};
}

pub use crate::{read_sysreg, write_sysreg};

#[inline(always)]
pub fn isb() {
    // SAFETY: a context synchronization barrier has no memory effect.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

#[inline(always)]
pub fn dsb_ish() {
    // SAFETY: barrier only.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}

pub fn mpidr() -> u64 {
    read_sysreg!(mpidr_el1) & 0xff_00ff_ffff
}

pub fn current_el() -> u8 {
    ((read_sysreg!(CurrentEL) >> 2) & 3) as u8
}
