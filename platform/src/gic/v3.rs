//! GICv3: a memory-mapped distributor (GICD), one memory-mapped redistributor per CPU
//! (GICR), and a CPU interface reached through ICC_* system registers.
//!
//! Affinity routing is always on: SPIs are routed by MPIDR through GICD_IROUTER, and
//! each CPU's SGIs and PPIs are configured in its redistributor's SGI frame. The
//! redistributors sit one after another in one region; each names its CPU in
//! GICR_TYPER.Affinity_Value and the last one has GICR_TYPER.Last set. On QEMU a frame
//! pair (RD_base + SGI_base) is 2 x 64 KiB; GICv4 adds two more frames (GICR_TYPER.VLPIS).
//!
//! QEMU `virt` without `secure=on` has GICD_CTLR.DS = 1 (one Security state): the field
//! names below are that view's. In the Non-secure view of a GIC with two Security
//! states, the same bits are ARE_NS and EnableGrp1A, so the code is right there too.
//!
//! The ICC_* registers are not in aarch64-cpu; they are reached by their
//! `s3_0_c12_...` encodings. A lower EL can use them only if the EL above set
//! ICC_SRE_EL2.{SRE, Enable} (and ICC_SRE_EL3) before dropping down.

use tock_registers::{fields::FieldValue, register_bitfields};

register_bitfields! {u32,
    pub GICD_CTLR [
        /// Register write pending: an earlier CTLR or ICENABLER write is still taking effect.
        RWP OFFSET(31) NUMBITS(1) [],
        /// Affinity routing enable.
        ARE OFFSET(4) NUMBITS(1) [],
        EnableGrp1 OFFSET(1) NUMBITS(1) []
    ],
    pub GICD_TYPER [
        /// Implemented INTIDs are 32 * (ITLinesNumber + 1).
        ITLinesNumber OFFSET(0) NUMBITS(5) []
    ],
    pub GICR_CTLR [
        /// Register write pending, for GICR_ICENABLER0.
        RWP OFFSET(3) NUMBITS(1) []
    ],
    pub GICR_WAKER [
        ChildrenAsleep OFFSET(2) NUMBITS(1) [],
        ProcessorSleep OFFSET(1) NUMBITS(1) []
    ]
}

register_bitfields! {u64,
    pub GICD_IROUTER [
        Aff3 OFFSET(32) NUMBITS(8) [],
        /// 1 = any participating CPU; 0 = the CPU named by the affinity fields.
        InterruptRoutingMode OFFSET(31) NUMBITS(1) [],
        Aff2 OFFSET(16) NUMBITS(8) [],
        Aff1 OFFSET(8) NUMBITS(8) [],
        Aff0 OFFSET(0) NUMBITS(8) []
    ],
    pub GICR_TYPER [
        /// Aff3.Aff2.Aff1.Aff0 of the CPU this redistributor serves.
        AffinityValue OFFSET(32) NUMBITS(32) [],
        /// This is the last redistributor in the region.
        Last OFFSET(4) NUMBITS(1) [],
        /// GICv4 virtual LPIs: the frame has two extra 64 KiB pages.
        VLPIS OFFSET(1) NUMBITS(1) []
    ],
    pub ICC_SRE_EL1 [
        /// Use the system-register interface (the only one this driver has).
        SRE OFFSET(0) NUMBITS(1) []
    ],
    pub ICC_PMR_EL1 [
        Priority OFFSET(0) NUMBITS(8) []
    ],
    pub ICC_BPR1_EL1 [
        BinaryPoint OFFSET(0) NUMBITS(3) []
    ],
    pub ICC_IGRPEN1_EL1 [
        Enable OFFSET(0) NUMBITS(1) []
    ],
    pub ICC_IAR1_EL1 [
        INTID OFFSET(0) NUMBITS(24) []
    ],
    pub ICC_EOIR1_EL1 [
        INTID OFFSET(0) NUMBITS(24) []
    ],
    pub ICC_SGI1R_EL1 [
        Aff3 OFFSET(48) NUMBITS(8) [],
        /// Range selector: TargetList bit n means Aff0 = 16 * RS + n.
        RS OFFSET(44) NUMBITS(4) [],
        /// 1 = every CPU but the sender; 0 = the listed ones.
        IRM OFFSET(40) NUMBITS(1) [],
        Aff2 OFFSET(32) NUMBITS(8) [],
        INTID OFFSET(24) NUMBITS(4) [],
        Aff1 OFFSET(16) NUMBITS(8) [],
        TargetList OFFSET(0) NUMBITS(16) []
    ]
}

