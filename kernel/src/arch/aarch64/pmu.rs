//! The PMU counters benchmarks read (aarch64-cpu names no PMU registers): the cycle
//! counter PMCCNTR_EL0 and event counter 0 programmed with INST_RETIRED (0x08). Under
//! QEMU with `-icount shift=0,sleep=off` the cycle counter follows retired instructions
//! exactly, so both figures are deterministic; without icount, cycles are host time.

/// PMUv3 event: instruction architecturally executed.
const INST_RETIRED: u64 = 0x08;

/// A snapshot of both counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub cycles: u64,
    pub instructions: u64,
}

impl Sample {
    pub fn since(self, earlier: Sample) -> Sample {
        // Event counters are 32 bits wide before PMUv3p5's PMCR.LP: differences are
        // taken modulo 2^32 (benchmarked operations are far shorter).
        let instructions = self.instructions.wrapping_sub(earlier.instructions) & 0xffff_ffff;
        Sample {
            cycles: self.cycles.wrapping_sub(earlier.cycles),
            instructions,
        }
    }
}

/// Enable and reset the cycle counter and counter 0 (INST_RETIRED, EL1 and EL0) on this CPU.
pub fn enable() {
    // SAFETY: PMU configuration registers; nothing else in the kernel uses the PMU.
    unsafe {
        core::arch::asm!(
            "msr pmevtyper0_el0, {ev}",   // count at EL1 and EL0 (P = U = 0)
            "msr pmccfiltr_el0, xzr",     // cycles at EL1 and EL0
            "msr pmcntenset_el0, {en}",   // C (bit 31) and counter 0
            "mov {t}, #0x47",             // E | P (reset events) | C (reset cycles) | LC (64-bit)
            "msr pmcr_el0, {t}",
            "isb",
            ev = in(reg) INST_RETIRED,
            en = in(reg) (1u64 << 31) | 1,
            t = out(reg) _,
            options(nostack),
        )
    };
}

/// Whether the PMU counts INST_RETIRED (PMCEID0_EL0 bit 8). QEMU offers it only under
/// `-icount`, where it is exact.
pub fn counts_instructions() -> bool {
    let ceid: u64;
    // SAFETY: ID-style register read.
    unsafe {
        core::arch::asm!("mrs {}, pmceid0_el0", out(reg) ceid, options(nomem, nostack, preserves_flags))
    };
    ceid & (1 << INST_RETIRED) != 0
}

/// Read both counters (ISB first, so earlier instructions are counted).
#[inline(always)]
pub fn sample() -> Sample {
    let (cycles, instructions): (u64, u64);
    // SAFETY: counter reads.
    unsafe {
        core::arch::asm!(
            "isb", "mrs {c}, pmccntr_el0", "mrs {i}, pmevcntr0_el0",
            c = out(reg) cycles, i = out(reg) instructions, options(nostack, nomem, preserves_flags)
        )
    };
    Sample {
        cycles,
        instructions,
    }
}
