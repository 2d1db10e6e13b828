//! GICv2: a memory-mapped distributor (GICD) and a memory-mapped CPU interface (GICC).
//!
//! The CPU interface frame is banked: every CPU reaches its own interface at the same
//! address, and likewise the distributor's registers for INTIDs 0-31. GICv2 names a
//! CPU by its interface number (0-7), which on QEMU `virt` is MPIDR.Aff0: QEMU packs
//! GICv2 CPUs eight to a cluster, and a GICv2 has at most eight CPUs.
//!
//! QEMU's GICv2 has no Security Extensions unless `secure=on`: the kernel then sees
//! the register view Secure software would, so it sets GICC_CTLR.AckCtl to be able to
//! acknowledge the Group 1 interrupts it uses.

use tock_registers::{fields::FieldValue, register_bitfields};

register_bitfields! {u32,
    pub GICD_CTLR [
        EnableGrp1 OFFSET(1) NUMBITS(1) [],
        EnableGrp0 OFFSET(0) NUMBITS(1) []
    ],
    pub GICD_TYPER [
        /// Implemented INTIDs are 32 * (ITLinesNumber + 1).
        ITLinesNumber OFFSET(0) NUMBITS(5) []
    ],
    pub GICD_SGIR [
        TargetListFilter OFFSET(24) NUMBITS(2) [
            /// Send to the CPU interfaces named in CPUTargetList.
            TargetList = 0b00
        ],
        CPUTargetList OFFSET(16) NUMBITS(8) [],
        SGIINTID OFFSET(0) NUMBITS(4) []
    ],
    pub GICC_CTLR [
        /// The binary point register governs Group 1 too (no separate GICC_ABPR).
        CBPR OFFSET(4) NUMBITS(1) [],
        /// Lets this (Secure-view) access acknowledge Group 1 interrupts.
        AckCtl OFFSET(2) NUMBITS(1) [],
        EnableGrp1 OFFSET(1) NUMBITS(1) [],
        EnableGrp0 OFFSET(0) NUMBITS(1) []
    ],
    pub GICC_PMR [
        Priority OFFSET(0) NUMBITS(8) []
    ],
    pub GICC_BPR [
        BinaryPoint OFFSET(0) NUMBITS(3) []
    ],
    pub GICC_IAR [
        InterruptID OFFSET(0) NUMBITS(10) []
    ],
    pub GICC_EOIR [
        EOIINTID OFFSET(0) NUMBITS(10) []
    ]
}

/// The CPU interface number of the CPU `mpidr` as a one-hot target byte (for
/// GICD_ITARGETSR and GICD_SGIR.CPUTargetList).
fn cpu_target(mpidr: u64) -> u8 {
    let aff0 = mpidr & 0xff;
    assert!(
        aff0 < 8,
        "GICv2 reaches CPU interfaces 0-7 only, MPIDR {mpidr:#x}"
    );
    1 << aff0
}

/// GICD_SGIR value sending SGI `intid` to the one CPU `mpidr`.
fn sgir(intid: u32, mpidr: u64) -> FieldValue<u32, GICD_SGIR::Register> {
    GICD_SGIR::TargetListFilter::TargetList
        + GICD_SGIR::CPUTargetList.val(cpu_target(mpidr).into())
        + GICD_SGIR::SGIINTID.val(intid)
}

#[cfg(target_arch = "aarch64")]
pub use driver::GicV2;

#[cfg(target_arch = "aarch64")]
mod driver {
    use aarch64_cpu::asm::barrier;
    use tock_registers::{
        interfaces::{Readable, Writeable},
        register_structs,
        registers::{ReadOnly, ReadWrite, WriteOnly},
    };

    use super::*;
    use crate::gic::{
        bank_bit, implemented_lines, reset_private, reset_spis, PRIORITY_MASK_OPEN, SPI_BASE,
    };

    register_structs! {
        Distributor {
            (0x000 => ctlr: ReadWrite<u32, GICD_CTLR::Register>),
            (0x004 => typer: ReadOnly<u32, GICD_TYPER::Register>),
            (0x008 => _reserved0),
            (0x080 => igroupr: [WriteOnly<u32>; 32]),
            (0x100 => isenabler: [WriteOnly<u32>; 32]),
            (0x180 => icenabler: [WriteOnly<u32>; 32]),
            (0x200 => _reserved1),
            (0x400 => ipriorityr: [WriteOnly<u32>; 255]),
            (0x7fc => _reserved2),
            // Byte-accessible: one byte per INTID.
            (0x800 => itargetsr: [WriteOnly<u8>; 1020]),
            (0xbfc => _reserved3),
            (0xf00 => sgir: WriteOnly<u32, GICD_SGIR::Register>),
            (0xf04 => @END),
        }
    }