/// The affinity levels of an MPIDR_EL1 value: (Aff3, Aff2, Aff1, Aff0).
fn affinity(mpidr: u64) -> (u64, u64, u64, u64) {
    (
        (mpidr >> 32) & 0xff,
        (mpidr >> 16) & 0xff,
        (mpidr >> 8) & 0xff,
        mpidr & 0xff,
    )
}

/// The CPU `mpidr` as GICR_TYPER.Affinity_Value spells it: Aff3.Aff2.Aff1.Aff0.
fn typer_affinity(mpidr: u64) -> u64 {
    let (aff3, aff2, aff1, aff0) = affinity(mpidr);
    aff3 << 24 | aff2 << 16 | aff1 << 8 | aff0
}

/// Bytes from one redistributor to the next.
fn frame_stride(vlpis: bool) -> usize {
    const FRAME: usize = 0x1_0000;
    if vlpis {
        4 * FRAME
    } else {
        2 * FRAME
    }
}

/// GICD_IROUTER value routing an SPI to the one CPU `mpidr`.
fn irouter(mpidr: u64) -> FieldValue<u64, GICD_IROUTER::Register> {
    let (aff3, aff2, aff1, aff0) = affinity(mpidr);
    GICD_IROUTER::InterruptRoutingMode::CLEAR
        + GICD_IROUTER::Aff3.val(aff3)
        + GICD_IROUTER::Aff2.val(aff2)
        + GICD_IROUTER::Aff1.val(aff1)
        + GICD_IROUTER::Aff0.val(aff0)
}

/// ICC_SGI1R_EL1 value sending SGI `intid` to the one CPU `mpidr`.
fn sgi1r(intid: u32, mpidr: u64) -> FieldValue<u64, ICC_SGI1R_EL1::Register> {
    let (aff3, aff2, aff1, aff0) = affinity(mpidr);
    ICC_SGI1R_EL1::IRM::CLEAR
        + ICC_SGI1R_EL1::Aff3.val(aff3)
        + ICC_SGI1R_EL1::Aff2.val(aff2)
        + ICC_SGI1R_EL1::Aff1.val(aff1)
        + ICC_SGI1R_EL1::RS.val(aff0 / 16)
        + ICC_SGI1R_EL1::TargetList.val(1 << (aff0 % 16))
        + ICC_SGI1R_EL1::INTID.val(intid.into())
}

#[cfg(target_arch = "aarch64")]
pub use driver::GicV3;

#[cfg(target_arch = "aarch64")]
mod driver {
    use aarch64_cpu::asm::barrier;
    use tock_registers::{
        interfaces::{ReadWriteable, Readable, Writeable},
        register_structs,
        registers::{ReadOnly, ReadWrite, WriteOnly},
    };

    use super::*;
    use crate::gic::{
        bank_bit, implemented_lines, reset_private, reset_spis, PRIORITY_MASK_OPEN, SPI_BASE,
    };

    register_structs! {
        Distributor {
            (0x0000 => ctlr: ReadWrite<u32, GICD_CTLR::Register>),
            (0x0004 => typer: ReadOnly<u32, GICD_TYPER::Register>),
            (0x0008 => _reserved0),
            (0x0080 => igroupr: [WriteOnly<u32>; 32]),
            (0x0100 => isenabler: [WriteOnly<u32>; 32]),
            (0x0180 => icenabler: [WriteOnly<u32>; 32]),
            (0x0200 => _reserved1),
            (0x0400 => ipriorityr: [WriteOnly<u32>; 255]),
            (0x07fc => _reserved2),
            // GICD_IROUTER<n> exists for SPIs only: index 0 is INTID 32.
            (0x6100 => irouter: [WriteOnly<u64, GICD_IROUTER::Register>; 988]),
            (0x7fe0 => @END),
        }
    }

    register_structs! {
        Redistributor {
            // RD_base frame: this redistributor's identity and power state.
            (0x00000 => ctlr: ReadOnly<u32, GICR_CTLR::Register>),
            (0x00004 => _reserved0),
            (0x00008 => typer: ReadOnly<u64, GICR_TYPER::Register>),
            (0x00010 => _reserved1),
            (0x00014 => waker: ReadWrite<u32, GICR_WAKER::Register>),
            (0x00018 => _reserved2),
            // SGI_base frame, 64 KiB in: the CPU's SGIs and PPIs.
            (0x10080 => igroupr0: WriteOnly<u32>),
            (0x10084 => _reserved3),
            (0x10100 => isenabler0: WriteOnly<u32>),
            (0x10104 => _reserved4),
            (0x10180 => icenabler0: WriteOnly<u32>),
            (0x10184 => _reserved5),
            (0x10400 => ipriorityr: [WriteOnly<u32>; 8]),
            (0x10420 => @END),
        }
    }

