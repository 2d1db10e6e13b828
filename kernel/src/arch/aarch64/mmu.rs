//! MMU controls that depend on detected features, and the `AT` address-translation
//! instruction the tests use to check what the hardware walker sees.

use super::features::CpuFeatures;
use super::regs::{isb, read_sysreg, write_sysreg};

const SCTLR_SPAN: u64 = 1 << 23;
const TCR_HA: u64 = 1 << 39;
const TCR_HD: u64 = 1 << 40;

/// Per CPU, after the MMU is on: PAN on where implemented (and kept on across exception
/// entry: SCTLR_EL1.SPAN = 0), hardware Access flag / dirty state where implemented.
/// TCR_EL1.HA/HD are set before any user mapping exists, so no TLB entry depends on them.
pub fn configure(f: &CpuFeatures) {
    if f.pan {
        write_sysreg!(sctlr_el1, read_sysreg!(sctlr_el1) & !SCTLR_SPAN);
        // SAFETY: PAN only restricts EL1 access to EL0 memory; uaccess helpers lift it.
        unsafe { core::arch::asm!(".arch armv8.1-a", "msr pan, #1", options(nomem, nostack)) };
    }
    let mut tcr = read_sysreg!(tcr_el1) & !(TCR_HA | TCR_HD);
    if f.hw_access_flag() {
        tcr |= TCR_HA;
    }
    if f.hw_dirty() {
        tcr |= TCR_HD;
    }
    write_sysreg!(tcr_el1, tcr);
    isb();
}

/// Result of an `AT` probe: the output address, or the fault status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    Mapped { pa: u64 },
    Fault { fsc: u8 },
}

/// Which access an `AT` probe checks permissions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    El1Read,
    El1Write,
    El0Read,
    El0Write,
}

/// Ask the hardware walker to translate `va` for `access` (the answer lands in PAR_EL1).
pub fn translate(va: usize, access: Access) -> Translation {
    let par: u64;
    let daif = crate::arch::irq::save_and_disable();
    // SAFETY: AT only performs a translation and writes PAR_EL1; the ISB makes the
    // result visible to the following read. Interrupts are masked so nothing between
    // the AT and the read can overwrite PAR_EL1.
    unsafe {
        match access {
            Access::El1Read => {
                core::arch::asm!("at s1e1r, {}", "isb", "mrs {}, par_el1", in(reg) va, out(reg) par, options(nostack))
            }
            Access::El1Write => {
                core::arch::asm!("at s1e1w, {}", "isb", "mrs {}, par_el1", in(reg) va, out(reg) par, options(nostack))
            }
            Access::El0Read => {
                core::arch::asm!("at s1e0r, {}", "isb", "mrs {}, par_el1", in(reg) va, out(reg) par, options(nostack))
            }
            Access::El0Write => {
                core::arch::asm!("at s1e0w, {}", "isb", "mrs {}, par_el1", in(reg) va, out(reg) par, options(nostack))
            }
        }
    }
    crate::arch::irq::restore(daif);
    if par & 1 != 0 {
        Translation::Fault {
            fsc: ((par >> 1) & 0x3f) as u8,
        }
    } else {
        Translation::Mapped {
            pa: (par & 0x000f_ffff_ffff_f000) | (va as u64 & 0xfff),
        }
    }
}

/// EL1 read or write probe (kernel mappings).
pub fn translate_el1(va: usize, write: bool) -> Translation {
    translate(
        va,
        if write {
            Access::El1Write
        } else {
            Access::El1Read
        },
    )
}

/// Run user address space `root` with `asid` in TTBR0 on this CPU. Entries of other
/// ASIDs stay valid in the TLB (that is what ASIDs are for), so no TLBI is needed.
pub fn set_ttbr0(root_pa: u64, asid: u16) {
    set_ttbr0_raw(root_pa | ((asid as u64) << 48));
}

/// TTBR0_EL1 as the page-table layer encodes it (ASID in [63:48], root table).
pub fn set_ttbr0_raw(ttbr0: u64) {
    write_sysreg!(ttbr0_el1, ttbr0);
    isb();
}

/// `set_ttbr0_raw`, then drop this CPU's TLB entries of the ASID in `ttbr0` (TLBI
/// ASIDE1, this CPU only, and DSB NSH), for an ASID that several address spaces share:
/// what this CPU cached under it may be another's. No EL0 access and no user access
/// by the kernel comes between the switch and the flush.
pub fn set_ttbr0_flush_asid(ttbr0: u64) {
    set_ttbr0_raw(ttbr0);
    // SAFETY: TLB invalidation and barriers have no memory effect visible to Rust.
    unsafe {
        core::arch::asm!(
            "tlbi aside1, {}",
            "dsb nsh",
            "isb",
            in(reg) ttbr0 & (0xffff << 48),
            options(nostack, preserves_flags)
        )
    };
}