    register_structs! {
        CpuInterface {
            (0x000 => ctlr: WriteOnly<u32, GICC_CTLR::Register>),
            (0x004 => pmr: WriteOnly<u32, GICC_PMR::Register>),
            (0x008 => bpr: WriteOnly<u32, GICC_BPR::Register>),
            (0x00c => iar: ReadOnly<u32, GICC_IAR::Register>),
            (0x010 => eoir: WriteOnly<u32, GICC_EOIR::Register>),
            (0x014 => @END),
        }
    }

    /// A GICv2 at fixed MMIO addresses.
    pub struct GicV2 {
        dist: usize,
        cpu: usize,
    }

    impl GicV2 {
        /// # Safety
        /// `dist` and `cpu` are the virtual addresses of the GICD and GICC frames,
        /// mapped as Device memory while this value is used; nothing else programs them.
        pub(in crate::gic) unsafe fn new(dist: usize, cpu: usize) -> Self {
            Self { dist, cpu }
        }

        fn dist(&self) -> &Distributor {
            // SAFETY: `new`'s contract: a live, mapped GICD frame.
            unsafe { &*(self.dist as *const Distributor) }
        }

        fn cpu(&self) -> &CpuInterface {
            // SAFETY: `new`'s contract: a live, mapped GICC frame.
            unsafe { &*(self.cpu as *const CpuInterface) }
        }

        pub(in crate::gic) fn init_distributor(&self) {
            let d = self.dist();
            d.ctlr.set(0);
            let lines = implemented_lines(d.typer.read(GICD_TYPER::ITLinesNumber));
            reset_spis(&d.igroupr, &d.icenabler, &d.ipriorityr, lines);
            d.ctlr
                .write(GICD_CTLR::EnableGrp0::SET + GICD_CTLR::EnableGrp1::SET);
        }

        pub(in crate::gic) fn init_cpu(&self) {
            let d = self.dist();
            // Bank 0 of the distributor is this CPU's own SGIs and PPIs.
            reset_private(&d.igroupr[0], &d.ipriorityr);

            let c = self.cpu();
            c.pmr
                .write(GICC_PMR::Priority.val(PRIORITY_MASK_OPEN.into()));
            // Binary point 0: every priority bit but the lowest is group priority.
            c.bpr.write(GICC_BPR::BinaryPoint.val(0));
            c.ctlr.write(
                GICC_CTLR::EnableGrp0::SET
                    + GICC_CTLR::EnableGrp1::SET
                    + GICC_CTLR::AckCtl::SET
                    + GICC_CTLR::CBPR::SET,
            );
        }

        pub(in crate::gic) fn enable_irq(&self, intid: u32, mpidr: u64) {
            let d = self.dist();
            if intid >= SPI_BASE {
                d.itargetsr[intid as usize].set(cpu_target(mpidr));
            }
            let (reg, bit) = bank_bit(intid);
            d.isenabler[reg].set(bit);
        }

        pub(in crate::gic) fn disable_irq(&self, intid: u32) {
            let (reg, bit) = bank_bit(intid);
            self.dist().icenabler[reg].set(bit);
        }

        pub(in crate::gic) fn ack(&self) -> u32 {
            self.cpu().iar.read(GICC_IAR::InterruptID)
        }

        /// The architecture wants an SGI's EOI to repeat the CPUID that GICC_IAR
        /// returned; QEMU matches on the INTID alone, so the CPUID is left 0.
        pub(in crate::gic) fn eoi(&self, intid: u32) {
            self.cpu().eoir.write(GICC_EOIR::EOIINTID.val(intid));
        }

        pub(in crate::gic) fn send_sgi(&self, intid: u32, target_mpidr: u64) {
            // The SGIR write is a Device store: a DMB orders the caller's earlier
            // Normal-memory stores before it.
            barrier::dmb(barrier::ISHST);
            self.dist().sgir.write(sgir(intid, target_mpidr));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_aff0_one_hot() {
        assert_eq!(cpu_target(0), 0b1);
        assert_eq!(cpu_target(0x8000_0003), 0b1000);
        assert_eq!(cpu_target(7), 0x80);
    }

    #[test]
    #[should_panic(expected = "CPU interfaces 0-7")]
    fn target_beyond_eight_cpus_is_refused() {
        cpu_target(8);
    }

    #[test]
    fn sgir_names_one_cpu() {
        // SGI 5 to CPU interface 2: filter 0, target list bit 2, INTID 5.
        assert_eq!(sgir(5, 2).value, 0x0004_0005);
        assert_eq!(sgir(15, 0).value, 0x0001_000f);
    }
}