    /// Defines an ICC_* system register by its `s<op0>_<op1>_c<n>_c<m>_<op2>` name,
    /// in the shape aarch64-cpu gives the ones it has. The asm is deliberately not
    /// `nomem`, so each access is also a compiler barrier: an IAR read, EOIR write or
    /// SGI1R write stays in program order with the memory accesses around it.
    macro_rules! icc_register {
        ($name:ident: $reg:ident = $encoding:literal, $($access:ident),+) => {
            struct $reg;
            const $name: $reg = $reg;
            $(icc_register!(@$access $name, $reg, $encoding);)+
        };
        (@read $name:ident, $reg:ident, $encoding:literal) => {
            impl Readable for $reg {
                type T = u64;
                type R = $name::Register;

                fn get(&self) -> u64 {
                    let value;
                    // SAFETY: a GIC CPU-interface register read touches no memory.
                    unsafe {
                        core::arch::asm!(concat!("mrs {}, ", $encoding), out(reg) value,
                            options(nostack));
                    }
                    value
                }
            }
        };
        (@write $name:ident, $reg:ident, $encoding:literal) => {
            impl Writeable for $reg {
                type T = u64;
                type R = $name::Register;

                fn set(&self, value: u64) {
                    // SAFETY: a GIC CPU-interface register write touches no memory.
                    unsafe {
                        core::arch::asm!(concat!("msr ", $encoding, ", {}"), in(reg) value,
                            options(nostack));
                    }
                }
            }
        };
    }

    icc_register!(ICC_SRE_EL1: SreEl1 = "s3_0_c12_c12_5", read, write);
    icc_register!(ICC_PMR_EL1: PmrEl1 = "s3_0_c4_c6_0", write);
    icc_register!(ICC_BPR1_EL1: Bpr1El1 = "s3_0_c12_c12_3", write);
    icc_register!(ICC_IGRPEN1_EL1: Igrpen1El1 = "s3_0_c12_c12_7", write);
    icc_register!(ICC_IAR1_EL1: Iar1El1 = "s3_0_c12_c12_0", read);
    icc_register!(ICC_EOIR1_EL1: Eoir1El1 = "s3_0_c12_c12_1", write);
    icc_register!(ICC_SGI1R_EL1: Sgi1rEl1 = "s3_0_c12_c11_5", write);

    /// A GICv3 at fixed MMIO addresses.
    pub struct GicV3 {
        dist: usize,
        redist: usize,
        redist_size: usize,
    }

    impl GicV3 {
        /// # Safety
        /// `dist` is the virtual address of the GICD frame and `redist..redist +
        /// redist_size` the redistributor region, mapped as Device memory while this
        /// value is used; nothing else programs them.
        pub(in crate::gic) unsafe fn new(dist: usize, redist: usize, redist_size: usize) -> Self {
            Self {
                dist,
                redist,
                redist_size,
            }
        }

        fn dist(&self) -> &Distributor {
            // SAFETY: `new`'s contract: a live, mapped GICD frame.
            unsafe { &*(self.dist as *const Distributor) }
        }

        fn wait_dist_writes(&self) {
            while self.dist().ctlr.is_set(GICD_CTLR::RWP) {}
        }

        /// The redistributor serving the CPU `mpidr`, found by walking the region.
        fn redistributor(&self, mpidr: u64) -> &Redistributor {
            let wanted = typer_affinity(mpidr);
            let mut offset = 0;
            while offset + size_of::<Redistributor>() <= self.redist_size {
                // SAFETY: `new`'s contract: the region is mapped, and the frame pair
                // lies inside it (loop condition).
                let rd = unsafe { &*((self.redist + offset) as *const Redistributor) };
                let typer = rd.typer.extract();
                if typer.read(GICR_TYPER::AffinityValue) == wanted {
                    return rd;
                }
                if typer.is_set(GICR_TYPER::Last) {
                    break;
                }
                offset += frame_stride(typer.is_set(GICR_TYPER::VLPIS));
            }
            panic!("no GICv3 redistributor for MPIDR {mpidr:#x}");
        }

        pub(in crate::gic) fn init_distributor(&self) {
            let d = self.dist();
            d.ctlr.set(0);
            self.wait_dist_writes();
            // Affinity routing first: IROUTER only means something with ARE set, and
            // ARE may not change while a group is enabled.
            d.ctlr.write(GICD_CTLR::ARE::SET);
            self.wait_dist_writes();
            let lines = implemented_lines(d.typer.read(GICD_TYPER::ITLinesNumber));
            reset_spis(&d.igroupr, &d.icenabler, &d.ipriorityr, lines);
            d.ctlr
                .write(GICD_CTLR::ARE::SET + GICD_CTLR::EnableGrp1::SET);
            self.wait_dist_writes();
        }

        pub(in crate::gic) fn init_cpu(&self, mpidr: u64) {
            let rd = self.redistributor(mpidr);
            // A redistributor starts asleep: it forwards nothing until woken.
            rd.waker.modify(GICR_WAKER::ProcessorSleep::CLEAR);
            while rd.waker.is_set(GICR_WAKER::ChildrenAsleep) {}
            reset_private(&rd.igroupr0, &rd.ipriorityr);

            ICC_SRE_EL1.modify(ICC_SRE_EL1::SRE::SET);
            barrier::isb(barrier::SY);
            assert!(
                ICC_SRE_EL1.is_set(ICC_SRE_EL1::SRE),
                "ICC_SRE_EL1.SRE reads 0: the EL above must set ICC_SRE_EL2.{{SRE, Enable}}"
            );
            ICC_PMR_EL1.write(ICC_PMR_EL1::Priority.val(PRIORITY_MASK_OPEN.into()));
            // Binary point 0: every priority bit but the lowest is group priority.
            ICC_BPR1_EL1.write(ICC_BPR1_EL1::BinaryPoint.val(0));
            ICC_IGRPEN1_EL1.write(ICC_IGRPEN1_EL1::Enable::SET);
            barrier::isb(barrier::SY);
        }

        pub(in crate::gic) fn enable_irq(&self, intid: u32, mpidr: u64) {
            if intid < SPI_BASE {
                self.redistributor(mpidr).isenabler0.set(1 << intid);
            } else {
                let d = self.dist();
                d.irouter[(intid - SPI_BASE) as usize].write(irouter(mpidr));
                let (reg, bit) = bank_bit(intid);
                d.isenabler[reg].set(bit);
            }
        }

        /// Returns once the interrupt can no longer be signalled (RWP clear).
        pub(in crate::gic) fn disable_irq(&self, intid: u32, mpidr: u64) {
            if intid < SPI_BASE {
                let rd = self.redistributor(mpidr);
                rd.icenabler0.set(1 << intid);
                while rd.ctlr.is_set(GICR_CTLR::RWP) {}
            } else {
                let (reg, bit) = bank_bit(intid);
                self.dist().icenabler[reg].set(bit);
                self.wait_dist_writes();
            }
        }

        pub(in crate::gic) fn ack(&self) -> u32 {
            ICC_IAR1_EL1.read(ICC_IAR1_EL1::INTID) as u32
        }

        pub(in crate::gic) fn eoi(&self, intid: u32) {
            ICC_EOIR1_EL1.write(ICC_EOIR1_EL1::INTID.val(intid.into()));
        }

        pub(in crate::gic) fn send_sgi(&self, intid: u32, target_mpidr: u64) {
            // SGI1R is a register write, not a memory access: only a DSB makes the
            // caller's earlier stores visible before the SGI is.
            barrier::dsb(barrier::ISHST);
            ICC_SGI1R_EL1.write(sgi1r(intid, target_mpidr));
            barrier::isb(barrier::SY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typer_affinity_packs_four_levels() {
        assert_eq!(typer_affinity(0), 0);
        assert_eq!(typer_affinity(0x8000_0003), 3);
        // MPIDR Aff3 lives at bits 39:32, above the U/MT bits; TYPER packs it at 31:24.
        assert_eq!(typer_affinity(0x0000_0012_0034_0506), 0x1234_0506);
    }

    #[test]
    fn stride_is_two_or_four_frames() {
        assert_eq!(frame_stride(false), 0x2_0000);
        assert_eq!(frame_stride(true), 0x4_0000);
    }

    #[test]
    fn irouter_names_one_cpu() {
        assert_eq!(irouter(0x8000_0000).value, 0);
        assert_eq!(irouter(0x0000_0012_0034_0506).value, 0x12_0034_0506);
    }

    #[test]
    fn sgi1r_targets_aff0_bit() {
        // SGI 1 to CPU 3 of cluster 0: TargetList bit 3, INTID at 27:24.
        assert_eq!(sgi1r(1, 0x8000_0003).value, 0x0100_0008);
        // QEMU virt puts GICv3 CPUs 16 to a cluster: CPU 17 is Aff1 = 1, Aff0 = 1.
        assert_eq!(sgi1r(15, 0x101).value, 0x0f01_0002);
        // Aff2 at 39:32, Aff3 at 55:48.
        assert_eq!(sgi1r(0, 0x0000_0012_0034_0000).value, 0x0012_0034_0000_0001);
    }

    #[test]
    fn sgi1r_range_selector_for_large_aff0() {
        // Aff0 = 0x21: range 2, bit 1.
        assert_eq!(sgi1r(2, 0x21).value, 0x0000_2000_0200_0002);
    }
}
